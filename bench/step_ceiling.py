"""How close a thin CPU experiment's training step runs to this core's fp32 arithmetic rate.

    python bench/step_ceiling.py                       # `small`, 1 thread (as each --jobs process has)
    python bench/step_ceiling.py --experiment demo --rounds 3

Everything runs on one thread, in one run, on a fixed random batch (bench/cpu_step.py's):
  - the training step as train_folds.py runs it on a CPU: device augmentation, forward, loss,
    backward, Adam; fp32, in the experiment's memory format;
  - the same step under torch.profiler, for the time its convolutions take inside it;
  - every convolution the network calls, alone: forward and backward at its in-network input shape
    and memory format, the input gradient only where the network needs one (with their data warmer
    in cache than inside the step). Their FLOPs come from torch.utils.flop_counter;
  - the reference: a 1024 x 1024 fp32 matrix product, the rate this core reaches on dense fp32
    arithmetic (oneDNN/MKL at their best); where the CPU has native bf16, the same product in bf16
    is shown beside it, for scale.

The convolutions' time inside the step comes from torch.profiler (their ops' own time over
--steps profiled steps; the profiler slows the many small ops around them, not these few long ones).
It prints that time, its share of the step and the convolutions' rate as a fraction of the
reference, then two bounds on the step: with the convolutions at the reference rate (and the rest
as it is), and with everything but the convolutions free. Where the convolutions run near the
reference rate, the only ways to a much faster step change the arithmetic (bf16) or do less of it
(fewer samples, a thinner network). Run it on a quiet machine.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from cpu_step import build, random_batch  # noqa: E402
from src.cli import run  # noqa: E402
from src.errors import BadSetting  # noqa: E402
from src.experiments import EXPERIMENTS, get_experiment  # noqa: E402
from src.runtime import cpu_flags, cpu_has_native_bf16, keep_freed_memory_for_reuse  # noqa: E402


def conv_calls(network: nn.Module, input: torch.Tensor) -> list:
    """Every Conv2d call of one forward pass, in order: (conv, input shape, input needs a gradient).

    A conv called twice (CBAM's shared MLP) is listed twice. The network's first conv reads the
    input batch, which needs no gradient: its backward computes the weight gradient only.
    """
    calls = []

    def record(conv, inputs, output):
        calls.append((conv, tuple(inputs[0].shape), inputs[0].requires_grad))

    hooks = [m.register_forward_hook(record) for m in network.modules() if isinstance(m, nn.Conv2d)]
    try:
        network(input)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def conv_pass(conv: nn.Conv2d, shape: tuple, needs_grad: bool, channels_last: bool):
    """A function that runs one forward and backward of `conv` on a fixed random input of `shape`."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape).contiguous(memory_format=memory_format).requires_grad_(needs_grad)
    grad = torch.randn_like(conv(x))

    def step():
        conv(x).backward(grad)
    return step


def flops_of(fn) -> int:
    """The FLOPs torch counts for one call of fn (convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def seconds_per_call(fn, calls: int, rounds: int) -> float:
    """Median over `rounds` of the mean time of `calls` calls of fn, after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def convolution_seconds(fn, calls: int) -> float:
    """Seconds per call of fn spent in convolution ops (forward and backward), by torch.profiler.

    Summed over the ops' own ("self") time, so a wrapper op and the kernel it calls are not
    counted twice; one warm-up call first.
    """
    fn()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        for _ in range(calls):
            fn()
    micros = sum(event.self_cpu_time_total for event in profiler.key_averages() if "convolution" in event.key)
    return micros / 1e6 / calls


def matmul_rate(size: int = 1024, rounds: int = 5, dtype=torch.float32) -> float:
    """FLOP/s of a size x size matrix product on the current threads (fp32: the reference rate)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2 * size ** 3 / seconds_per_call(lambda: a @ b, calls=10, rounds=rounds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="small", choices=sorted(EXPERIMENTS), metavar="NAME",
                        help="the experiment whose network, batch and crop size are timed (default small)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds; medians are shown (default 5)")
    parser.add_argument("--steps", type=int, default=10,
                        help="train steps (and calls of each conv) per round (default 10)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.steps) < 1:
        raise BadSetting("--rounds and --steps must be at least 1")
    torch.set_num_threads(1)
    keep_freed_memory_for_reuse()  # as train_folds.py on a CPU
    experiment = get_experiment(args.experiment)
    channels_last = bool(experiment["channels_last"])
    model = build(experiment, amp="none", channels_last=channels_last, compile_=False)
    batch = random_batch(experiment)

    train_step = lambda: model.train_step(batch, None)  # noqa: E731
    step = seconds_per_call(train_step, args.steps, args.rounds)
    in_step = convolution_seconds(train_step, args.steps)
    network_input = batch[0] if model.batch_augment is None else model.batch_augment(*batch)[0]
    calls = conv_calls(model.nn_module, model.prepare_input(network_input))
    passes = [conv_pass(conv, shape, grad, channels_last) for conv, shape, grad in calls]
    conv_flops = sum(flops_of(p) for p in passes)
    alone = sum(seconds_per_call(p, args.steps, args.rounds) for p in passes)
    reference = matmul_rate(rounds=args.rounds)

    rest = max(step - in_step, 0.0)
    at_reference = conv_flops / reference + rest
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx")))
    print(f"{args.experiment}: fp32, {'channels_last' if channels_last else 'NCHW'}, 1 thread, "
          f"{args.rounds} rounds x {args.steps}; CPU flags {' '.join(flags) or 'none'}; torch {torch.__version__}")
    print(f"  reference: 1024 x 1024 fp32 matrix product     {reference / 1e9:7.1f} GFLOP/s")
    if cpu_has_native_bf16():
        print(f"  (the same in bf16, coarser arithmetic:        "
              f"{matmul_rate(rounds=args.rounds, dtype=torch.bfloat16) / 1e9:7.1f} GFLOP/s)")
    print(f"  training step                                 {step * 1000:7.1f} ms")
    print(f"  its {len(calls)} conv calls ({conv_flops / 1e9:.2f} GFLOP fwd + bwd):")
    for label, seconds in (("inside the step (profiler)", in_step), ("alone", alone)):
        print(f"    {label:42s}{seconds * 1000:7.1f} ms ({seconds / step:.0%} of the step), "
              f"{conv_flops / seconds / 1e9:5.1f} GFLOP/s = {conv_flops / seconds / reference:.0%} of the reference")
    print(f"  step with the convs at the reference rate     {at_reference * 1000:7.1f} ms "
          f"({step / at_reference:.2f}x the step)")
    print(f"  step with everything but the convs free       {in_step * 1000:7.1f} ms "
          f"({step / in_step:.2f}x the step)")

if __name__ == "__main__":
    run(main)
