"""Size and speed of the full 2019 ensemble as one predictor, with randomly initialised full-size weights.

    python bench/ensemble_cost.py                       # CPU (or CUDA when present): 16 clips of 8 s
    python bench/ensemble_cost.py --device cuda --clips 256 --seconds 8

Builds the ensemble_2019 bundle (7 first-level experiments x 5 folds + 3 stacking MLPs x 5
folds), writes it to a temporary file (its size is the exported bundle's), loads it back with
torch.load(weights_only=True), and times `Ensemble.predict` on random log-mels: the network
cost per test clip of the final submission (audio decoding and the front end not included).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.config import AUDIO  # noqa: E402
from src.predict.ensemble import load_ensemble_bundle  # noqa: E402
from src.tagging.models import random_ensemble_bundle  # noqa: E402
from src.utils import pick_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each clip")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ensemble.pt"
        torch.save(random_ensemble_bundle("ensemble_2019", [f"c{i}" for i in range(80)]), path)
        print(f"bundle: {path.stat().st_size / 1e6:.0f} MB")
        ensemble = load_ensemble_bundle(path, device, batch_size=args.batch_size)
    frames = int(args.seconds * AUDIO.frames_per_second)
    specs = [np.random.default_rng(i).uniform(-80, 0, (AUDIO.n_mels, frames)).astype(np.float32)
             for i in range(args.clips)]
    ensemble.predict(specs[:2])  # warm-up (cuDNN autotuning, allocations)
    ensemble.clips, ensemble.seconds = 0, 0.0
    start = time.perf_counter()
    ensemble.predict(specs)
    print(f"{ensemble.n_models} models, {args.clips} clips of {args.seconds:g} s on {device} "
          f"({torch.get_num_threads()} threads): {ensemble.throughput()}; wall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
