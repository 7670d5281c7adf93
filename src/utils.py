"""Small helpers shared by the scripts: devices, seeding, atomic writes."""
import contextlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for CUDA, but torch sees no GPU")
    return device


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int):
    """DataLoader `worker_init_fn`: seed numpy/random from torch's per-worker seed.

    torch gives each worker `base_seed + worker_id`, and draws `base_seed` from the
    loader's generator each epoch, so workers differ from each other and from
    epoch to epoch, yet a run with the same `--seed` is reproducible. (The original
    reseeded from the wall clock, which is neither.)
    """
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    An interrupted write leaves no half-written file under the final name.
    Works for files and for directories (the caller creates either).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            _replace_dir(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def _replace_dir(tmp: Path, path: Path):
    old = path.with_name(f".{path.name}.old")
    if old.exists():
        _remove(old)
    os.replace(path, old)
    os.replace(tmp, path)
    _remove(old)


def _remove(p: Path):
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()


def write_csv_atomic(df, path, **kwargs):
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, **kwargs)


def write_json_atomic(obj, path):
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
