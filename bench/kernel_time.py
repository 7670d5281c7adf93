"""Kernel time: the 2019 ensemble's networks over a Kaggle-2019-sized test set, in fp32, against the 1-hour limit.

    python bench/kernel_time.py --device cuda                          # the GPU check's kernel_time stage
    python bench/kernel_time.py --device cpu --clips 3 --max-seconds 60  # CPU sanity run (~25 CPU-s a clip)
    python bench/kernel_time.py --tiny --device cpu --clips 4 --device-tflops 1   # smoke run (tiny networks)

What is timed: `src.predict.ensemble.Ensemble.predict` of the whole 2019 ensemble (ensemble_2019: 7
first-level experiments x 5 folds on 128 x 256 tiles every 128 frames, then 3 stacking MLPs x 5 folds,
then the geometric mean), with random full-size weights, built and loaded through a bundle file as
bench/ensemble_cost.py does (`build_ensemble`), on random log-mels whose lengths follow Kaggle's 2019
test set (below). Precision: fp32, set explicitly, as the 2019 kernel made every test prediction (it
disabled mixed precision; the reference notes on the original, "Prediction"): every network's autocast
off (amp 'none', in each bundle part and for the first level), and on CUDA TF32 off for cuDNN
convolutions and matmuls (torch lets cuDNN use TF32 by default on Ampere and later; P100 and T4 have
none). Not timed: audio decoding and the log-mel front end (CPU work in the kernel), and building and
loading the bundle (reported as build_s / load_s).

Figures: clips/s and first-level tile forwards/s over the timed clips; GFLOP per tile of each first-level
network (torch.utils.flop_counter on one tile; the stacking MLPs' few MFLOP are left out), the achieved
fp32 TFLOP/s and its share of the device's peak; the projected time for a test set of --test-set-clips
clips (default 4,481: Kaggle's whole 2019 test set) = clips / (clips/s), against Kaggle's limit for the
competition (a GPU notebook, inference only, under 1 hour: 3,600 s). Beside it, an ESTIMATE for
Kaggle's notebook GPUs, P100 and T4: the projected time scaled by the measured device's published
peak fp32 FLOP/s over theirs (PEAK_FP32_TFLOPS). That scaling assumes the networks reach the same
share of peak on every card; it ignores memory bandwidth (P100 732 GB/s, T4 320 GB/s, H100 2-3.35 TB/s)
and the T4's 70 W cap, which holds it below its boost clock: read it as a lower bound on those cards'
time, not a measurement.

Kaggle's 2019 test set. Source: FSDKaggle2019's README (Zenodo record 3612637,
FSDKaggle2019.doc/README.md; read in a copy in a public repository, as this repo holds no test data):
4,481 manually labelled Freesound clips, 12.9 hours in all (mean 10.36 s a clip); FSDKaggle2019's
clips are "roughly from 0.3 to 30s" long (its curated train set, from the same source: 0.3-30 s).
During the competition only the public-leaderboard part could be downloaded (the README does not give
its size); the DCASE 2019 Task 2 results page (dcase.community/challenge2019/task-audio-tagging-results)
says kernels were re-run on the private test set's data and some failed by running past the time
limit. Whether that re-run also held the public clips is not stated, so the default is the whole
4,481 (the larger case). The README gives no length histogram: the lengths here are an ASSUMED shape,
a log-normal truncated to [0.3, 30] s whose log-sd (LOG_SIGMA) puts that range at +-3 sd and whose
location is solved so that the truncated mean is the documented 10.36 s (median then ~8.8 s). The
clips are the distribution's quantiles at (i + 0.5) / n, shuffled, so even a few clips span it;
expected_tiles_per_clip (from 20,000 quantiles) next to sample_tiles_per_clip shows how well the timed
clips represent it, and projected_s_tile_weighted rescales the projection by that ratio. Raw durations
are used: the front end's silence trimming only shortens clips, so this errs towards more tiles.
Clips under 0.5 s are extended to 0.5 s, as the front end does (AudioConfig.min_seconds).
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ensemble_cost import ENSEMBLE, build_ensemble, random_log_mels  # noqa: E402
from src.cli import run  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.ensembles import get_ensemble  # noqa: E402
from src.predict.predictor import count_tiles  # noqa: E402
from src.runtime import pick_device  # noqa: E402

# Kaggle's 2019 test set (FSDKaggle2019 README, Zenodo record 3612637; see the docstring).
TEST_SET_CLIPS = 4481
TEST_SET_HOURS = 12.9
TEST_SET_MEAN_S = TEST_SET_HOURS * 3600 / TEST_SET_CLIPS  # 10.36 s
MIN_S, MAX_S = 0.3, 30.0
LOG_SIGMA = math.log(MAX_S / MIN_S) / 6  # ASSUMED: the documented range is +-3 sd of log length (0.77)
KAGGLE_LIMIT_S = 3600.0  # the competition's kernel limit: GPU notebook, inference only, under 1 hour

# Published peak fp32 (non-tensor-core) TFLOP/s. Sources: NVIDIA's product datasheets as commonly quoted
# (H100: 67 SXM5, 51 PCIe; H200 SXM: 67, the same GH100 compute as H100 SXM; Tesla P100 PCIe: 9.3; T4:
# 8.1), cross-checked against third-party spec pages that derive them as FP32 cores x 2 FLOP x boost
# clock (hmc-tech.com: H100 PCIe 51.22, H200 SXM 66.91, T4 8.14 = 2560 x 2 x 1.59 GHz; P100 PCIe
# 3584 x 2 x ~1.3 GHz = 9.3; glennklockwood.com: H100 SXM5 FP32 66.9). NVIDIA's own pages could not be
# opened from this machine. NVL variants (other clocks) are left out on purpose: --device-tflops.
PEAK_FP32_TFLOPS = {"H100 SXM": 67.0, "H100 PCIe": 51.0, "H200": 67.0, "P100 PCIe": 9.3, "T4": 8.1}
KAGGLE_GPUS = ("P100 PCIe", "T4")


def peak_key(device_name: str):
    """The PEAK_FP32_TFLOPS key of a torch device name ('NVIDIA H100 80GB HBM3', 'Tesla T4', ...), or None."""
    name = device_name.lower()
    if "nvl" in name:
        return None
    if "h200" in name:
        return "H200"
    if "h100" in name:
        return "H100 PCIe" if "pcie" in name else "H100 SXM"
    if "p100" in name:
        return "P100 PCIe" if "pcie" in name else None  # the SXM2 P100 has other clocks (10.6)
    if "t4" in name.replace("-", " ").split():
        return "T4"
    return None


def _truncated_lognormal(sigma=LOG_SIGMA, low=MIN_S, high=MAX_S, mean=TEST_SET_MEAN_S):
    """(mu, cdf(low), cdf(high)) of the log-normal with log-sd `sigma` truncated to [low, high] whose
    truncated mean is `mean` (bisection on mu; the truncated mean rises with mu)."""
    norm = statistics.NormalDist()
    a, b = math.log(low), math.log(high)

    def truncated_mean(mu):
        mass = norm.cdf((b - mu) / sigma) - norm.cdf((a - mu) / sigma)
        shifted = norm.cdf((b - mu - sigma ** 2) / sigma) - norm.cdf((a - mu - sigma ** 2) / sigma)
        return math.exp(mu + sigma ** 2 / 2) * shifted / mass

    lo, hi = a, b
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if truncated_mean(mid) < mean else (lo, mid)
    mu = (lo + hi) / 2
    return mu, norm.cdf((a - mu) / sigma), norm.cdf((b - mu) / sigma)


def test_set_seconds(n: int, seed: int = 0, sigma=LOG_SIGMA) -> np.ndarray:
    """n clip lengths in seconds: the assumed test-set distribution's quantiles at (i + 0.5) / n, shuffled,
    then extended to the front end's minimum (AUDIO.min_seconds)."""
    mu, low, high = _truncated_lognormal(sigma)
    norm = statistics.NormalDist()
    seconds = np.array([math.exp(mu + sigma * norm.inv_cdf(low + (i + 0.5) / n * (high - low))) for i in range(n)])
    np.random.default_rng(seed).shuffle(seconds)
    return np.maximum(seconds, AUDIO.min_seconds)


def frames_of(seconds) -> np.ndarray:
    """Log-mel frames of clips this long (centred STFT: 1 + samples // hop)."""
    return 1 + np.round(np.asarray(seconds) * AUDIO.sampling_rate).astype(int) // AUDIO.hop_length


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--clips", type=int, default=448, help="clips generated for the timing (default 448, "
                        "a tenth of the test set)")
    parser.add_argument("--max-seconds", type=float, default=0,
                        help="stop timing after the chunk that passes this many seconds (0: time every clip)")
    parser.add_argument("--chunk", type=int, default=64, help="clips per Ensemble.predict call (default 64)")
    parser.add_argument("--test-set-clips", type=int, default=TEST_SET_CLIPS,
                        help=f"clips of the test set to project to (default {TEST_SET_CLIPS}: Kaggle's 2019 test set)")
    parser.add_argument("--step", type=int, help="test tile step in frames (default: ensemble_2019's, 128)")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per forward batch (default 128)")
    parser.add_argument("--device-tflops", type=float,
                        help="peak fp32 TFLOP/s of the measured device, where PEAK_FP32_TFLOPS does not know it "
                             "(the CPU, NVL cards); the Kaggle estimates need it")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny networks (first level base 4, SE ratio 2; stacking base 16): a smoke run")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def kaggle_estimates(projected_s: float, device_tflops, source) -> dict:
    """The projected time scaled to each Kaggle GPU by peak fp32 FLOP/s: an estimate, flagged as one."""
    out = {"estimate": True,
           "basis": "measured projection x (measured device's peak fp32 TFLOP/s / the card's); same share of "
                    "peak assumed on every card; memory bandwidth and power caps ignored, so a lower bound",
           "measured_device_peak_fp32_tflops": device_tflops, "measured_device_peak_source": source, "devices": {}}
    if not device_tflops:
        out["devices"] = None
        out["reason"] = "peak fp32 TFLOP/s of the measured device unknown: give --device-tflops"
        return out
    for key in KAGGLE_GPUS:
        seconds = projected_s * device_tflops / PEAK_FP32_TFLOPS[key]
        out["devices"][key] = {"peak_fp32_tflops": PEAK_FP32_TFLOPS[key], "projected_s": seconds,
                               "share_of_limit": seconds / KAGGLE_LIMIT_S, "within_limit": seconds <= KAGGLE_LIMIT_S}
    return out


def first_level_gflop_per_tile(ensemble) -> dict:
    """{first-level experiment: GFLOP of one fold network on one tile} (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for member in ensemble.first_level:
        model = member.models[0]
        tile = torch.zeros(1, 3, ensemble.audio_config.n_mels, member.tile_size, device=model.device)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model.nn_module(tile)
        out[member.name] = counter.get_total_flops() / 1e9
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    tf32 = None
    if device.type == "cuda":  # fp32 as the 2019 kernel's GPU computed it: no TF32 anywhere
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        tf32 = {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_benchmark": torch.backends.cudnn.benchmark}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    step = args.step or get_ensemble(ENSEMBLE)["test_tile_step"]
    tiny = dict(first_level_kwargs={"base_size": 4, "ratio": 2}, stacking_kwargs={"base_size": 16}) if args.tiny else {}

    start = time.perf_counter()
    ensemble, bundle_bytes, load_s = build_ensemble(device, args.batch_size, amp="none", **tiny)
    build_s = time.perf_counter() - start
    for member in ensemble.first_level:  # the test tile step (ensemble_2019's own is already 128)
        member.step = step
    tile_size = ensemble.first_level[0].tile_size

    seconds = test_set_seconds(args.clips)
    frames = frames_of(seconds)
    tiles = np.array([count_tiles(int(f), tile_size, step) for f in frames])
    expected = float(np.mean([count_tiles(int(f), tile_size, step) for f in frames_of(test_set_seconds(20000))]))
    specs = random_log_mels(frames)

    # Warm-up (allocations, cuDNN's first calls): on CUDA one clip of exactly one full batch of tiles, on
    # the CPU (seconds per tile) one tile.
    warm = tile_size + (args.batch_size - 1) * step if device.type == "cuda" else tile_size
    ensemble.predict(random_log_mels([warm], seed=10 ** 6))
    ensemble.counter.clips, ensemble.counter.seconds = 0, 0.0
    done = 0
    while done < len(specs):
        ensemble.predict(specs[done:done + args.chunk])
        done = min(done + args.chunk, len(specs))
        if args.max_seconds and ensemble.counter.seconds >= args.max_seconds:
            break
    elapsed = ensemble.counter.seconds
    clips_per_s = done / elapsed
    sample_tiles = float(tiles[:done].mean())
    projected_s = args.test_set_clips / clips_per_s
    gflop = first_level_gflop_per_tile(ensemble)
    # Every first-level experiment sees the same tiles, each through all its fold models.
    tiles_timed = float(tiles[:done].sum())
    tiles_per_s = tiles_timed * sum(len(m.models) for m in ensemble.first_level) / elapsed
    achieved = tiles_timed * sum(gflop[m.name] * len(m.models) for m in ensemble.first_level) / elapsed / 1e3
    peak_source = "--device-tflops" if args.device_tflops else "PEAK_FP32_TFLOPS"
    key = None if args.device_tflops else peak_key(device_name)
    device_tflops = args.device_tflops or (PEAK_FP32_TFLOPS[key] if key else None)

    figures = {
        "device": str(device), "device_name": device_name, "precision": "fp32", "amp": "none", "tf32": tf32,
        "tiny_networks": bool(args.tiny), "ensemble": ENSEMBLE, "models": ensemble.n_models,
        "first_level_models": sum(len(m.models) for m in ensemble.first_level), "tile_size": tile_size,
        "tile_step": step, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "bundle_mb": bundle_bytes / 1e6, "build_s": build_s, "load_s": load_s,
        "clips_generated": len(specs), "clips_timed": done, "timed_s": elapsed,
        "sample_mean_seconds": float(seconds[:done].mean()), "sample_tiles_per_clip": sample_tiles,
        "expected_tiles_per_clip": expected, "length_distribution": {
            "shape": "ASSUMED log-normal truncated to [0.3, 30] s, fitted to the documented mean",
            "log_sigma": LOG_SIGMA, "mean_s": TEST_SET_MEAN_S, "min_s": MIN_S, "max_s": MAX_S,
            "source": "FSDKaggle2019 README (Zenodo 3612637): test set 4,481 clips, 12.9 h; clips ~0.3-30 s"},
        "clips_per_s": clips_per_s,
        "first_level_tiles_per_s": tiles_per_s, "gflop_per_tile": gflop, "achieved_tflops": achieved,
        "share_of_peak": achieved / device_tflops if device_tflops else None,
        "test_set_clips": args.test_set_clips, "projected_s": projected_s,
        "projected_s_tile_weighted": projected_s * expected / sample_tiles,
        "limit_s": KAGGLE_LIMIT_S, "share_of_limit": projected_s / KAGGLE_LIMIT_S,
        "within_limit": projected_s <= KAGGLE_LIMIT_S,
        "peak_fp32_key": key,
        "kaggle_estimates": kaggle_estimates(projected_s, device_tflops, peak_source if device_tflops else None),
    }
    report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def report(f: dict):
    net = "TINY networks (smoke run)" if f["tiny_networks"] else "full-size random weights"
    print(f"kernel time: {f['ensemble']} ({f['models']} models, {net}) on {f['device_name']}, fp32 (amp none"
          + (", TF32 off" if f["tf32"] else "") + f"), tiles {f['tile_size']} every {f['tile_step']} frames")
    print(f"  bundle {f['bundle_mb']:.0f} MB, built in {f['build_s']:.1f} s (load {f['load_s']:.1f} s, not in the "
          f"projection)")
    print(f"  {f['clips_timed']} clips (mean {f['sample_mean_seconds']:.1f} s, {f['sample_tiles_per_clip']:.2f} tiles "
          f"each; test set expected {f['expected_tiles_per_clip']:.2f}) in {f['timed_s']:.1f} s: "
          f"{f['clips_per_s']:.3f} clips/s, {f['first_level_tiles_per_s']:.1f} first-level tile forwards/s")
    share = f" ({100 * f['share_of_peak']:.0f}% of its peak)" if f["share_of_peak"] else ""
    print(f"  {statistics.mean(f['gflop_per_tile'].values()):.2f} GFLOP per tile and network: "
          f"{f['achieved_tflops']:.2f} fp32 TFLOP/s achieved{share}")
    print(f"  measured projection for {f['test_set_clips']} clips: {f['projected_s']:.0f} s "
          f"({f['projected_s'] / 60:.1f} min, {100 * f['share_of_limit']:.0f}% of the 1-hour limit: "
          f"{'within' if f['within_limit'] else 'OVER'}); tile-weighted {f['projected_s_tile_weighted']:.0f} s")
    est = f["kaggle_estimates"]
    if est["devices"] is None:
        print(f"  ESTIMATE for Kaggle's GPUs: none ({est['reason']})")
        return
    print(f"  ESTIMATE for Kaggle's GPUs (scaled by peak fp32 TFLOP/s, {est['measured_device_peak_fp32_tflops']:g} "
          f"for this device from {est['measured_device_peak_source']}; a lower bound, not a measurement):")
    for key, d in est["devices"].items():
        print(f"    {key:10s} {d['peak_fp32_tflops']:5.1f} TFLOP/s: ~{d['projected_s']:.0f} s "
              f"({d['projected_s'] / 60:.1f} min, {100 * d['share_of_limit']:.0f}% of the limit)")


if __name__ == "__main__":
    run(main)
