"""Where and how a run computes: the device, the CPU's bf16 support, torch threads, seeds, glibc's malloc."""
import os
import random
from pathlib import Path

import numpy as np
import torch

from src.errors import BadSetting


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:  # torch: "Expected one of cpu, cuda, ... device type at start of device string"
        raise BadSetting(f"--device {name!r}: not a device torch knows ({str(exc).splitlines()[0]})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadSetting(f"--device {name} asked for CUDA, but torch sees no GPU")
    return device


# x86 CPU flags whose presence means oneDNN runs bf16 convolutions natively (AVX512-BF16 dot products,
# AMX tiles, or AVX-NE-CONVERT on AVX2 cores). Without them, CPU bf16 autocast is emulated and can be
# far slower than fp32 (~190x on an AVX2-only EPYC, README "Speed"). torch's capability string
# ("AVX512") and oneDNN's bf16 check (true on any AVX512 core) do not tell the two apart.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert")


def cpu_flags(cpuinfo="/proc/cpuinfo") -> set:
    """The CPU feature flags of /proc/cpuinfo (Linux); an empty set where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_native_bf16(flags=None) -> bool:
    """True when this CPU computes bf16 convolutions in hardware (see NATIVE_BF16_FLAGS) and torch has oneDNN."""
    flags = cpu_flags() if flags is None else set(flags)
    return torch.backends.mkldnn.is_available() and any(flag in flags for flag in NATIVE_BF16_FLAGS)


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


def set_cpu_threads(device, workers: int, requested=None, light_workers=False) -> int:
    """On CPU, give torch the cores the loader workers leave free; returns the thread count.

    Oversubscribing (torch's default thread count plus busy workers) makes OpenMP
    threads spin against each other; on 2 cores that costs several times the speed.
    light_workers: the workers only cut raw crops (augment="device"), a small share of
    a core each, so torch gets every core (the demo trains ~1.8x faster on 2 cores).
    """
    if requested is not None:
        torch.set_num_threads(requested)
    elif device.type == "cpu":
        # Under torchrun, the processes on this machine share its cores.
        cores = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        torch.set_num_threads(max(1, cores - (0 if light_workers else workers)))
    return torch.get_num_threads()


M_TRIM_THRESHOLD = -1         # glibc mallopt parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 17  # glibc's default start value, 128 KiB


def _mallopt(param: int, value: int) -> bool:
    """glibc's mallopt(param, value); False where the C library is not glibc (or refuses the value)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(param, int(value)))
    except (OSError, AttributeError):
        return False


def fix_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Keep glibc's malloc from holding on to the memory of freed large buffers (True if set).

    glibc serves allocations above a threshold with mmap and returns them to the system when freed, but
    raises that threshold (up to 32 MB) every time such a buffer is freed; from then on, buffers of a few
    MB (tile batches, deltas, activations) come from the heap, whose free space fragments and stays
    resident. Prediction over thousands of clips then grew by ~0.3 GB per 450 test clips x 5 models, in
    proportion to the work done (bench/scale.py; ~7.5 GB projected for the 2019 set): with the threshold
    fixed it stayed flat. Numbers computed are unchanged. A no-op (False) where the C library is not glibc.
    """
    return _mallopt(M_MMAP_THRESHOLD, threshold)


TRAINING_MMAP_THRESHOLD = 32 << 20    # glibc's ceiling for the dynamic threshold
TRAINING_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory_for_reuse(mmap_threshold: int = TRAINING_MMAP_THRESHOLD,
                                trim_threshold: int = TRAINING_TRIM_THRESHOLD) -> bool:
    """Training on a CPU: let each step reuse the memory the last one freed (True if set).

    A training step allocates and frees the same few-MB activation and gradient buffers every time.
    With glibc's defaults, free space at the top of the heap is handed back to the system (trimmed)
    and faulted in again, zero-filled, by the next step. `small` on the realdev set (5 fold processes
    on 2 cores) took 47 million page faults and 112 s of kernel time that way; keeping buffers up to
    `mmap_threshold` in the heap, and up to `trim_threshold` of free heap, cut them to 1.6 million and
    7 s, and the user time by ~15% (bench/realdev/README.md, fourth round). The shapes repeat from step
    to step, so the heap does not grow with the epochs (prediction over clips of every length does: it
    keeps `fix_malloc_mmap_threshold`). Numbers computed are unchanged. An environment that sets
    MALLOC_TRIM_THRESHOLD_ or MALLOC_MMAP_THRESHOLD_ is left as it is (False); a no-op (False) where
    the C library is not glibc.
    """
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    return _mallopt(M_MMAP_THRESHOLD, mmap_threshold) and _mallopt(M_TRIM_THRESHOLD, trim_threshold)
