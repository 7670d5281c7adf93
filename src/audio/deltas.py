"""Delta features as a matrix product, for whole batches on any device.

librosa's `feature.delta(x, width=9, order=k)` (Savitzky-Golay filter, edge mode
'interp') is linear along time, so for a fixed number of frames W it equals
`x @ D_k` with D_k = delta of the W x W identity. Building D_k with librosa
itself keeps the result equal to librosa's (float32 rounding aside) at the
edges too; one matmul then does a whole batch on the GPU. This is what the
predictor and the device-side augmentation use instead of per-sample numpy.
"""
import functools

import librosa
import numpy as np
import torch


@functools.lru_cache(maxsize=32)
def delta_matrix(frames: int, order: int, width: int = 9) -> np.ndarray:
    """(frames, frames) float64 matrix D with librosa.feature.delta(x) == x @ D along the last axis."""
    return librosa.feature.delta(np.eye(frames), width=width, order=order, axis=-1)


def _delta_tensor(frames, order, width, device, dtype):
    return torch.from_numpy(delta_matrix(frames, order, width)).to(device=device, dtype=dtype)


def stack_deltas(images: torch.Tensor, width: int = 9, scale: float = 100.0) -> torch.Tensor:
    """(B, H, W) log-mels -> (B, 3, H, W) [log-mel, delta, delta-delta] / scale (as ImageToTensor)."""
    frames = images.shape[-1]
    d1 = _delta_tensor(frames, 1, width, images.device, images.dtype)
    d2 = _delta_tensor(frames, 2, width, images.device, images.dtype)
    return torch.stack([images, images @ d1, images @ d2], dim=1) / scale


@functools.lru_cache(maxsize=32)
def _edge_blocks(frames: int, order: int, width: int):
    """Interior kernel and the two edge blocks of D (float32), for `delta_numpy`."""
    d = delta_matrix(frames, order, width).astype(np.float32)
    half = width // 2
    centre = frames // 2
    kernel = d[centre - half:centre + half + 1, centre].copy()
    return kernel, d[:width, :half].copy(), d[-width:, -half:].copy()


def delta_numpy(image: np.ndarray, order: int, width: int = 9) -> np.ndarray:
    """librosa.feature.delta(image, width, order) along the last axis, computed fast.

    The interior of D is one fixed 9-tap kernel (a correlation); only the first
    and last width//2 frames use librosa's edge fit, taken from D's edge blocks.
    About 10x faster than librosa's per-call Savitzky-Golay edge polyfit.
    """
    from scipy.ndimage import correlate1d

    frames = image.shape[-1]
    if frames < 2 * width:  # too short for the split: use the full matrix
        return (image @ delta_matrix(frames, order, width)).astype(np.float32)
    kernel, left, right = _edge_blocks(frames, order, width)
    half = width // 2
    out = correlate1d(image.astype(np.float32, copy=False), kernel, axis=-1, mode="constant")
    out[..., :half] = image[..., :width] @ left
    out[..., -half:] = image[..., -width:] @ right
    return out
