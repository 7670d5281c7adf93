"""Benchmark sliding-window inference: the default batched path vs. the original's clip-at-a-time loop.

    python bench/inference.py                               # CPU, 20 clips: the three paths below
    python bench/inference.py --amp none                    # default path in fp32 (tag.py --amp none)
    python bench/inference.py --sweep                       # CPU tiles/s per forward-batch size, fp32 and bf16
    python bench/inference.py --device cuda --clips 500     # CUDA (the models' bf16 autocast)
    python bench/inference.py --compare-bf16 --data-dir data/demo   # fp32 vs bf16 lwlrap of a trained model

Speed: one full-size fold model (AuxSkipAttention, base 64, 80 classes, random
weights) predicts synthetic log-mels whose durations follow a Kaggle-test-like
spread (0.3-30 s, median ~5 s; 0.5 s minimum after trimming, as the front end
makes it). Every path cuts the same 128 x 256 tiles every --step frames and
averages the tile sigmoids per clip:

  per clip  the original's style: for each clip, each tile through the numpy
            validation transform (ImageToTensor: deltas per tile), batches of 16,
            fp32 on CPU (on CUDA the model's own autocast)
  default   what tag.py and predict_folds.py run: src.predict.predictor.Predictor with
            --amp (default 'auto': bf16 autocast on a CPU with native bf16, see
            src.runtime.cpu_has_native_bf16; the model's own on CUDA); tiles of many clips
            fill each batch, deltas by one matmul, on CPU forwards of 16 tiles in NHWC
  fp32      the same Predictor with amp 'none'

One run prints a machine line (CPU, cores, torch threads, the CPU flags that
decide bf16, the load average), clips/s and tiles/s of each path (median over
--repeats, runs of the three paths interleaved so that load from other
processes spreads over all of them), the ratios, and each batched path's
largest clip-probability difference from the per-clip loop (allowed: 1e-6 for
fp32, 1e-3 for bf16). --json PATH also writes the figures to a JSON file
(bench/gpu_check.py reads it); --base-size shrinks the network for a smoke run.

Emulated bf16 (a CPU without the flags) was ~190x slower than fp32 on an
AVX2-only EPYC (0.03 vs 5.4 tiles/s): 'auto' keeps fp32 there, and --amp bf16
on such a CPU is best tried with --clips 1.

--sweep: tiles/s of the model alone for forward batches of 1-64 tiles in
NCHW and NHWC, fp32 and bf16 (where bf16 is native), the measurement behind
the Predictor's CPU batch of 16.

--compare-bf16: loads the fold models of a trained experiment (default
<data>/experiments/demo), predicts every curated clip with the model of its
fold (out-of-fold, as predict_folds.py) in fp32 and under bf16 autocast on the
same device, and reports both lwlrap values and the largest probability change;
with <data>/test_labels.csv (the demo data has one), the same for the test
clips as tag.py predicts them (all folds, test tiles, geometric mean).
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.train.argus_model import FreesoundModel  # noqa: E402
from src.cli import run  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.errors import InputFileNotFound  # noqa: E402
from src.predict.predictor import AMP_CHOICES, Predictor, count_tiles, make_tiles  # noqa: E402
from src.augment.transforms import get_transforms  # noqa: E402
from src.files import write_json_atomic
from src.runtime import NATIVE_BF16_FLAGS, cpu_flags, cpu_has_native_bf16, pick_device  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20, help="synthetic clips (default 20: a few minutes on CPU)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--amp", choices=AMP_CHOICES, default="auto",
                        help="precision of the default path, as tag.py --amp (default 'auto')")
    parser.add_argument("--step", type=int, default=64, help="tile step in frames (default 64)")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per batch of the batched paths")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each path (after a warm-up)")
    parser.add_argument("--base-size", type=int, default=64, help="network width (default 64, the full size)")
    parser.add_argument("--json", help="also write the speed figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="CPU tiles/s per forward batch size and layout")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="fp32 vs bf16 out-of-fold lwlrap of a trained experiment instead of the speed test")
    parser.add_argument("--data-dir", default="data/demo", help="data root for --compare-bf16 (default data/demo)")
    parser.add_argument("--experiment", default="demo", help="experiment name for --compare-bf16 (default demo)")
    return parser.parse_args(argv)


def machine_line(device) -> str:
    """Where the figures come from: CPU model, cores, torch threads, bf16-relevant flags, load average, torch."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")), "CPU")
    flags = sorted(cpu_flags() & set(SHOWN_FLAGS))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; flags {' '.join(flags) or '-'}; "
            f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; load average {load}; torch {torch.__version__}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}")


SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni") + NATIVE_BF16_FLAGS


def _cpuinfo_lines():
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def synthetic_log_mels(n_clips, seed=0, config=AUDIO):
    """Random log-mels (dB in [-80, 0]) with Kaggle-test-like durations: lognormal, median 5 s, 0.3-30 s."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(5.0), 0.9, n_clips), 0.3, 30.0)
    seconds = np.maximum(seconds, config.min_seconds)  # the front end extends short clips to 0.5 s
    frames = 1 + (np.round(seconds * config.sampling_rate).astype(int)) // config.hop_length
    specs = [np.clip(rng.normal(-45, 15, (config.n_mels, f)), -80, 0).astype(np.float32) for f in frames]
    return specs, float(seconds.sum())


def full_size_model(base_size, device, seed):
    torch.manual_seed(seed)
    return FreesoundModel({
        "nn_module": ("AuxSkipAttention", {"num_classes": 80, "base_size": base_size, "dropout": 0.4}),
        "loss": ("bce", {}), "optimizer": ("Adam", {"lr": 1e-3}), "device": str(device), "amp": "bf16"})


@torch.no_grad()
def predict_per_clip(model, specs, tile_size=256, step=64, batch_size=16) -> np.ndarray:
    """The original's loop: one clip at a time, numpy transform per tile, small batches."""
    transform = get_transforms(train=False, size=tile_size)
    clips = []
    for spec in specs:
        tensors = [transform(tile) for tile in make_tiles(spec, tile_size, step)]
        probs = [model.predict(torch.stack(tensors[i:i + batch_size])).float().cpu()
                 for i in range(0, len(tensors), batch_size)]
        clips.append(torch.cat(probs).mean(dim=0).numpy())
    return np.stack(clips)


def timed(fn, device):
    """(seconds, result); CUDA work is waited for inside the clock."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def speed(args):
    device = pick_device(args.device)
    # The per-clip loop gets its own model: the Predictor switches its models' weights to NHWC on CPU.
    baseline = full_size_model(args.base_size, device, args.seed)
    default = Predictor(copy.deepcopy(baseline), 256, args.step, args.batch_size, amp=args.amp)
    fp32 = Predictor(copy.deepcopy(baseline), 256, args.step, args.batch_size, amp="none")
    specs, audio_seconds = synthetic_log_mels(args.clips, args.seed)
    n_tiles = sum(count_tiles(s.shape[1], 256, args.step) for s in specs)
    print(f"machine: {machine_line(device)}")
    print(f"AuxSkipAttention base {args.base_size}, 80 classes, "
          f"{sum(p.numel() for p in baseline.nn_module.parameters()):,} parameters on {device}")
    print(f"{len(specs)} clips ({audio_seconds:.0f} s of audio, {min(s.shape[1] for s in specs)}-"
          f"{max(s.shape[1] for s in specs)} frames), {n_tiles} tiles of 256 frames every {args.step}")
    per_clip_precision = baseline.precision
    paths = {
        "per_clip": (f"per clip ({per_clip_precision}, numpy transform, batch 16)",
                     lambda s: predict_per_clip(baseline, s, 256, args.step)),
        "default": (f"default (Predictor --amp {args.amp}: {default.precision}, forward {default.forward_size})",
                    lambda s: default.predict(s)[2][0]),
        "fp32": (f"fp32 batched (Predictor --amp none, forward {fp32.forward_size})", lambda s: fp32.predict(s)[2][0]),
    }
    warm = [min(specs, key=lambda s: s.shape[1])]  # one tile: warms up every path cheaply
    for _, fn in paths.values():
        fn(warm)
    times, probs = {key: [] for key in paths}, {}
    for _ in range(args.repeats):  # interleaved: a burst of load from elsewhere hits all paths alike
        for key, (_, fn) in paths.items():
            seconds, probs[key] = timed(lambda: fn(specs), device)
            times[key].append(seconds)

    rates, figures = {}, {}
    for key, (name, _) in paths.items():
        clip_rates = sorted(len(specs) / t for t in times[key])
        rates[key] = statistics.median(clip_rates)
        print(f"  {name:58s} {rates[key]:7.2f} clips/s {rates[key] * n_tiles / len(specs):7.1f} tiles/s"
              f"  (clips/s {clip_rates[0]:.2f}-{clip_rates[-1]:.2f} over {len(times[key])} run(s))")
    reduced = baseline.precision != "fp32"  # the per-clip loop runs in the model's own precision
    for key, bf16 in (("default", default.precision != "fp32" or reduced), ("fp32", reduced)):
        # CUDA: both sides autocast, in different batch compositions; CPU: bf16 vs fp32, or fp32 vs fp32
        tolerance = 2e-2 if device.type == "cuda" else 1e-3 if bf16 else 1e-6
        diff = float(np.abs(probs[key] - probs["per_clip"]).max())
        figures[key] = (diff, tolerance)
        print(f"  {key} / per clip: {rates[key] / rates['per_clip']:.2f}x; max |clip probability difference| "
              f"{diff:.1e} ({'OK' if diff < tolerance else 'MISMATCH'}, tolerance {tolerance:.0e})")
    print(f"  default / fp32 batched: {rates['default'] / rates['fp32']:.2f}x")
    result = {"device": str(device), "device_name": machine_line(device), "torch": torch.__version__,
              "base_size": args.base_size, "amp": args.amp, "precision": default.precision,
              "native_bf16": cpu_has_native_bf16() if device.type == "cpu" else None,
              "clips": len(specs), "tiles": n_tiles, "step": args.step, "batch_size": args.batch_size,
              "forward_size": default.forward_size, "repeats": args.repeats,
              "batched_clips_per_s": rates["default"], "fp32_batched_clips_per_s": rates["fp32"],
              "per_clip_clips_per_s": rates["per_clip"], "speedup": rates["default"] / rates["per_clip"],
              "fp32_speedup": rates["fp32"] / rates["per_clip"],
              "max_abs_difference": figures["default"][0], "tolerance": figures["default"][1],
              "fp32_max_abs_difference": figures["fp32"][0],
              "outputs_equal": all(diff < tol for diff, tol in figures.values())}
    if args.json:
        write_json_atomic(result, args.json)
    return result


def sweep(args):
    """Tiles/s of the network alone per forward batch size, NCHW vs NHWC, fp32 vs bf16 (where native)."""
    device = pick_device(args.device)
    print(f"machine: {machine_line(device)}")
    module = full_size_model(args.base_size, device, args.seed).nn_module.eval()
    images = torch.randn(64, 3, 128, 256, device=device)
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_native_bf16() else [])
    for precision in precisions:
        for layout in (torch.contiguous_format, torch.channels_last):
            module.to(memory_format=layout)
            for size in (1, 4, 8, 16, 32, 64):
                batch = images[:size].contiguous(memory_format=layout)
                with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, precision == "bf16"):
                    module(batch)  # warm-up: oneDNN builds its kernels for this shape
                    seconds = min(timed(lambda: module(batch), device)[0] for _ in range(max(args.repeats, 2)))
                name = "NHWC" if layout == torch.channels_last else "NCHW"
                print(f"  {precision} {name} batch {size:3d}: {size / seconds:7.2f} tiles/s", flush=True)


def compare_bf16(args):
    from src.data.sources import load_training_data
    from src.experiments import complete_config, data_settings
    from src.metrics import lwlrap
    from src.predict.predictor import load_fold_models
    from src.experiment_folder import experiments_dir

    data_dir = Path(args.data_dir)
    exp_dir = experiments_dir(data_dir, args.experiment)
    if not (exp_dir / "config.json").is_file():
        raise InputFileNotFound(f"{exp_dir}: no trained experiment. Train one first, e.g. `make demo` or "
                         f"python train_folds.py --experiment {args.experiment} --data-dir {data_dir}")
    device = pick_device(args.device)
    experiment = complete_config(json.loads((exp_dir / "config.json").read_text())["experiment"])
    models = load_fold_models(exp_dir, device)
    data = load_training_data(data_dir, curated_corrections=data_settings(experiment)["curated_corrections"])
    tile_size, step = experiment["crop_size"], experiment["tile_step"]
    print(f"{args.experiment}: folds {sorted(models)} on {device}, tiles {tile_size} every {step} frames")

    truth, probs = [], {"fp32": [], "bf16": []}
    for fold, model in sorted(models.items()):
        part = data.curated.subset(np.flatnonzero(data.folds == fold))
        truth.append(part.targets)
        for name, amp in (("fp32", "none"), ("bf16", "bf16")):
            probs[name].append(Predictor(model, tile_size, step, args.batch_size, amp=amp).predict(part.specs)[2][0])
        fold_scores = [lwlrap(part.targets, probs[name][-1]) for name in ("fp32", "bf16")]
        print(f"  fold {fold}: {len(part.specs)} clips, lwlrap fp32 {fold_scores[0]:.5f}, bf16 {fold_scores[1]:.5f}, "
              f"difference {fold_scores[1] - fold_scores[0]:+.5f}")
    truth = np.concatenate(truth)
    probs = {k: np.concatenate(v) for k, v in probs.items()}
    scores = {k: lwlrap(truth, v) for k, v in probs.items()}
    print(f"out-of-fold lwlrap over {len(truth)} clips: fp32 {scores['fp32']:.5f}, bf16 {scores['bf16']:.5f}, "
          f"difference {scores['bf16'] - scores['fp32']:+.5f}")
    change = np.abs(probs["bf16"] - probs["fp32"])
    print(f"max |probability difference| {change.max():.2e}, mean {change.mean():.2e}")
    result = {"clips": len(truth), "lwlrap_fp32": scores["fp32"], "lwlrap_bf16": scores["bf16"],
              "max_abs_difference": float(change.max())}
    if (data_dir / "test_labels.csv").is_file():
        result["test"] = compare_bf16_on_test(data_dir, experiment, models, args.batch_size)
    return result


def compare_bf16_on_test(data_dir, experiment, models, batch_size) -> dict:
    """What tag.py --experiment computes on the labelled test clips (every fold model, test tiles,
    geometric mean over folds), in fp32 and in bf16: the lwlrap a tagging user sees."""
    from src.audio.cache import load_features
    from src.data.labels import read_train_csv, targets_matrix
    from src.data.layout import read_classes, read_test_fnames
    from src.metrics import lwlrap
    from src.predict.prediction_sets import geometric_mean

    fnames, classes = read_test_fnames(data_dir), read_classes(data_dir)
    labels = read_train_csv(data_dir / "test_labels.csv").set_index("fname").loc[fnames, "labels"].tolist()
    truth = targets_matrix(labels, classes)
    specs = load_features(fnames, data_dir / "test", data_dir / "features", name="test").specs
    fold_models = [models[f] for f in sorted(models)]
    probs = {name: geometric_mean(Predictor(fold_models, experiment["crop_size"], experiment["test_tile_step"],
                                            batch_size, amp=amp).predict(specs)[2])
             for name, amp in (("fp32", "none"), ("bf16", "bf16"))}
    scores = {name: lwlrap(truth, p) for name, p in probs.items()}
    change = float(np.abs(probs["bf16"] - probs["fp32"]).max())
    print(f"test clips as tag.py predicts them ({len(fnames)} clips, folds combined, tiles every "
          f"{experiment['test_tile_step']} frames): lwlrap fp32 {scores['fp32']:.5f}, bf16 {scores['bf16']:.5f}, "
          f"difference {scores['bf16'] - scores['fp32']:+.5f}; max |probability difference| {change:.2e}")
    return {"clips": len(fnames), "lwlrap_fp32": scores["fp32"], "lwlrap_bf16": scores["bf16"],
            "max_abs_difference": change}


def main(argv=None):
    args = parse_args(argv)
    if args.compare_bf16:
        return compare_bf16(args)
    return sweep(args) if args.sweep else speed(args)


if __name__ == "__main__":
    run(main)
