"""The CUDA path: mixed-precision steps, channels-last, torch.compile, device augmentation, prediction, NCCL.

Every test here needs a CUDA GPU and is skipped without one (marker `cuda`). A GPU machine runs
them with `pytest -m cuda tests/` or as a stage of bench/gpu_check.sh, together with the
distribution tests of tests/test_batch_augment.py, which also draw on CUDA there.

The networks are the full-size ones of the seven 2019 experiments (base 64, 3 x 128 x 256 inputs,
80 classes), on small batches of random log-mel crops.
"""
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import FULL_SIZE

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES, H, W = 80, 128, 256

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matmuls without TF32, so two code paths can be compared tightly."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def raw_batch(n, seed=0, device="cuda"):
    """Raw log-mel crops (dB in [-100, 0]), 1-2 labels each, a quarter flagged noisy."""
    generator = torch.Generator().manual_seed(seed)
    images = -100.0 * torch.rand(n, H, W, generator=generator)
    targets = torch.zeros(n, N_CLASSES)
    targets[torch.arange(n), torch.randint(N_CLASSES, (n,), generator=generator)] = 1.0
    targets[torch.arange(0, n, 3), torch.randint(N_CLASSES, (len(range(0, n, 3)),), generator=generator)] = 1.0
    noisy = (torch.arange(n) % 4 == 0).float()
    return images.to(device), targets.to(device), noisy.to(device)


def make_model(name, device="cuda", **changes):
    from src.train.argus_model import FreesoundModel, argus_params
    from src.experiments import get_experiment

    experiment = get_experiment(name)
    experiment.update(changes)
    return FreesoundModel(argus_params(experiment, N_CLASSES, device))


def weights(model):
    return [p.detach().clone() for p in model.nn_module.parameters()]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_training_steps_are_finite_and_learn(name, amp):
    torch.manual_seed(0)
    model = make_model(name, amp=amp, augment="device")
    assert model.precision == amp  # H100/H200: compute capability 9.0 has native bf16
    assert model.scaler.is_enabled() == (amp == "fp16")
    assert model.optimizer.defaults.get("fused") is True
    before = weights(model)
    losses = []
    for step in range(4):  # fp16: the scaler may skip a first step whose scaled gradients overflow
        output = model.train_step(raw_batch(32, seed=step), None)
        losses.append(float(output["loss"]))
        assert output["prediction"].shape == (32, N_CLASSES) and output["prediction"].dtype == torch.float32
    assert all(np.isfinite(losses)), losses
    changed = [not torch.equal(a, b) for a, b in zip(before, model.nn_module.parameters())]
    assert sum(changed) > 0.9 * len(changed), f"{sum(changed)} of {len(changed)} parameter tensors changed"
    assert all(torch.isfinite(p).all() for p in model.nn_module.parameters())
    if amp == "fp16":
        assert 0 < model.scaler.get_scale() < float("inf")


def step_results(model, batch):
    """Loss and flattened gradients of one training step (argus leaves the gradients in .grad)."""
    output = model.train_step(batch, None)
    grads = torch.cat([p.grad.flatten() for p in model.nn_module.parameters() if p.grad is not None])
    return float(output["loss"]), grads


@pytest.mark.parametrize("variant", ["channels_last", "compile"])
def test_channels_last_and_compiled_steps_equal_the_plain_step(variant, exact_fp32):
    # fp32 without TF32 and no dropout, so the only differences are kernel choices and fusion.
    torch.manual_seed(0)
    settings = dict(amp="none", augment="sample", model=("AuxSkipAttention", {
        "base_size": 64, "dropout": 0.0, "ratio": 16, "kernel_size": 7}))
    plain = make_model("corr_noisy_007", **settings)
    other = make_model("corr_noisy_007", **settings, **{variant: True})
    other.nn_module.load_state_dict(plain.nn_module.state_dict())
    from src.audio.deltas import deltas

    images, targets, noisy = raw_batch(16, seed=3)
    batch = (deltas(images), targets, noisy)  # the 3-channel input of the per-sample path
    if variant == "compile":
        step_results(other, batch)  # compiles; the weights move, so reload them
        other.nn_module.load_state_dict(plain.nn_module.state_dict())
    plain_loss, plain_grads = step_results(plain, batch)
    other_loss, other_grads = step_results(other, batch)
    assert other_loss == pytest.approx(plain_loss, rel=1e-4)
    # Gradients: the same plain step in fp32 and fp64 already differ by ~3e-3 (relative L2, on CPU): the
    # BatchNorm weight gradients are ill-conditioned. A wrong layout or a broken fusion gives O(1).
    relative = float((other_grads - plain_grads).norm() / plain_grads.norm())
    assert relative < 2e-2, relative
    if variant == "channels_last":
        conv = next(m for m in other.nn_module.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert other._compiled is not None and other._compiled[0] is other.nn_module


def test_batch_augment_on_cuda_equals_cpu_for_the_same_draws():
    # The accelerator code path (whole-batch ops) on CUDA against the CPU path, same parameters.
    from src.augment.batch import BatchAugment

    images, targets, noisy = raw_batch(48, seed=1, device="cpu")
    augment = BatchAugment(mixer_prob=0.9)
    params = augment.sample(noisy, H, W)
    assert 0 < int(params["resize"].sum()) < 48 and int(params["mixed"].sum()) > 20
    host = augment.apply(images, targets, params)
    cuda = augment.apply(images.cuda(), targets.cuda(), {k: v.cuda() for k, v in params.items()})
    torch.testing.assert_close(cuda[0].cpu(), host[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(cuda[1].cpu(), host[1], rtol=0, atol=1e-6)


def test_prediction_on_cuda_equals_cpu_for_one_checkpoint(tmp_path, exact_fp32):
    from src.train.checkpoints import load_checkpoint
    from src.predict.predictor import Predictor

    torch.manual_seed(0)
    model = make_model("corr_noisy_007", augment="device")
    for step in range(3):  # trained a little, so the outputs differ between clips
        model.train_step(raw_batch(32, seed=10 + step), None)
    path = tmp_path / "model.pth"
    model.save(path)
    rng = np.random.default_rng(0)
    specs = [rng.uniform(-80, 0, (H, frames)).astype(np.float32) for frames in (40, 256, 300, 700)]
    on_cpu = load_checkpoint(path, device="cpu")
    on_cuda = load_checkpoint(path, device="cuda")
    assert on_cuda.precision == "bf16" and on_cpu.precision == "fp32"
    cpu_clips = Predictor(on_cpu, 256, 64).predict(specs)[2][0]
    bf16_clips = Predictor(on_cuda, 256, 64).predict(specs)[2][0]
    fp32_clips = Predictor(on_cuda, 256, 64, amp="none").predict(specs)[2][0]
    assert cpu_clips.std(axis=0).max() > 1e-4  # the clips' outputs really differ
    np.testing.assert_allclose(fp32_clips, cpu_clips, rtol=0, atol=1e-3)
    np.testing.assert_allclose(bf16_clips, cpu_clips, rtol=0, atol=2e-2)  # bf16 autocast: ~3 significant digits


def test_nccl_process_group_runs_a_ddp_training_step(tmp_path):
    # One GPU allows a one-rank NCCL group: DDP's gradient all-reduce and the collectives still run.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("nccl", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1,
                            timeout=timedelta(seconds=120))
    try:
        torch.manual_seed(0)
        model = make_model("corr_noisy_007", augment="device")
        plain = model.nn_module
        model.nn_module = DistributedDataParallel(plain, device_ids=[0])
        before = weights(model)
        loss = float(model.train_step(raw_batch(16), None)["loss"])
        assert np.isfinite(loss)
        assert any(not torch.equal(a, b) for a, b in zip(before, plain.parameters()))
        assert model.get_nn_module() is plain  # checkpoints are saved without the wrapper
        total = torch.ones(1, device="cuda")
        dist.all_reduce(total)
        gathered = [None]
        dist.all_gather_object(gathered, {"val_lwlrap": 0.5})
        assert float(total) == 1.0 and gathered == [{"val_lwlrap": 0.5}]
    finally:
        dist.destroy_process_group()


def test_torchrun_launch_trains_a_fold_on_cuda(tmp_path):
    import make_folds
    from src.data.demo_data import generate_demo_dataset

    data = tmp_path / "demo"
    generate_demo_dataset(data, n_curated=40, n_noisy=20, n_test=5, progress=False)
    make_folds.main(["--data-dir", str(data)])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               "train_folds.py", "--experiment", "demo", "--data-dir", str(data), "--folds", "0",
               "--device", "cuda", "--epochs", "2", "--workers", "2", "--no-progress",
               "--set", "epoch_size=128", "--set", "batch_size=32"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "experiment demo on cuda" in done.stdout
    fold_dir = data / "experiments" / "demo" / "fold_0"
    assert (fold_dir / "done.json").is_file() and len(list(fold_dir.glob("model-*.pth"))) == 1
