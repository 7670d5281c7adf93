"""Delta features: the one implementation, for a clip, a batch on any device and an exported model.

librosa's `feature.delta(x, width=9, order=k)` (Savitzky-Golay filter, edge mode
'interp') is linear along time, so for a fixed number of frames W it equals
`x @ D_k` with D_k = delta of the W x W identity (`delta_matrix`). Building D_k
with librosa itself keeps every form below equal to librosa's (float32 rounding
aside), edges included; they only differ in how they multiply by D_k:

    delta_numpy    one clip, numpy: D's interior 9-tap kernel + its edge blocks
                   (the per-sample transform `ImageToTensor`)
    stack_deltas   a batch (B, H, W) on any device: one dense matmul per order
                   -> (B, 3, H, W) [log-mel, delta, delta-delta] / scale (the predictor)
    fast_deltas    the same for CPU tensors, block by block along D's band
    deltas         stack_deltas or fast_deltas, whichever is faster on the batch's device
                   (the device-side batch augmentation)
    DeltaStack     stack_deltas as an nn.Module with D_1, D_2 as buffers, for a fixed tile
                   width (the traced model of export.py)
"""
import functools

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@functools.lru_cache(maxsize=32)
def delta_matrix(frames: int, order: int, width: int = 9) -> np.ndarray:
    """(frames, frames) float64 matrix D with librosa.feature.delta(x) == x @ D along the last axis."""
    return librosa.feature.delta(np.eye(frames), width=width, order=order, axis=-1)


def _delta_tensor(frames, order, width, device, dtype):
    return torch.from_numpy(delta_matrix(frames, order, width)).to(device=device, dtype=dtype)


def _stack(images, d1, d2, scale):
    """(B, H, W) -> (B, 3, H, W): [images, images @ d1, images @ d2] / scale."""
    return torch.stack([images, images @ d1, images @ d2], dim=1) / scale


# ---------------------------------------------------------------------------
# One clip (numpy)
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# A batch (torch, any device)
# ---------------------------------------------------------------------------

def stack_deltas(images: torch.Tensor, width: int = 9, scale: float = 100.0) -> torch.Tensor:
    """(B, H, W) log-mels -> (B, 3, H, W) [log-mel, delta, delta-delta] / scale (as ImageToTensor)."""
    frames = images.shape[-1]
    d1 = _delta_tensor(frames, 1, width, images.device, images.dtype)
    d2 = _delta_tensor(frames, 2, width, images.device, images.dtype)
    return _stack(images, d1, d2, scale)


@functools.lru_cache(maxsize=8)
def _block_delta_matrices(frames, width, block):
    """(n_blocks, block + 2 * (width - 1), 2 * block) float32: for output block k, the rows of
    [D_1 | D_2] of its input window (zero outside the clip), columns of its frames."""
    reach = width - 1  # the edge fits look up to width - 1 frames away; interior frames width // 2
    n_blocks = -(-frames // block)
    padded = n_blocks * block
    d = torch.zeros(2, padded + 2 * reach, padded, dtype=torch.float64)
    for order in (1, 2):
        d[order - 1, reach:reach + frames, :frames] = torch.from_numpy(delta_matrix(frames, order, width))
    starts = torch.arange(n_blocks) * block
    rows = starts[:, None] + torch.arange(block + 2 * reach)  # window rows, in padded coordinates
    cols = starts[:, None] + torch.arange(block)
    m = d[:, rows[:, :, None], cols[:, None, :]]             # (2, n_blocks, window, block)
    return torch.cat([m[0], m[1]], dim=-1).float()


def fast_deltas(images, width=9, scale=100.0, block=32, out=None):
    """stack_deltas for CPU tensors: (B, H, W) -> (B, 3, H, W), the same numbers.

    The delta matrix D is banded: output frame t only uses input frames within width - 1 of it
    (width // 2 in the interior, up to width - 1 for librosa's edge fits). So each block of
    `block` output frames is a small matmul with its input window: ~4x fewer FLOPs than the
    dense (W, W) product, which dominates a CPU batch. On CUDA the dense product is cheap and
    `stack_deltas` is used as is. `out`: an optional (B, 3, H, W) tensor to write into.
    """
    batch, height, frames = images.shape
    reach = width - 1
    m = _block_delta_matrices(frames, width, block).to(images) / scale
    n_blocks = m.shape[0]
    padded = n_blocks * block
    x = F.pad(images, (reach, reach + padded - frames))  # (B, H, padded + 2 * reach)
    windows = x.unfold(-1, block + 2 * reach, block)     # (B, H, n_blocks, window), a view
    blocks = torch.einsum("bhkw,kwo->bhko", windows, m)  # (B, H, n_blocks, 2 * block)
    if out is None:
        out = images.new_empty(batch, 3, height, frames)
    torch.div(images, scale, out=out[:, 0])
    for channel, part in ((1, blocks[..., :block]), (2, blocks[..., block:])):
        if padded == frames:  # the usual case (256 frames): copy the blocks straight into place
            out[:, channel].view(batch, height, n_blocks, block).copy_(part)
        else:
            out[:, channel].copy_(part.reshape(batch, height, padded)[..., :frames])
    return out


def deltas(images, width=9, scale=100.0, out=None):
    """[log-mel, delta, delta-delta] / scale for a batch, with the fastest exact form for the device
    (the banded blocks pay off on CPU once a clip is longer than a couple of blocks)."""
    if images.device.type == "cpu" and images.shape[-1] > 64:
        return fast_deltas(images, width, scale, out=out)
    result = stack_deltas(images, width, scale)
    return result if out is None else out.copy_(result)


# ---------------------------------------------------------------------------
# An exported model (fixed tile width)
# ---------------------------------------------------------------------------

class DeltaStack(nn.Module):
    """`stack_deltas` for tiles of a fixed width, with D_1 and D_2 as buffers, so a traced or
    scripted model carries its delta filters and runs without librosa."""

    def __init__(self, frames: int, width: int = 9, scale: float = 100.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("delta1", torch.from_numpy(delta_matrix(frames, 1, width)).float())
        self.register_buffer("delta2", torch.from_numpy(delta_matrix(frames, 2, width)).float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return _stack(images, self.delta1, self.delta2, self.scale)
