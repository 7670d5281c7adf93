"""What several test modules share: generated signals, tiny demo datasets and runs, fake trained
experiments, and a guard for torch's global thread count. (Fixtures live in tests/conftest.py.)"""
import contextlib
import hashlib
import json
from pathlib import Path

import librosa
import numpy as np
import scipy.signal
import torch

from src.config import AUDIO

ROOT = Path(__file__).resolve().parents[1]

# The 2019 members (src/stacking/experiments.py FIRST_LEVEL lists the same seven).
FULL_SIZE = ["auxiliary_016", "auxiliary_019", "corr_noisy_003", "corr_noisy_004", "corr_noisy_007",
             "corrections_002", "corrections_003"]


# ----------------------------------------------------------------------------- torch's global state

@contextlib.contextmanager
def torch_threads(n: int):
    """torch.set_num_threads(n) for the block, the previous count restored after it (also on errors)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- signals

def tone(seconds, freq=440.0, sr=44100, amp=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def sound(seconds, sr=AUDIO.sampling_rate, seed=0, channels=1):
    """Tone + chirp + noise: something with energy everywhere, float32 (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    mono = 0.2 * np.sin(2 * np.pi * (300 + 200 * seed) * t) + 0.1 * scipy.signal.chirp(t, 500, t[-1], 8000) \
        + rng.normal(0, 0.02, len(t))
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1).astype(np.float32)


def reference_trim_bounds(y, pad_mode="reflect", top_db=60):
    """librosa 0.6.3's trim, written out: mse = rms ** 2 of centred 2048-sample frames every 512
    (padded by `pad_mode`), non-silent where power_to_db(mse, ref=max) > -top_db."""
    mse = librosa.feature.rms(y=y, frame_length=2048, hop_length=512, center=True, pad_mode=pad_mode)[0] ** 2
    nonzero = np.flatnonzero(librosa.power_to_db(mse, ref=np.max, top_db=None) > -top_db)
    return int(nonzero[0]) * 512, min(len(y), (int(nonzero[-1]) + 1) * 512)


# ----------------------------------------------------------------------------- files and folders

def tree_bytes(folder) -> dict:
    """{relative path: sha256} of every file under `folder`: equal trees have equal dicts."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- tiny demo runs

def demo_dataset(root, seed, n_curated, n_noisy, n_test):
    """A generated demo dataset with its train_folds.csv (what `make demo` starts from, smaller)."""
    import make_folds
    from src.data.demo_data import generate_demo_dataset

    generate_demo_dataset(root, seed=seed, n_curated=n_curated, n_noisy=n_noisy, n_test=n_test, progress=False)
    make_folds.main(["--data-dir", str(root)])
    return Path(root)


def demo_fold0_args(data_dir, *extra, epochs, epoch_size, workers=0):
    """train_folds.py arguments for fold 0 of the demo experiment: CPU (bitwise repeatable), one thread,
    `epochs` epochs of `epoch_size` clips in batches of 16."""
    return ["--experiment", "demo", "--data-dir", str(data_dir), "--folds", "0", "--epochs", str(epochs),
            "--device", "cpu", "--workers", str(workers), "--threads", "1", "--no-progress",
            "--set", f"epoch_size={epoch_size}", "--set", "batch_size=16", *extra]


# ----------------------------------------------------------------------------- fake trained experiments

CLASSES = ["Bark", "Chime", "Hum", "Rain", "Siren"]
SR = AUDIO.sampling_rate
TINY_NET = ("SkipAttention", {"base_size": 4, "dropout": 0.2, "ratio": 2, "kernel_size": 3})


def tiny_model(num_classes=5, model="SkipAttention"):
    """An untrained argus model of a thin network (seeded: the same weights every call)."""
    from src.train.argus_model import FreesoundModel

    torch.manual_seed(0)
    return FreesoundModel({"nn_module": (model, {"num_classes": num_classes, "base_size": 4, "ratio": 2}),
                           "loss": ("bce", {}), "optimizer": ("Adam", {"lr": 1e-3}), "device": "cpu"})


def make_experiment(data_dir, name, model=TINY_NET, classes=CLASSES, folds=2, crop_size=64, tile_step=32,
                    test_tile_step=None, seed=0):
    """A fake trained experiment: config.json like train_folds.py's and one argus checkpoint per fold
    (untrained tiny networks with non-trivial BatchNorm statistics, different per fold)."""
    from torch import nn

    from src.experiments import get_experiment
    from src.train.argus_model import FreesoundModel, argus_params

    experiment = get_experiment("demo")
    experiment.update(model=model, crop_size=crop_size, tile_step=tile_step,
                      test_tile_step=test_tile_step or tile_step, amp="none")
    experiment = json.loads(json.dumps(experiment))  # as read back from config.json (tuples -> lists)
    exp_dir = Path(data_dir) / "experiments" / name
    for fold in range(folds):
        torch.manual_seed(seed + fold)
        model_ = FreesoundModel(argus_params(experiment, len(classes), "cpu"))
        with torch.no_grad():
            for module in model_.nn_module.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
        (exp_dir / f"fold_{fold}").mkdir(parents=True)
        model_.save(exp_dir / f"fold_{fold}" / "model-001-0.500000.pth")
    record = {"name": name, "experiment": experiment, "classes": list(classes), "audio_config": AUDIO.to_dict(),
              "seed": seed, "overrides": [], "started": "2019-06-10 00:00:00"}
    (exp_dir / "config.json").write_text(json.dumps(record, indent=2))
    return exp_dir
