"""Size and speed of the full 2019 ensemble as one predictor, with randomly initialised full-size weights.

    python bench/ensemble_cost.py                       # CPU (or CUDA when present): 16 clips of 8 s
    python bench/ensemble_cost.py --device cuda --clips 256 --seconds 8

Builds the ensemble_2019 bundle (7 first-level experiments x 5 folds + 3 stacking MLPs x 5
folds), writes it to a temporary file (its size is the exported bundle's), loads it back with
torch.load(weights_only=True), and times `Ensemble.predict` on random log-mels: the network
cost per test clip of the final submission (audio decoding and the front end not included).
`build_ensemble` and `random_log_mels` are shared with bench/kernel_time.py.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.cli import run  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.errors import BadSetting  # noqa: E402
from src.predict.ensemble import load_ensemble_bundle  # noqa: E402
from src.tagging.bundles import random_ensemble_bundle  # noqa: E402
from src.runtime import pick_device  # noqa: E402

ENSEMBLE, N_CLASSES = "ensemble_2019", 80


def build_ensemble(device, batch_size=128, amp=None, first_level_kwargs=None, stacking_kwargs=None,
                   name=ENSEMBLE, n_classes=N_CLASSES) -> tuple:
    """(Ensemble, bundle bytes, load seconds): the named ensemble with random weights, written to a
    temporary bundle file and loaded back onto `device` as export.py / the kernel would load it.

    amp 'none' makes every network fp32 explicitly: each bundle part's own autocast (the stacking
    MLPs use theirs) and the first level's (`Ensemble.amp`); None keeps the bundle's and the
    Predictor's defaults. `*_kwargs` override network settings (tiny networks for smoke runs)."""
    bundle = random_ensemble_bundle(name, [f"c{i}" for i in range(n_classes)],
                                    first_level_kwargs=first_level_kwargs, stacking_kwargs=stacking_kwargs)
    if amp == "none":
        for part in bundle["first_level"] + bundle["stacking"]:
            part["amp"] = "none"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ensemble.pt"
        torch.save(bundle, path)
        del bundle
        size = path.stat().st_size
        start = time.perf_counter()
        defaults = {} if amp is None else {"amp": amp}  # None: the bundle's test_amp (fp32)
        ensemble = load_ensemble_bundle(path, device, batch_size=batch_size, **defaults)
        load_s = time.perf_counter() - start
    return ensemble, size, load_s


def random_log_mels(frames, seed=0, n_mels=AUDIO.n_mels) -> list:
    """One random (n_mels, f) log-mel (dB in [-80, 0]) per entry of `frames`."""
    return [np.random.default_rng(seed + i).uniform(-80, 0, (n_mels, int(f))).astype(np.float32)
            for i, f in enumerate(frames)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--clips", type=int, default=16, help="random clips to predict (default 16)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each clip (default 8)")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per forward batch (default 128)")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.seconds <= 0 or args.batch_size < 1:
        raise BadSetting(f"--clips {args.clips}, --seconds {args.seconds:g}, --batch-size {args.batch_size}: "
                         "each must be positive")
    device = pick_device(args.device)
    ensemble, size, _ = build_ensemble(device, args.batch_size)
    print(f"bundle: {size / 1e6:.0f} MB")
    frames = int(args.seconds * AUDIO.frames_per_second)
    specs = random_log_mels([frames] * args.clips)
    ensemble.predict(specs[:2])  # warm-up (cuDNN autotuning, allocations)
    ensemble.counter.clips, ensemble.counter.seconds = 0, 0.0
    start = time.perf_counter()
    ensemble.predict(specs)
    print(f"{ensemble.n_models} models, {args.clips} clips of {args.seconds:g} s on {device} "
          f"({torch.get_num_threads()} threads): {ensemble.throughput()}; wall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run(main)
