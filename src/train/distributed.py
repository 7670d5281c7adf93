"""Data-parallel training of one fold over several GPUs (torchrun + DistributedDataParallel).

    torchrun --standalone --nproc_per_node 4 train_folds.py --experiment corr_noisy_007 --folds 0

Without torchrun (no WORLD_SIZE > 1 in the environment) nothing here does
anything: `init_distributed` returns a one-process `DistInfo` and every helper
is a no-op, so train_folds.py runs exactly as before.

The recipe is kept, not scaled:
- the global batch stays `batch_size` (128): each of the N ranks trains on
  `batch_size / N` samples a step and DDP averages the gradients, which equals
  the gradient of the full batch (the losses are batch means);
- the epoch stays `epoch_size` samples: each rank draws `epoch_size / N` of them
  from the same random-source stream (same source probabilities) with its own
  seed (`rank_seed`), so the ranks draw different samples;
- BatchNorm statistics are computed per rank over `batch_size / N` samples
  (plain DDP; DDP copies rank 0's running statistics to the others every step).

Validation: every rank validates the full (small) validation fold, so every
rank has the metrics its EarlyStopping and ReduceLROnPlateau need. DDP copies
rank 0's BatchNorm buffers at the first validation forward, so all ranks score
the same weights; `SyncMetrics` then hands rank 0's validation numbers to every
rank anyway (GPU kernels need not be bitwise deterministic), so all ranks change
the learning rate and stop at the same epoch, and averages the training loss
over ranks. Only rank 0 writes files (checkpoint, logs, curves, config.json,
done.json); see `src.train.fit.fit_fold(is_main=...)`.
"""
import gc
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
# Imported before any process group exists, on purpose: torch._dynamo, when first imported while a group
# is initialised (the first optimizer imports it lazily), keeps a C++ reference to that group, so
# destroy_process_group() then leaves its gloo threads (gloo_tcp_loop, 2 x pt_gloo_runloop) running until
# interpreter exit, where they are torn down during finalisation, possibly after the peer process has
# gone: the SIGABRT "terminate called without an active exception" seen once at the end of
# tests/test_distributed.py (issue 24). Imported first, it holds nothing, and destroy ends the threads.
import torch._dynamo  # noqa: F401
import torch.distributed as dist
from argus.callbacks import Callback
from torch.nn.parallel import DistributedDataParallel

from src.errors import UserError
from src.runtime import pick_device

# Rank r trains with seed + RANK_SEED_STRIDE * r (fold K already adds K to the seed),
# so no two (fold, rank) pairs share a seed and rank 0 draws what a one-process run draws.
RANK_SEED_STRIDE = 1000
# Collectives wait this long. Generous because the other ranks wait at a barrier while
# rank 0 computes the feature cache, which takes a while on the full data set.
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name, default):
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device="auto") -> DistInfo:
    """Join the torchrun process group (if launched by torchrun with WORLD_SIZE > 1).

    `device` is train_folds.py's --device: its type decides the backend (nccl on
    CUDA, gloo on CPU); under torchrun a CUDA rank always uses GPU LOCAL_RANK.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(device=pick_device(device))
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = pick_device(device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but torch sees {torch.cuda.device_count()} GPU(s): "
                               f"use --nproc_per_node <= the number of GPUs (CUDA_VISIBLE_DEVICES)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # nccl collectives and `cuda` tensors default to this GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0 and in a one-process run: the process that writes files."""
    return get_rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def cleanup():
    """Leave the process group (at the end of train_folds.main) and end its gloo threads now, not at exit.

    The group is freed when its last reference goes; one that sits in a reference cycle (an exception's
    traceback, say) would otherwise live on, threads and all, until the collector or interpreter exit.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def broadcast_object(obj, src=0):
    """`obj` from rank `src` on every rank (any picklable object)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class RankZeroFailed(UserError):
    """What the other ranks raise when rank 0's work failed: its message in one line (rank 0 reports the
    error itself, with the traceback when it is a bug), instead of a wait at a barrier until the timeout."""


class _Failed:
    """What rank 0 broadcasts instead of a result when its work raised."""

    def __init__(self, message):
        self.message = message


def run_on_main(fn, share_result=True):
    """Run `fn()` on rank 0 while the other ranks wait; every rank returns rank 0's result.

    If `fn` raises on rank 0, the others exit with its message instead of waiting at
    a barrier until the timeout. `share_result=False` only synchronises (the other
    ranks get None), for results that are large or not picklable.
    """
    if not is_distributed():
        return fn()
    result = None
    if is_main():
        try:
            result = fn()
        except BaseException as error:
            broadcast_object(_Failed(f"{type(error).__name__}: {error}"))
            raise
    shared = broadcast_object(result if share_result else None)
    if isinstance(shared, _Failed):
        raise RankZeroFailed(f"rank {get_rank()}: stopping because rank 0 failed: {shared.message}")
    return result if is_main() else shared


def main_first(fn):
    """Run `fn()` on rank 0 first, then on the other ranks; each rank returns its own result.

    For work that fills a cache on disk: rank 0 computes it, the others then read it.
    """
    result = run_on_main(fn, share_result=False)
    return result if is_main() else fn()


def split_per_rank(total: int, world_size: int, name: str) -> int:
    """`total / world_size`, refusing totals that do not split evenly (the recipe would change)."""
    if total % world_size:
        nearest = max(total // world_size, 1) * world_size
        raise ValueError(f"{name}={total} does not split evenly over {world_size} processes; "
                         f"use a multiple of {world_size} (e.g. --set {name}={nearest})")
    return total // world_size


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`: different streams per rank, rank 0 = the one-process seed."""
    return seed + RANK_SEED_STRIDE * rank


def wrap_ddp(model, info: DistInfo):
    """Wrap `model.nn_module` (an argus model) in DistributedDataParallel, in place.

    The optimizer already holds the module's parameters, which DDP shares, and
    DDP copies rank 0's initial weights to every rank. argus's `get_nn_module()`
    unwraps DDP, so `model.save` writes plain checkpoints that `argus.load_model`
    reads without DDP or "module." prefixes.
    """
    if info.distributed:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        model.nn_module = DistributedDataParallel(model.nn_module, device_ids=device_ids)
    return model


class SyncMetrics(Callback):
    """Give every rank the same epoch metrics, so plateau/early-stopping decisions agree.

    Validation metrics (`val_*`) are rank 0's (every rank validated the full fold);
    training metrics (`train_*`) are averaged over the ranks, i.e. over the global batch.
    Attach it after `MetricsToFloat` and before the callbacks that read the metrics.
    """

    def epoch_complete(self, state):
        if not is_distributed():
            return
        metrics = {key: float(value) for key, value in state.metrics.items()}
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, metrics)
        for key in metrics:
            if key.startswith("train_"):
                state.metrics[key] = sum(m[key] for m in gathered) / len(gathered)
            else:
                state.metrics[key] = gathered[0][key]
