"""src/audio/deltas.py: every form of the delta features equals librosa.feature.delta."""
import librosa
import numpy as np
import pytest
import torch

from src.audio.deltas import DeltaStack, delta_numpy, deltas, fast_deltas, stack_deltas

# Short clips (a single matrix), exact multiples of fast_deltas' 32-frame blocks, and ragged ends.
FRAMES = [9, 16, 17, 65, 100, 256, 300]


def log_mels(batch, frames, seed=0):
    return np.random.default_rng(seed).normal(-40.0, 15.0, (batch, 12, frames)).astype(np.float32)


def librosa_stack(images, width=9, scale=100.0):
    """The reference: (B, H, W) -> (B, 3, H, W) [x, delta, delta-delta] / scale, in float64."""
    x = images.astype(np.float64)
    return np.stack([x, librosa.feature.delta(x, width=width, order=1),
                     librosa.feature.delta(x, width=width, order=2)], axis=1) / scale


@pytest.mark.parametrize("frames", FRAMES)
@pytest.mark.parametrize("order", [1, 2])
def test_delta_numpy_equals_librosa(frames, order):
    image = log_mels(1, frames, seed=frames)[0]
    expected = librosa.feature.delta(image.astype(np.float64), width=9, order=order)
    np.testing.assert_allclose(delta_numpy(image, order=order), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("frames", FRAMES)
@pytest.mark.parametrize("form", ["stack_deltas", "fast_deltas", "deltas", "DeltaStack"])
def test_batch_forms_equal_librosa(frames, form):
    images = log_mels(3, frames, seed=frames)
    x = torch.from_numpy(images)
    compute = {"stack_deltas": stack_deltas, "fast_deltas": fast_deltas, "deltas": deltas,
               "DeltaStack": DeltaStack(frames)}[form]
    out = compute(x)
    assert out.shape == (3, 3, 12, frames) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), librosa_stack(images), rtol=1e-5, atol=1e-6)


def test_other_widths_and_scales_follow_librosa():
    images = log_mels(2, 100)
    expected = librosa_stack(images, width=5, scale=10.0)
    for out in (stack_deltas(torch.from_numpy(images), width=5, scale=10.0),
                fast_deltas(torch.from_numpy(images), width=5, scale=10.0),
                DeltaStack(100, width=5, scale=10.0)(torch.from_numpy(images))):
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_deltas_writes_into_out():
    x = torch.from_numpy(log_mels(2, 256))
    for frames in (256, 40):  # the banded CPU form and the dense one
        out = torch.full((2, 3, 12, frames), float("nan"))
        result = deltas(x[..., :frames], out=out)
        assert result.data_ptr() == out.data_ptr()
        torch.testing.assert_close(out, stack_deltas(x[..., :frames]), rtol=0, atol=1e-5)


def test_delta_stack_traces_with_its_filters():
    # export.py traces this module: the filters travel as buffers, the output stays librosa's.
    images = log_mels(2, 64)
    traced = torch.jit.trace(DeltaStack(64), torch.zeros(1, 12, 64))
    assert {name for name, _ in traced.named_buffers()} == {"delta1", "delta2"}
    np.testing.assert_allclose(traced(torch.from_numpy(images)).numpy(), librosa_stack(images), rtol=1e-5, atol=1e-6)
