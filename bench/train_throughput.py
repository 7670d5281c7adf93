"""Training throughput of the full-size recipe: data pipeline vs. model step.

    python bench/train_throughput.py                             # CPU here: a few minutes on 2 cores
    python bench/train_throughput.py --device cuda --workers 8   # a GPU machine (bf16)

Settings: the `corr_noisy_007` experiment (batch 128, 128x256 crops -> 3x128x256
inputs, AuxSkipAttention base 64, 80 classes, its augmentation and mixing), on
synthetic log-mel clips of realistic lengths (1-30 s at ~64 frames/s), so no
dataset is needed. It measures, in samples/s:

  data pipeline, per-sample  the reference path: numpy pad/crop/resized crop/SpecAugment/
                             deltas and mixing (a mixed sample transforms two clips) in
                             --workers DataLoader workers
  data pipeline, batch path  workers cut raw crops; BatchAugment (resized crop, SpecAugment,
                             deltas, mixing) runs on --device for whole batches
                             (the "device augment alone" line times BatchAugment without the loader,
                             "raw-crop loader alone" the workers without BatchAugment: what is
                             left on the CPU when the device is a GPU)
  model step                 forward + backward + Adam on device-resident inputs (bf16 autocast
                             and fused Adam on CUDA), achieved TFLOP/s from a FlopCounterMode count
  end to end                 (CUDA, or --end-to-end) the batch-path loader feeding train steps;
                             epoch time for 32,768 samples, and the device's idle share: the
                             time between one step's last kernel and the next step's first
                             (CUDA events), i.e. waiting for the loader, over the whole span

and the ratio batch path / per-sample path of the data pipelines, measured in
the same run. On CPU the batch path's BatchAugment runs in the main process with
--threads (default 1: with 2 cores, the loader workers need the other one; on a
busy machine two OpenMP threads can be many times slower than one). On CPU the model step is far too slow for batch 128 (about a
minute a step on 2 cores), so it runs --model-batch-size samples (default 8 on
CPU) and reports per-sample figures. Timings on a shared machine are noisy.

--set KEY=VALUE overrides experiment settings as in train_folds.py (e.g. a tiny
network for a smoke run: --set model.base_size=4 --set crop_size=64); --json PATH
writes every figure to a JSON file (bench/gpu_check.py reads it).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from src.cli import run  # noqa: E402
from src.train.argus_model import FreesoundModel, argus_params  # noqa: E402
from src.augment.batch import create_batch_augment  # noqa: E402
from src.data.datasets import experiment_train_dataset, make_loader  # noqa: E402
from src.experiments import get_experiment  # noqa: E402
from src.overrides import apply_overrides  # noqa: E402
from src.files import write_json_atomic
from src.runtime import pick_device, seed_everything  # noqa: E402

FRAMES_PER_SECOND = 44100 / 690  # ~63.9
EPOCH = 32768
N_CLASSES = 80
# Dense bf16 tensor-core peaks (vendor figures, TFLOP/s); an 8192^3 bf16 matmul reaches ~790 on an H200.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def peak_bf16_tflops(device_name: str):
    """The nominal dense bf16 peak of a known GPU (by name), else None."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    parser.add_argument("--experiment", default="corr_noisy_007", help="experiment settings (default corr_noisy_007)")
    parser.add_argument("--iters", type=int, help="timed batches per data pipeline (default 10 on CPU, 50 on CUDA)")
    parser.add_argument("--model-iters", type=int, help="timed train steps (default 2 on CPU, 30 on CUDA)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the experiment's, 128)")
    parser.add_argument("--model-batch-size", type=int, help="model-step batch (default: --batch-size on CUDA, 8 on CPU)")
    parser.add_argument("--clips", type=int, default=400, help="synthetic clips (default 400)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for the batch-path augmentation (default: "
                        "1 on CPU, where the loader workers need the other cores; torch's default on CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last network and inputs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (model step, end to end)")
    parser.add_argument("--end-to-end", action="store_true", help="also time loader + train step on CPU")
    parser.add_argument("--skip-model", action="store_true", help="data pipelines only")
    parser.add_argument("--skip-data", action="store_true", help="model step and end to end only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an experiment setting (as train_folds.py), e.g. --set model.base_size=4")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def synthetic_sources(n_clips, seed=0):
    """Log-mel-like clips of 1-30 s (uniform length) with 1-2 labels; the same pool serves as the
    curated, noisy and corrected-noisy sources (only their flags and probabilities differ)."""
    rng = np.random.default_rng(seed)
    specs, targets = [], np.zeros((n_clips, N_CLASSES), np.float32)
    for i in range(n_clips):
        frames = int(rng.uniform(1.0, 30.0) * FRAMES_PER_SECOND)
        level = rng.uniform(-80.0, -20.0, size=(128, 1)).astype(np.float32)  # per-band loudness
        specs.append(np.minimum(level + 10.0 * rng.standard_normal((128, frames), dtype=np.float32), 0.0))
        targets[i, rng.choice(N_CLASSES, size=rng.integers(1, 3), replace=False)] = 1.0
    return (specs, targets)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(batches, iters, step, device, warm_up=1):
    """samples/s of `step(batch)` over `iters` batches, after `warm_up` untimed batches (worker start-up,
    first-call allocations; one per loader worker, so no batch finished during start-up is timed)."""
    iterator = iter(batches)
    for _ in range(warm_up):
        step(next(iterator))
    sync(device)
    start, samples = time.perf_counter(), 0
    for _ in range(iters):
        batch = next(iterator)
        step(batch)
        samples += len(batch[0])
    sync(device)
    return samples / (time.perf_counter() - start)


def train_dataset(experiment, pool, epoch_size, raw):
    """The experiment's training stream (as train_folds.py builds it), raw crops or per-sample augmented."""
    experiment = dict(experiment, augment="device" if raw else "sample")
    return experiment_train_dataset(experiment, pool, pool, pool, epoch_size=epoch_size)


def bench_data(experiment, pool, args, device, batch_size):
    warm_up = max(1, args.workers)
    epoch_size = batch_size * (args.iters + warm_up)
    per_sample = make_loader(train_dataset(experiment, pool, epoch_size, raw=False), batch_size, shuffle=True,
                             workers=args.workers, seed=args.seed, drop_last=True)
    sample_rate = time_batches(per_sample, args.iters, lambda batch: None, device, warm_up)
    del per_sample  # stop its workers before the next measurement

    augment = create_batch_augment(experiment)
    model_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or (model_threads if device.type == "cuda" else 1))

    def augment_on_device(batch):
        images, targets, noisy = (t.to(device, non_blocking=True) for t in batch)
        augment(images, targets, noisy)

    raw = make_loader(train_dataset(experiment, pool, epoch_size, raw=True), batch_size, shuffle=True,
                      workers=args.workers, seed=args.seed, drop_last=True)
    batch_rate = time_batches(raw, args.iters, augment_on_device, device, warm_up)
    del raw

    # The workers' part alone (raw crops): all the CPU does per sample when the device is a GPU.
    raw = make_loader(train_dataset(experiment, pool, epoch_size, raw=True), batch_size, shuffle=True,
                      workers=args.workers, seed=args.seed, drop_last=True)
    crop_rate = time_batches(raw, args.iters, lambda batch: None, device, warm_up)
    del raw

    # The device part alone: one batch of raw crops resident on the device, augmented repeatedly.
    fixed = next(iter(make_loader(train_dataset(experiment, pool, batch_size, raw=True), batch_size)))
    fixed = [t.to(device) for t in fixed]
    augment_rate = time_batches([fixed] * (args.iters + 1), args.iters, lambda batch: augment(*batch), device)
    torch.set_num_threads(model_threads)  # the model step uses every core
    return sample_rate, batch_rate, augment_rate, crop_rate


def count_flops(model, inputs, targets, noisy):
    """FLOPs of one forward + backward (convolutions, matmuls) as counted by torch."""
    counter = FlopCounterMode(display=False)
    with counter:
        with model.autocast():
            loss = model.loss(model.nn_module(model.prepare_input(inputs)), targets, noisy)
        loss.backward()
    model.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_model(experiment, args, device, batch_size):
    experiment = dict(experiment, channels_last=args.channels_last, compile=args.compile, augment="sample")
    model = FreesoundModel(argus_params(experiment, N_CLASSES, device))
    inputs = torch.randn(batch_size, 3, 128, experiment["crop_size"], device=device) * 0.3
    targets = (torch.rand(batch_size, N_CLASSES, device=device) < 0.02).float()
    noisy = (torch.rand(batch_size, device=device) < experiment["noisy_prob"]).float()
    flops = count_flops(model, inputs, targets, noisy)
    batch = (inputs, targets, noisy)
    warm_up = 3 if args.compile else 1  # compiling takes the first steps
    rate = time_batches([batch] * (args.model_iters + warm_up), args.model_iters,
                        lambda b: model.train_step(b, None), device, warm_up)
    return rate, flops / batch_size


def mark(device):
    """A point on the device's timeline: a recorded CUDA event, or the host clock (CPU work is synchronous)."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


def seconds_between(a, b) -> float:
    return a.elapsed_time(b) / 1000.0 if isinstance(a, torch.cuda.Event) else b - a


def time_steps_with_gaps(batches, iters, step, device, warm_up=1):
    """(samples/s, device idle share, host loader-wait share) of `step(batch)` over `iters` loader batches.

    Idle share: the gaps between one step's end and the next step's start on the device timeline, over
    the span from the first start to the last end. On CUDA the host queues work ahead, so a step's start
    event completes right after the previous step's end unless the host was still waiting for the batch:
    the gaps are the time the GPU sat waiting for the loader.
    """
    iterator = iter(batches)
    for _ in range(warm_up):
        step(next(iterator))
    sync(device)
    starts, ends, waiting, samples = [], [], 0.0, 0
    start = time.perf_counter()
    for _ in range(iters):
        before = time.perf_counter()
        batch = next(iterator)
        waiting += time.perf_counter() - before
        starts.append(mark(device))
        step(batch)
        ends.append(mark(device))
        samples += len(batch[0])
    sync(device)
    total = time.perf_counter() - start
    span = seconds_between(starts[0], ends[-1])
    idle = sum(seconds_between(end, next_start) for end, next_start in zip(ends[:-1], starts[1:]))
    return samples / total, idle / span, waiting / total


def bench_end_to_end(experiment, pool, args, device, batch_size):
    experiment = dict(experiment, channels_last=args.channels_last, compile=args.compile, augment="device")
    model = FreesoundModel(argus_params(experiment, N_CLASSES, device))
    iters = args.model_iters
    warm_up = max(3 if args.compile else 1, args.workers)
    loader = make_loader(train_dataset(experiment, pool, batch_size * (iters + warm_up), raw=True), batch_size,
                         shuffle=True, workers=args.workers, seed=args.seed, drop_last=True)
    return time_steps_with_gaps(loader, iters, lambda b: model.train_step(b, None), device, warm_up)


def main(argv=None) -> dict:
    """Run the benchmark, print the figures and return them (also written to --json)."""
    args = parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    args.iters = args.iters or (50 if cuda else 10)
    args.model_iters = args.model_iters or (30 if cuda else 2)
    experiment = apply_overrides(get_experiment(args.experiment), args.set)
    batch_size = args.batch_size or experiment["batch_size"]
    model_batch = args.model_batch_size or (batch_size if cuda else 8)
    seed_everything(args.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True

    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} torch threads for the model"
    model_name, model_kwargs = experiment["model"]
    crop = experiment["crop_size"]
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(f"experiment {args.experiment}: {model_name} base {model_kwargs['base_size']}, {N_CLASSES} classes, "
          f"batch {batch_size}, input 3x128x{crop}, amp {experiment['amp'] if cuda else 'none (fp32)'}"
          f", channels_last {args.channels_last}, compile {args.compile}; workers {args.workers}")
    figures = {"device": str(device), "device_name": name, "torch": torch.__version__, "experiment": args.experiment,
               "overrides": args.set, "model": model_name, "base_size": model_kwargs["base_size"],
               "batch_size": batch_size, "model_batch_size": model_batch, "crop_size": crop,
               "amp": experiment["amp"] if cuda else "none", "channels_last": args.channels_last,
               "compile": args.compile, "workers": args.workers}
    pool = synthetic_sources(args.clips, args.seed)
    seconds = sum(s.shape[1] for s in pool[0]) / FRAMES_PER_SECOND
    print(f"synthetic data: {args.clips} clips, {seconds / args.clips:.1f} s mean length")

    if not args.skip_data:
        sample_rate, batch_rate, augment_rate, crop_rate = bench_data(experiment, pool, args, device, batch_size)
        figures.update(per_sample_samples_per_s=sample_rate, batch_path_samples_per_s=batch_rate,
                       device_augment_samples_per_s=augment_rate, raw_crop_loader_samples_per_s=crop_rate)
        print(f"data pipeline, per-sample (numpy, {args.workers} workers): {sample_rate:9.1f} samples/s")
        print(f"data pipeline, batch path (raw crops + BatchAugment on {device.type}): {batch_rate:9.1f} samples/s")
        print(f"  device augment alone (batch resident on {device.type}): {augment_rate:9.1f} samples/s")
        print(f"  raw-crop loader alone ({args.workers} workers): {crop_rate:9.1f} samples/s")
        print(f"ratio batch path / per-sample path: {batch_rate / sample_rate:.1f}x")
        print(f"ratio raw-crop loader / per-sample path (the CPU's share when BatchAugment runs on a GPU): "
              f"{crop_rate / sample_rate:.1f}x")

    if not args.skip_model:
        model_rate, flops_per_sample = bench_model(experiment, args, device, model_batch)
        tflops = model_rate * flops_per_sample / 1e12
        peak = peak_bf16_tflops(name) if cuda and experiment["amp"] == "bf16" else None
        figures.update(model_step_samples_per_s=model_rate, gflop_per_sample=flops_per_sample / 1e9,
                       model_step_tflops=tflops, peak_bf16_tflops=peak,
                       model_step_share_of_peak=tflops / peak if peak else None)
        print(f"model step (forward + backward + Adam, batch {model_batch}): {model_rate:9.1f} samples/s, "
              f"{flops_per_sample / 1e9:.1f} GFLOP/sample, {tflops:.2f} TFLOP/s achieved"
              + (f" ({100 * tflops / peak:.1f}% of the {peak:.0f} TFLOP/s dense bf16 peak)" if peak else ""))
        print(f"  epoch of {EPOCH} samples, model step only: {EPOCH / model_rate:.0f} s")
        if cuda or args.end_to_end:
            e2e, idle, waiting = bench_end_to_end(experiment, pool, args, device, batch_size)
            figures.update(end_to_end_samples_per_s=e2e, end_to_end_epoch_s=EPOCH / e2e, device_idle_share=idle,
                           loader_wait_share=waiting)
            print(f"end to end (batch-path loader + BatchAugment + train step, batch {batch_size}): {e2e:9.1f} "
                  f"samples/s; epoch of {EPOCH} samples: {EPOCH / e2e:.0f} s")
            print(f"  device idle between steps (waiting for batches): {100 * idle:.1f}% of the span; "
                  f"host waiting on the loader: {100 * waiting:.1f}% of the time")
        elif not args.skip_data:
            # On CPU the pipeline and the network share the cores, so the costs add up.
            serial = 1.0 / (1.0 / batch_rate + 1.0 / model_rate)
            figures.update(end_to_end_estimate_samples_per_s=serial)
            print(f"end to end estimate (batch path + model step, sharing the CPU): {serial:9.1f} samples/s; "
                  f"epoch of {EPOCH} samples: {EPOCH / serial:.0f} s "
                  f"(per-sample path: {EPOCH / (1.0 / (1.0 / sample_rate + 1.0 / model_rate)):.0f} s)")
    if args.json:
        write_json_atomic(figures, args.json)
    return figures


if __name__ == "__main__":
    run(main)
