"""Training-step time of a thin CPU experiment under candidate speed settings, in one run.

    python bench/cpu_step.py                          # `small`, 1 thread (as each --jobs process has)
    python bench/cpu_step.py --threads 2 --rounds 9
    python bench/cpu_step.py --compile                # also torch.compile (slow to start on a CPU)
    python bench/cpu_step.py --default-allocator      # glibc's malloc defaults (train_folds.py changes them)

Every candidate trains the experiment's network on the same random batch (its batch size,
raw log-mel crops through the experiment's device augmentation, as `train_folds.py` runs it);
the candidates take turns, `--steps` train steps each per round, and the median over
`--rounds` rounds is printed with its ratio to the reference, plain fp32 (NCHW), measured in
the same run. bf16 rows run only where the CPU computes bf16 natively (avx512_bf16 or AMX:
`src.runtime.cpu_has_native_bf16`); elsewhere bf16 autocast is emulated and several times slower,
so `resolve_precision` keeps training in fp32 there. Like train_folds.py on a CPU, the run first lets
glibc's malloc keep freed step buffers for reuse (src/runtime.py, keep_freed_memory_for_reuse);
--default-allocator leaves glibc's defaults, to measure what that is worth (a second run: the
setting is process-wide). Run it on a quiet machine.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from src.cli import run  # noqa: E402
from src.config import AUDIO  # noqa: E402
from src.errors import BadSetting  # noqa: E402
from src.experiments import EXPERIMENTS, get_experiment  # noqa: E402
from src.train.argus_model import FreesoundModel, argus_params  # noqa: E402
from src.runtime import cpu_flags, cpu_has_native_bf16, keep_freed_memory_for_reuse  # noqa: E402

# name -> (amp, channels_last, compile); the first is the reference
CANDIDATES = {"fp32 (reference)": ("none", False, False), "channels_last": ("none", True, False),
              "bf16": ("bf16", False, False), "bf16 + channels_last": ("bf16", True, False)}


def build(experiment: dict, amp: str, channels_last: bool, compile_: bool) -> FreesoundModel:
    settings = {**experiment, "amp": amp, "channels_last": channels_last, "compile": compile_}
    torch.manual_seed(0)
    return FreesoundModel(argus_params(settings, 80, "cpu"))


def random_batch(experiment: dict) -> tuple:
    """A fixed random training batch of the experiment's size: (input, targets, noisy flags).

    Raw log-mel crops (B, n_mels, W) where the model augments on the device (augment="device"),
    else 3-channel inputs (B, 3, n_mels, W); about 3% of the 80 targets on; every clip curated.
    """
    batch_size, width = experiment["batch_size"], experiment["crop_size"]
    raw = experiment.get("augment") == "device"  # the model augments raw crops itself
    shape = (batch_size, AUDIO.n_mels, width) if raw else (batch_size, 3, AUDIO.n_mels, width)
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(shape, generator=generator),
            (torch.rand(batch_size, 80, generator=generator) < 0.03).float(),
            torch.zeros(batch_size, dtype=torch.bool))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="small", choices=sorted(EXPERIMENTS), metavar="NAME",
                        help="the experiment whose network, batch and crop size are timed (default small)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of turns (default 5; the median is shown)")
    parser.add_argument("--steps", type=int, default=10, help="train steps per candidate and round (default 10)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16 + channels_last)")
    parser.add_argument("--default-allocator", action="store_true",
                        help="keep glibc's malloc defaults instead of train_folds.py's reuse of freed buffers")
    args = parser.parse_args(argv)
    if min(args.threads, args.rounds, args.steps) < 1:
        raise BadSetting("--threads, --rounds and --steps must be at least 1")
    torch.set_num_threads(args.threads)
    reused = not args.default_allocator and keep_freed_memory_for_reuse()
    allocator = "freed buffers reused" if reused else "glibc defaults"
    experiment = get_experiment(args.experiment)
    native = cpu_has_native_bf16()
    candidates = {name: c for name, c in CANDIDATES.items() if native or c[0] != "bf16"}
    if args.compile:
        candidates["bf16 + channels_last + compile" if native else "compile"] = ("bf16" if native else "none", True, True)

    batch = random_batch(experiment)
    models, first_step = {}, {}
    for name, (amp, channels_last, compile_) in candidates.items():
        models[name] = build(experiment, amp, channels_last, compile_)
        start = time.perf_counter()
        for _ in range(3):   # warm-up (and compilation)
            models[name].train_step(batch, None)
        first_step[name] = time.perf_counter() - start
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_step(batch, None)
            times[name].append((time.perf_counter() - start) / args.steps)

    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print(f"{args.experiment}: batch {batch[0].shape[0]} x {tuple(batch[0].shape[1:])}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps; CPU flags {' '.join(flags) or 'none'}; "
          f"native bf16: {'yes' if native else 'no (bf16 rows left out)'}; malloc: {allocator}; torch {torch.__version__}")
    reference = statistics.median(times[next(iter(models))])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:34s} {median * 1000:8.1f} ms/step   {reference / median:5.2f}x the reference"
              f"   (warm-up {first_step[name]:.1f} s)")


if __name__ == "__main__":
    run(main)
