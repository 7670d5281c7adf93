"""The whole CPU chain at the 2019 data's size: time, peak memory and disk of each stage, and how they grow.

    python bench/scale.py --scales 0.05 0.1 0.25          # the README's "At the 2019 scale" table
    python bench/scale.py --scales 0.002 --epoch-size 256  # seconds: what tests/test_scale.py runs

For each --scale it generates a synthetic set in Kaggle's layout under --work-dir
(train_curated.csv + train_curated/, train_noisy.csv + train_noisy/,
sample_submission.csv + test/), with the 2019 counts and clip lengths below times
the scale, then runs every stage that needs no GPU, each in its own process:

  generate        the synthetic WAVs (not part of the chain; shown for its disk)
  make_folds      make_folds.py
  cache_curated   the log-mel cache of train_curated (src.audio.cache.load_features, the real front end)
  cache_noisy     ... of train_noisy
  cache_test      ... of the test clips
  cache_reload    the second load of all three caches, as training and prediction load them
                  (load_training_data with the noisy source + the test cache; every byte is checksummed)
  train_epoch     one training epoch's data path at full-size settings: auxiliary_016's stream (curated
                  folds 1-4 + all noisy clips, noisy_prob 0.2, per-sample augmentation and mixing),
                  --epoch-size samples (32,768) in batches of 128, 256-frame crops, the DataLoader workers
                  train_folds.py uses (cores - 1), then the validation fold's loader; the network is a
                  stand-in (a mean over each batch), so the loader's own cost is measured
  predict         predict_folds.py itself, five fold models replaced by a cheap stand-in network:
                  every curated clip out-of-fold (tiles every 64 frames) and every test clip (every 128
                  frames, five models), tiling, deltas, clip means, geometric mean, the output tree
  fake_inputs     setup, not a stage of the chain: seven experiments' prediction trees with random
                  tile probabilities of the predict stage's shapes (out-of-fold and test)
  stacking        stacking_train.py's input assembly (load_stacking_data) from those seven experiments
  blend           blend.py over the seven (test and out-of-fold, CV scores)

Each stage runs in a process forked from the benchmark (which imports torch and the scripts
once, so no stage pays for its imports). Its figures: wall seconds; CPU seconds (the stage's
process and its children); peak memory, sampled every --interval seconds over the stage's
process and all its descendants (DataLoader and pool workers) and summed, from
/proc/PID/status: "RSS" (VmRSS: counts the pages of memory-mapped files such as the feature
cache once per process that touched them, page cache the kernel can drop, so it over-states
what is needed) and "anon" (RssAnon: the memory the processes allocated, which the machine
must really have; pages a forked worker shares with its parent count in both, so this too
over-states, by the parent's share, about 0.1-0.2 GB a worker). Disk: the growth of the data
folder during the stage. Then, over the scales run, each figure's growth from the smallest to the
largest scale as an exponent k (figure ~ scale^k: 1 linear, fixed costs pull it below 1) and,
with three or more scales, the marginal ratio (the cost of a unit of data over the last step of
scales over that of the first: 1 linear); a stage whose CPU seconds or memory grow materially
with k > 1.15 or a marginal ratio > 1.5 is flagged as worse than linear (`verdict`; CPU seconds,
not wall seconds, as the latter follow whatever else the machine runs); and each figure at
scale 1.0, extended linearly through the two largest scales (an under-estimate for a stage
flagged worse than linear). train_epoch's work is the
fixed-size epoch at every scale: only its memory and the cost of drawing from more clips grow.

The 2019 figures the sets follow (FSDKaggle2019, Zenodo 3612637, and its Kaggle page;
/work/shared/reference/ORIGINAL.md):
  train_curated  4,970 clips, 10.5 h (mean 7.61 s), 0.3-30 s
  train_noisy   19,815 clips, 80 h (mean 14.53 s), 1-15 s, the vast majority 15 s
  test           4,481 clips, 12.9 h (mean 10.36 s), 0.3-30 s (bench/kernel_time.py)
Clip lengths: curated and test follow a log-normal truncated to [0.3, 30] s whose log-sd puts
that range at +-3 sd and whose mean is the documented one (the shape is ASSUMED; the data's
README gives only the range and the totals); noisy clips are 15 s with probability
NOISY_FULL_SHARE (0.933) and uniform in [1, 15) s otherwise, which gives the documented mean.
Lengths are drawn at evenly spaced quantiles, so every scale keeps the documented mean.
80 classes, one label per clip (two for 20%). The audio is cheap to make (a shared noise
buffer plus one of a few tones, 16-bit mono 44.1 kHz WAV): the front end's cost does not
depend on what the samples are.
"""
import argparse
import json
import math
import os
import platform
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from src.errors import BadSetting  # noqa: E402

SAMPLE_RATE = 44100
N_CLASSES = 80
MULTI_LABEL_SHARE = 0.2
# split: (clips, hours, shortest s, longest s) of the 2019 data (module docstring)
DATA_2019 = {"train_curated": (4970, 10.5, 0.3, 30.0),
             "train_noisy": (19815, 80.0, 1.0, 15.0),
             "test": (4481, 12.9, 0.3, 30.0)}
NOISY_FULL_SHARE = 0.933   # 0.933 * 15 + 0.067 * 8 = 14.53 s, the documented mean
MIN_CLIPS = {"train_curated": 10, "train_noisy": 5, "test": 5}  # 5 folds need 2 curated clips each
INPUTS = 7                 # first-level experiments the stacking and the blend read
WORSE_THAN_LINEAR = 1.15   # growth exponent above which a stage is flagged
MARGINAL_RATIO = 1.5       # cost of a unit of data, last step of scales over the first, above which it is flagged
MEMORY_NOISE_GB = 0.05     # memory growth over the scales run below which no memory verdict is given
STAGES = ("generate", "make_folds", "cache_curated", "cache_noisy", "cache_test", "cache_reload",
          "train_epoch", "predict", "fake_inputs", "stacking", "blend")
SETUP = {"generate", "fake_inputs"}  # not stages of the chain itself
FIXED_WORK = {"train_epoch"}          # the same number of samples at every scale
STANDIN = "scale_standin"


# ----------------------------------------------------------------------------- the synthetic set

def mean_seconds(split) -> float:
    clips, hours, _, _ = DATA_2019[split]
    return hours * 3600 / clips


def scaled_count(split, scale) -> int:
    return max(MIN_CLIPS[split], int(round(DATA_2019[split][0] * scale)))


def _lognormal_quantiles(q, low, high, mean):
    """Quantiles `q` of the log-normal truncated to [low, high] (log-sd: the range at +-3 sd) with the given mean."""
    from scipy.stats import norm
    sigma = (math.log(high) - math.log(low)) / 6

    def draw(mu):
        a, b = norm.cdf((math.log(low) - mu) / sigma), norm.cdf((math.log(high) - mu) / sigma)
        return np.exp(mu + sigma * norm.ppf(a + q * (b - a)))

    grid = (np.arange(4000) + 0.5) / 4000  # the mean of the truncated law, by its quantiles
    lo, hi = math.log(low), math.log(high)
    for _ in range(60):  # bisection on mu: the truncated mean rises with it
        mu = (lo + hi) / 2
        a, b = norm.cdf((math.log(low) - mu) / sigma), norm.cdf((math.log(high) - mu) / sigma)
        if np.exp(mu + sigma * norm.ppf(a + grid * (b - a))).mean() < mean:
            lo = mu
        else:
            hi = mu
    return draw((lo + hi) / 2)


def clip_seconds(split, n, seed=0) -> np.ndarray:
    """Lengths in seconds of `n` clips of `split`, at evenly spaced quantiles of its law, shuffled."""
    _, _, low, high = DATA_2019[split]
    q = (np.arange(n) + 0.5) / n
    if split == "train_noisy":
        full = q >= 1 - NOISY_FULL_SHARE
        seconds = np.where(full, high, low + (high - low) * q / (1 - NOISY_FULL_SHARE))
    else:
        seconds = _lognormal_quantiles(q, low, high, mean_seconds(split))
    return np.random.default_rng([seed, list(DATA_2019).index(split)]).permutation(seconds)


def class_names():
    return [f"Class_{k:02d}" for k in range(N_CLASSES)]


def plan(scale, seed=0) -> dict:
    """{split: (fnames, seconds, labels)} of the synthetic set at `scale`."""
    classes, out = class_names(), {}
    for split in DATA_2019:
        n = scaled_count(split, scale)
        rng = np.random.default_rng([seed, 10 + list(DATA_2019).index(split)])
        labels = []
        for _ in range(n):
            k = 2 if rng.random() < MULTI_LABEL_SHARE else 1
            labels.append(",".join(classes[i] for i in sorted(rng.choice(N_CLASSES, k, replace=False))))
        fnames = [f"{split[6:9] or split}{i:06d}.wav" for i in range(n)]  # cur000000.wav, noi..., test...
        out[split] = (fnames, clip_seconds(split, n, seed), labels)
    return out


def _buffers(seed):
    """(noise, tones): 40 s of int16 noise and a few 40 s int16 tones to cut clips from."""
    n = 40 * SAMPLE_RATE
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(n) * 2000).clip(-8000, 8000).astype(np.int16)
    t = np.arange(n) / SAMPLE_RATE
    tones = [(np.sin(2 * np.pi * f * t) * 6000).astype(np.int16) for f in (220.0, 440.0, 1250.0, 3100.0, 7000.0)]
    return noise, tones


_BUFFERS = None


def _write_clip(job):
    import soundfile as sf
    path, n, seed = job
    rng = np.random.default_rng(seed)
    noise, tones = _BUFFERS
    out = np.empty(n, np.int16)
    done = 0
    while done < n:  # in pieces of up to 20 s, each from random places in the buffers
        take = min(n - done, len(noise) // 2)
        a, b = rng.integers(0, len(noise) - take, 2)
        np.add(noise[a:a + take], tones[rng.integers(len(tones))][b:b + take], out=out[done:done + take])
        done += take
    sf.write(path, out, SAMPLE_RATE, subtype="PCM_16")


def generate(data_dir, scale, seed=0, workers=1) -> dict:
    """Write the synthetic set at `scale` into `data_dir`; returns {split: (clips, seconds)}."""
    import multiprocessing
    import pandas as pd
    global _BUFFERS
    data_dir = Path(data_dir)
    _BUFFERS = _buffers(seed)
    sets, jobs = plan(scale, seed), []
    for split, (fnames, seconds, labels) in sets.items():
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        jobs += [(str(data_dir / split / f), int(round(s * SAMPLE_RATE)), (seed, list(DATA_2019).index(split), i))
                 for i, (f, s) in enumerate(zip(fnames, seconds))]
        if split == "test":
            frame = pd.DataFrame(0.0, index=range(len(fnames)), columns=class_names())
            frame.insert(0, "fname", fnames)
            frame.to_csv(data_dir / "sample_submission.csv", index=False)
        else:
            pd.DataFrame({"fname": fnames, "labels": labels}).to_csv(data_dir / f"{split}.csv", index=False)
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_clip, jobs, chunksize=16):
                pass
    else:
        for job in jobs:
            _write_clip(job)
    return {split: (len(f), float(np.sum(s))) for split, (f, s, _) in sets.items()}


# ----------------------------------------------------------------------------- the stages (child process)

class StandInModel:
    """What Predictor needs of an argus model, with a network that costs next to nothing."""

    def __init__(self, n_classes):
        import torch
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.nn_module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                             torch.nn.Linear(3, n_classes))
        self.prediction_transform = torch.sigmoid

    def eval(self):
        self.nn_module.eval()

    def prepare_input(self, images):
        return images


def _settings(epoch_size):
    """auxiliary_016 on the synthetic set: no label corrections (they name the real clips)."""
    from src.experiments import get_experiment
    experiment = get_experiment("auxiliary_016")
    experiment.update(curated_corrections=None, noisy_corrections=None, epoch_size=epoch_size)
    return experiment


def _cache(data_dir, split, workers):
    from src.audio.cache import load_features
    from src.config import AUDIO
    from src.data.corrections import read_curated
    from src.data.labels import read_train_csv
    from src.data.layout import read_classes, read_test_fnames
    if split == "train_curated":  # the rows load_training_data asks the cache for
        fnames = read_curated(data_dir, read_classes(data_dir), None).rows["fname"]
    elif split == "train_noisy":
        fnames = read_train_csv(data_dir / "train_noisy.csv")["fname"]
    else:
        fnames = read_test_fnames(data_dir)
    return load_features(fnames, data_dir / split, data_dir / "features", name=split, config=AUDIO,
                         workers=workers, progress=False)


def stage_make_folds(data_dir, args):
    import make_folds
    make_folds.main(["--data-dir", str(data_dir)])


def stage_cache_reload(data_dir, args):
    from src.data.sources import load_training_data
    before = sorted(p.name for p in (data_dir / "features").iterdir())
    data = load_training_data(data_dir, curated_corrections=None, noisy_corrections=None, need_noisy=True,
                              workers=args.workers)
    test = _cache(data_dir, "test", args.workers)
    after = sorted(p.name for p in (data_dir / "features").iterdir())
    if before != after:
        # The cache's own key is broken: a bug of the code under test, so it keeps its traceback.
        raise RuntimeError(f"cache_reload built a cache instead of loading it: {sorted(set(after) - set(before))}")
    print(f"reloaded {len(data.curated)} curated, {len(data.noisy)} noisy, {len(test)} test clips")


def stage_train_epoch(data_dir, args):
    from src.data.datasets import experiment_train_dataset, experiment_val_dataset, make_loader
    from src.data.sources import load_training_data, specs_and_targets
    from src.experiments import data_settings
    from src.train.fit import worker_count
    experiment = _settings(args.epoch_size)
    data = load_training_data(data_dir, **data_settings(experiment), workers=args.workers)
    train_part = data.curated.subset((data.folds != 0).nonzero()[0])
    val_part = data.curated.subset((data.folds == 0).nonzero()[0])
    dataset = experiment_train_dataset(experiment, specs_and_targets(train_part), specs_and_targets(data.noisy))
    workers = worker_count(args.loader_workers)
    loaders = [make_loader(dataset, experiment["batch_size"], shuffle=True, workers=workers, seed=0,
                           drop_last=True, persistent=False),
               make_loader(experiment_val_dataset(experiment, val_part.specs, val_part.targets),
                           experiment["val_batch_size"], shuffle=False, workers=workers, seed=0, persistent=False)]
    samples, total = 0, 0.0
    for loader in loaders:
        for images, targets, flags in loader:  # the stand-in network: one reduction per batch
            total += float(images.mean()) + float(targets.sum()) + float(flags.sum())
            samples += len(images)
    print(f"train_epoch: {samples} samples ({len(dataset)} training, batch {experiment['batch_size']}, "
          f"crop {experiment['crop_size']}) with {workers} worker(s); checksum {total:.3f}")


def stage_predict(data_dir, args):
    import predict_folds
    from src.data.layout import read_classes
    classes = read_classes(data_dir)
    exp_dir = data_dir / "experiments" / STANDIN
    exp_dir.mkdir(parents=True, exist_ok=True)
    experiment = _settings(args.epoch_size)
    experiment["model"] = list(experiment["model"])
    (exp_dir / "config.json").write_text(json.dumps({"experiment": experiment, "classes": classes}))
    predict_folds.load_fold_models = lambda _dir, _device: {f: StandInModel(len(classes)) for f in range(5)}
    predict_folds.check_folds_finished = lambda *_: None
    predict_folds.main(["--experiment", STANDIN, "--data-dir", str(data_dir), "--device", "cpu",
                        "--workers", str(args.workers or os.cpu_count() or 1)])


def input_names():
    return [f"scale_input_{k}" for k in range(INPUTS)]


def stage_fake_inputs(data_dir, args):
    from src.predict.prediction_sets import (PredictionSet, clip_means, predictions_dir, read_prediction_set,
                                             write_prediction_set)
    rng = np.random.default_rng(0)
    for split in ("oof", "test"):
        ref = read_prediction_set(predictions_dir(data_dir, STANDIN) / split)
        for name in input_names():
            tiles = rng.random(ref.tiles.shape, dtype=np.float32)
            write_prediction_set(predictions_dir(data_dir, name) / split,
                                 PredictionSet(ref.fnames, ref.classes, clip_means(tiles, ref.offsets), tiles,
                                               ref.offsets))


def stage_stacking(data_dir, args):
    from stacking_train import load_stacking_data
    from src.stacking.experiments import get_stacking_experiment
    experiment = get_stacking_experiment("stacking_008_fcnet_43040")
    experiment.update(inputs=input_names(), curated_corrections=None)
    data = load_stacking_data(data_dir, experiment, with_test=True)
    print(f"stacking inputs: {len(data.fnames)} clips, {len(data.stacked.tiles)} tiles x "
          f"{data.stacked.n_features} features; test {data.test[1].shape}")


def stage_blend(data_dir, args):
    import blend
    blend.main(["--experiments", *input_names(), "--data-dir", str(data_dir)])


def run_stage(name, data_dir, args):
    if name == "generate":
        generate(data_dir, args.scale, args.seed, args.workers or os.cpu_count() or 1)
    elif name.startswith("cache_") and name != "cache_reload":
        split = {"cache_curated": "train_curated", "cache_noisy": "train_noisy", "cache_test": "test"}[name]
        _cache(data_dir, split, args.workers)
    else:
        globals()[f"stage_{name}"](data_dir, args)


# ----------------------------------------------------------------------------- measuring (parent process)

def _children(pid) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def _process_memory(pid) -> tuple:
    """(VmRSS, RssAnon) of one process in bytes, from /proc/PID/status (a read costs microseconds;
    smaps_rollup's proportional figures cost ~50 ms of CPU a process, too much to sample at 10 Hz on
    the two cores being measured)."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def _tree_memory(root) -> tuple:
    """(RSS, anonymous) in bytes summed over `root` and its descendants (threads are one process)."""
    rss = anon = 0
    todo, seen = [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        one = _process_memory(pid)
        rss, anon = rss + one[0], anon + one[1]
        todo += _children(pid)
    return rss, anon


def dir_bytes(path) -> int:
    total = 0
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            total += dir_bytes(entry.path)
        elif entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def preload():
    """Import what the stages use once, in the parent: each stage then forks from it instead of paying
    ~3 s of imports (torch, pandas, the scripts) in a fresh interpreter."""
    import torch  # noqa: F401
    import blend  # noqa: F401
    import make_folds  # noqa: F401
    import predict_folds  # noqa: F401
    import stacking_train  # noqa: F401
    import src.data.datasets  # noqa: F401
    import src.data.sources  # noqa: F401


def _run_child(name, data_dir, args, log) -> int:
    """Fork; the child runs the stage with its output in `log` and exits. Returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        print(f"\n=== {name}", flush=True)
        run_stage(name, data_dir, args)
        code = 0
    except BaseException:  # noqa: B902 - a forked child must never return into the parent's code
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def measure(name, data_dir, args, log) -> dict:
    """Run stage `name` in a forked child; its wall and CPU seconds, peak memory and disk growth."""
    disk = dir_bytes(data_dir) if data_dir.exists() else 0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [0, 0]
    start = time.perf_counter()
    pid = _run_child(name, data_dir, args, log)
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, anon = _tree_memory(pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], anon)
            done.wait(args.interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status = os.waitpid(pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = Path(log).read_text().splitlines()[-25:]
        raise RuntimeError(f"stage {name} failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return {"seconds": seconds, "cpu_s": cpu, "peak_rss_gb": peak[0] / 1e9, "peak_anon_gb": peak[1] / 1e9,
            "disk_gb": (dir_bytes(data_dir) - disk) / 1e9}


FIGURES = ("seconds", "cpu_s", "peak_anon_gb", "disk_gb")


def growth(results) -> dict:
    """Per stage and figure: `k`, the exponent of figure ~ scale^k from the smallest to the largest scale;
    `marginal`, the cost of a unit of data over the last step of scales against the first step (with three
    or more scales; ~1 when the growth is linear, > 1 when each added clip costs more than the last); and
    `at_1`, the figure at scale 1.0, extended linearly through the two largest scales (never below the largest
    measured; an under-estimate if the growth is worse than linear, which k and marginal then show)."""
    scales = sorted(results)
    small, large = scales[0], scales[-1]
    out = {}
    for stage in results[small]["stages"]:
        values = {s: results[s]["stages"][stage] for s in scales}
        out[stage] = {}
        for key in FIGURES:
            v = [values[s][key] for s in scales]
            k = math.log(v[-1] / v[0]) / math.log(large / small) if v[0] > 0 and v[-1] > 0 else None
            slopes = [(v[i + 1] - v[i]) / (scales[i + 1] - scales[i]) for i in range(len(v) - 1)]
            marginal = slopes[-1] / slopes[0] if len(slopes) > 1 and slopes[0] > 0 else None
            at_1 = max(v[-1], v[-1] + slopes[-1] * (1.0 - large))
            if stage in FIXED_WORK and key in ("seconds", "cpu_s"):
                at_1 = v[-1]  # the same work at every scale: what was measured
            out[stage][key] = {"k": k, "marginal": marginal, "at_1": at_1, "increase": v[-1] - v[0]}
    return out


def verdict(stage_growth) -> list:
    """The figures of one stage that grow worse than linearly: CPU seconds (wall seconds follow the
    machine's other load; CPU seconds hardly do) or anonymous memory. Either is flagged when its exponent
    k exceeds WORSE_THAN_LINEAR, or when a unit of data costs MARGINAL_RATIO times more over the last step
    of scales than over the first (what shows a growing term behind a fixed cost, which keeps k low); the
    second only when the figure grows materially over the scales run (10 CPU seconds, MEMORY_NOISE_GB),
    below which the measurement's noise decides."""
    worse = []
    for key, name, material in (("cpu_s", "CPU seconds", 10.0), ("peak_anon_gb", "memory", MEMORY_NOISE_GB)):
        g = stage_growth[key]
        if g["increase"] >= material and ((g["k"] or 0) > WORSE_THAN_LINEAR
                                          or (g["marginal"] or 0) > MARGINAL_RATIO):
            worse.append(name)
    return worse


def print_growth(results):
    scales = sorted(results)
    small, large = scales[0], scales[-1]
    table = growth(results)
    print(f"\ngrowth from scale {small} to {large} (x{large / small:g} data): k = exponent of figure ~ scale^k "
          f"(1 linear; fixed costs pull it below 1); marg = cost of a unit of data over the last step of scales / the "
          f"first (1 linear); CPU seconds or memory growing materially with k > {WORSE_THAN_LINEAR} or marg > "
          f"{MARGINAL_RATIO} are flagged; scale 1.0 = extended linearly through the two largest scales")
    print(f"  {'stage':<14} {'k wall':>7} {'k CPU':>6} {'k anon':>7} {'marg CPU':>9} {'marg anon':>10} "
          f"{'1.0: wall s':>12} {'1.0: CPU s':>11} "
          f"{'1.0: anon GB':>13} {'1.0: disk GB':>13}  verdict")
    flagged = []
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for stage, g in table.items():
        worse = verdict(g)
        fixed = stage in FIXED_WORK
        if worse and stage not in SETUP:
            flagged.append(stage)
        print(f"  {stage:<14} {fmt(g['seconds']['k']):>7} {fmt(g['cpu_s']['k']):>6} {fmt(g['peak_anon_gb']['k']):>7} "
              f"{fmt(g['cpu_s']['marginal']):>9} {fmt(g['peak_anon_gb']['marginal']):>10} "
              f"{g['seconds']['at_1']:>12.0f} {g['cpu_s']['at_1']:>11.0f} {g['peak_anon_gb']['at_1']:>13.2f} "
              f"{g['disk_gb']['at_1']:>13.2f}  "
              + (("WORSE than linear: " + ", ".join(worse)) if worse else "linear or better")
              + (" (fixed-size epoch)" if fixed else "") + (" (setup)" if stage in SETUP else ""))
    chain = [stage for stage in table if stage not in SETUP]
    top = max(chain, key=lambda s: table[s]["peak_anon_gb"]["at_1"])
    print(f"  scale 1.0, chain: {sum(table[s]['seconds']['at_1'] for s in chain) / 3600:.2f} h wall, "
          f"{sum(table[s]['cpu_s']['at_1'] for s in chain) / 3600:.2f} h CPU, peak anon "
          f"{table[top]['peak_anon_gb']['at_1']:.2f} GB (stage {top}), disk "
          f"{sum(table[s]['disk_gb']['at_1'] for s in chain):.1f} GB (+ {table['generate']['disk_gb']['at_1']:.1f} GB "
          f"of audio)" + (f"; worse than linear: {', '.join(flagged)}" if flagged else "; no stage grows worse than "
                          "linearly"))
    return table, flagged


def print_table(scale, counts, rows):
    hours = sum(s for _, s in counts.values()) / 3600
    print(f"\nscale {scale}: " + ", ".join(f"{split} {n} clips {s / 3600:.2f} h" for split, (n, s) in counts.items())
          + f" ({hours:.2f} h of audio)")
    print(f"  {'stage':<14} {'seconds':>9} {'CPU s':>9} {'peak RSS GB':>12} {'peak anon GB':>13} {'disk GB':>9}")
    for stage, r in rows.items():
        note = "  (setup)" if stage in SETUP else ""
        print(f"  {stage:<14} {r['seconds']:>9.1f} {r['cpu_s']:>9.1f} {r['peak_rss_gb']:>12.3f} "
              f"{r['peak_anon_gb']:>13.3f} {r['disk_gb']:>9.3f}{note}")
    chain = [r for s, r in rows.items() if s not in SETUP]
    print(f"  {'chain total':<14} {sum(r['seconds'] for r in chain):>9.1f} {sum(r['cpu_s'] for r in chain):>9.1f} "
          f"{max(r['peak_rss_gb'] for r in chain):>12.3f} {max(r['peak_anon_gb'] for r in chain):>13.3f} "
          f"{sum(r['disk_gb'] for r in chain):>9.3f}  (peaks: the largest stage's)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.05, 0.1, 0.25],
                        help="fractions of the 2019 data to run, each from scratch (default 0.05 0.1 0.25)")
    parser.add_argument("--work-dir", default="/tmp/fsat-scale",
                        help="where the sets are generated (default /tmp/fsat-scale; one folder per scale, "
                             "deleted after its stages unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep each scale's generated set and outputs")
    parser.add_argument("--epoch-size", type=int, default=32768,
                        help="training samples in the train_epoch stage (default 32768, the 2019 epoch)")
    parser.add_argument("--workers", type=int, help="feature-cache and generation processes (default: all cores)")
    parser.add_argument("--loader-workers", type=int,
                        help="DataLoader workers (default: train_folds.py's, cores - 1, at most 8)")
    parser.add_argument("--interval", type=float, default=0.1, help="memory sampling period in s (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # internal: run one stage
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage is None and any(not 0 < s <= 1 for s in args.scales):
        parser.error(f"--scales must be in (0, 1], got {args.scales}")
    if args.epoch_size < 128:
        parser.error(f"--epoch-size must be at least one batch (128), got {args.epoch_size}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        return run_stage(args.stage, Path(args.data_dir), args)
    work = Path(args.work_dir)
    if work.exists() and not work.is_dir():
        raise BadSetting(f"--work-dir {work}: exists and is not a folder")
    work.mkdir(parents=True, exist_ok=True)
    preload()
    print(f"bench/scale.py on {platform.node()}: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}; "
          f"memory: peak of each stage's process tree, summed, sampled every {args.interval} s from /proc/PID/status")
    results = {}
    for scale in sorted(args.scales):
        data_dir = work / f"scale-{scale:g}"
        if data_dir.exists():
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        log = work / f"scale-{scale:g}.log"
        log.write_text("")
        args.scale = scale
        rows = {}
        try:
            for stage in STAGES:
                rows[stage] = measure(stage, data_dir, args, log)
        finally:
            if not args.keep:
                shutil.rmtree(data_dir, ignore_errors=True)
        counts = {split: (len(f), float(np.sum(s))) for split, (f, s, _) in plan(scale, args.seed).items()}
        results[scale] = {"counts": counts, "stages": rows, "load_average_after": os.getloadavg()[0]}
        print_table(scale, counts, rows)
    summary = {"scales": {str(s): r for s, r in results.items()}, "cores": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "epoch_size": args.epoch_size}
    if len(results) > 1:
        table, flagged = print_growth(results)
        summary.update(growth=table, worse_than_linear=flagged)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        from src.files import write_json_atomic
        write_json_atomic(summary, args.json)
    return summary


if __name__ == "__main__":
    from src.cli import run
    run(main)
