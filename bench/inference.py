"""Benchmark sliding-window inference: batched Predictor vs. the original's clip-at-a-time loop.

    python bench/inference.py                               # CPU, 20 clips, fp32
    python bench/inference.py --amp bf16                    # CPU bf16 autocast
    python bench/inference.py --device cuda --clips 500     # CUDA (bf16 autocast by default)
    python bench/inference.py --compare-bf16 --data-dir data/demo   # fp32 vs bf16 lwlrap of a trained model

Speed: one full-size fold model (AuxSkipAttention, base 64, 80 classes, random
weights) predicts synthetic log-mels whose durations follow a Kaggle-test-like
spread (0.3-30 s, median ~5 s; 0.5 s minimum after trimming, as the front end
makes it). Both methods cut the same 128 x 256 tiles every --step frames and
average the tile sigmoids per clip:

  batched   src.predict.predictor.Predictor (predict_folds.py): tiles of many clips fill
            each batch of --batch-size, deltas computed on the device by matmul
  per clip  the original's style: for each clip, each tile through the numpy
            validation transform (ImageToTensor: deltas per tile), batches of 16

--amp bf16 on CPU uses torch's CPU autocast. Only CPUs with native bf16
(AVX512-BF16 or AMX) gain from it; on an AVX2-only CPU it is emulated and was
~190x slower than fp32 here (0.03 vs 5.4 tiles/s), so try it with --clips 1.

The script checks that both give the same clip probabilities, then prints
clips/s and tiles/s of each and the ratio. --json PATH also writes the figures
to a JSON file (bench/gpu_check.py reads it); --base-size shrinks the network
for a smoke run.

--compare-bf16: loads the fold models of a trained experiment (default
<data>/experiments/demo), predicts every curated clip with the model of its
fold (out-of-fold, as predict_folds.py) in fp32 and under bf16 autocast on the
same device, and reports both lwlrap values and the largest probability change.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from src.train.argus_model import FreesoundModel  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.predict.predictor import Predictor, count_tiles, make_tiles  # noqa: E402
from src.augment.transforms import get_transforms  # noqa: E402
from src.utils import pick_device, write_json_atomic  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20, help="synthetic clips (default 20: a few minutes on CPU)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--amp", choices=("auto", "none", "bf16"), default="auto",
                        help="bf16 autocast: 'auto' = bf16 on CUDA, fp32 on CPU (default)")
    parser.add_argument("--step", type=int, default=64, help="tile step in frames (default 64)")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per batch of the batched path")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each method (after a warm-up)")
    parser.add_argument("--base-size", type=int, default=64, help="network width (default 64, the full size)")
    parser.add_argument("--json", help="also write the speed figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-bf16", action="store_true",
                        help="fp32 vs bf16 out-of-fold lwlrap of a trained experiment instead of the speed test")
    parser.add_argument("--data-dir", default="data/demo", help="data root for --compare-bf16 (default data/demo)")
    parser.add_argument("--experiment", default="demo", help="experiment name for --compare-bf16 (default demo)")
    return parser.parse_args(argv)


def use_bf16(model: FreesoundModel, enabled: bool):
    """Switch the model's own autocast (used by FreesoundModel.predict) to bf16 on any device.

    FreesoundModel only autocasts on CUDA; an outer torch.autocast('cpu') would be switched
    off again by its inner autocast(enabled=False), so the flag is set on the model itself.
    """
    model.amp_enabled = enabled
    model.amp_dtype = torch.bfloat16


def synthetic_log_mels(n_clips, seed=0, config=AUDIO):
    """Random log-mels (dB in [-80, 0]) with Kaggle-test-like durations: lognormal, median 5 s, 0.3-30 s."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(5.0), 0.9, n_clips), 0.3, 30.0)
    seconds = np.maximum(seconds, config.min_seconds)  # the front end extends short clips to 0.5 s
    frames = 1 + (np.round(seconds * config.sampling_rate).astype(int)) // config.hop_length
    specs = [np.clip(rng.normal(-45, 15, (config.n_mels, f)), -80, 0).astype(np.float32) for f in frames]
    return specs, float(seconds.sum())


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


def timed(fn, device, repeats):
    """(list of seconds per run, last result); CUDA work is waited for inside the clock."""
    times, result = [], None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times, result


def speed(args):
    device = pick_device(args.device)
    bf16 = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    torch.manual_seed(args.seed)
    model = FreesoundModel({
        "nn_module": ("AuxSkipAttention", {"num_classes": 80, "base_size": args.base_size, "dropout": 0.4}),
        "loss": ("bce", {}), "optimizer": ("Adam", {"lr": 1e-3}), "device": str(device), "amp": "bf16"})
    use_bf16(model, bf16)
    specs, audio_seconds = synthetic_log_mels(args.clips, args.seed)
    n_tiles = sum(count_tiles(s.shape[1], 256, args.step) for s in specs)
    threads = f", {torch.get_num_threads()} torch threads" if device.type == "cpu" else ""
    print(f"AuxSkipAttention base {args.base_size}, 80 classes, {sum(p.numel() for p in model.nn_module.parameters()):,} "
          f"parameters on {device}{threads}, {'bf16 autocast' if bf16 else 'fp32'}")
    print(f"{len(specs)} clips ({audio_seconds:.0f} s of audio, {min(s.shape[1] for s in specs)}-"
          f"{max(s.shape[1] for s in specs)} frames), {n_tiles} tiles of 256 frames every {args.step}")

    if bf16 and device.type == "cpu":
        print(f"note: CPU capability {torch.backends.cpu.get_cpu_capability()}: without native bf16 "
              f"(AVX512-BF16 / AMX) bf16 autocast is emulated; on an AVX2 EPYC it ran ~190x slower than fp32")
    predictor = Predictor(model, 256, args.step, args.batch_size)
    warm = [min(specs, key=lambda s: s.shape[1])]  # one tile: warms up both paths cheaply
    predictor.predict(warm)
    predict_per_clip(model, warm, 256, args.step)
    batched_t, (_, _, batched) = timed(lambda: predictor.predict(specs), device, args.repeats)
    per_clip_t, per_clip = timed(lambda: predict_per_clip(model, specs, 256, args.step), device, args.repeats)

    diff = float(np.abs(batched[0] - per_clip).max())
    tolerance = 2e-2 if bf16 else 1e-4  # bf16: different batch compositions round differently
    print(f"max |clip probability difference| batched vs per clip: {diff:.1e} "
          f"({'OK' if diff < tolerance else 'MISMATCH'})")
    rates = {}
    for key, name, times in (("batched", "batched (Predictor, batch %d)" % args.batch_size, batched_t),
                             ("per_clip", "per clip (numpy transform, batch 16)", per_clip_t)):
        clip_rates = sorted(len(specs) / t for t in times)
        rates[key] = statistics.median(clip_rates)
        print(f"  {name:38s} {rates[key]:7.2f} clips/s  {rates[key] * n_tiles / len(specs):7.1f}"
              f" tiles/s  (clips/s min {clip_rates[0]:.2f}, max {clip_rates[-1]:.2f} over {len(times)} run(s))")
    speedup = statistics.median(per_clip_t) / statistics.median(batched_t)
    print(f"  speed-up batched / per clip: {speedup:.2f}x")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    figures = {"device": str(device), "device_name": name, "torch": torch.__version__, "base_size": args.base_size,
               "amp": "bf16" if bf16 else "none", "clips": len(specs), "tiles": n_tiles, "step": args.step,
               "batch_size": args.batch_size, "batched_clips_per_s": rates["batched"],
               "per_clip_clips_per_s": rates["per_clip"], "speedup": speedup, "max_abs_difference": diff,
               "tolerance": tolerance, "outputs_equal": diff < tolerance}
    if args.json:
        write_json_atomic(figures, args.json)
    return figures


def compare_bf16(args):
    from src.data.sources import load_training_data
    from src.experiments import data_settings
    from src.metrics import lwlrap
    from src.predict.predictor import load_fold_models
    from src.train.fit import experiments_dir

    data_dir = Path(args.data_dir)
    exp_dir = experiments_dir(data_dir, args.experiment)
    if not (exp_dir / "config.json").is_file():
        raise SystemExit(f"{exp_dir}: no trained experiment. Train one first, e.g. `make demo` or "
                         f"python train_folds.py --experiment {args.experiment} --data-dir {data_dir}")
    device = pick_device(args.device)
    experiment = json.loads((exp_dir / "config.json").read_text())["experiment"]
    models = load_fold_models(exp_dir, device)
    data = load_training_data(data_dir, curated_corrections=data_settings(experiment)["curated_corrections"])
    tile_size, step = experiment["crop_size"], experiment.get("tile_step", 64)
    print(f"{args.experiment}: folds {sorted(models)} on {device}, tiles {tile_size} every {step} frames")

    truth, probs = [], {"fp32": [], "bf16": []}
    for fold, model in sorted(models.items()):
        part = data.curated.subset(np.flatnonzero(data.folds == fold))
        truth.append(part.targets)
        for name, enabled in (("fp32", False), ("bf16", True)):
            use_bf16(model, enabled)
            probs[name].append(Predictor(model, tile_size, step, args.batch_size).predict(part.specs)[2][0])
    truth = np.concatenate(truth)
    probs = {k: np.concatenate(v) for k, v in probs.items()}
    scores = {k: lwlrap(truth, v) for k, v in probs.items()}
    print(f"out-of-fold lwlrap over {len(truth)} clips: fp32 {scores['fp32']:.5f}, bf16 {scores['bf16']:.5f}, "
          f"difference {scores['bf16'] - scores['fp32']:+.5f}")
    print(f"max |probability difference| {np.abs(probs['bf16'] - probs['fp32']).max():.2e}, "
          f"mean {np.abs(probs['bf16'] - probs['fp32']).mean():.2e}")


def main(argv=None):
    args = parse_args(argv)
    return compare_bf16(args) if args.compare_bf16 else speed(args)


if __name__ == "__main__":
    main()
