"""Training augmentation for whole batches, as tensor ops on the training device.

The per-sample path (src/augment/transforms.py + src/augment/mixers.py, kept as the reference)
augments every clip in numpy inside the DataLoader workers; a mixed sample costs
two full transforms, and the workers, not the GPU, set the pace. Here the
workers only cut raw log-mel crops (`src.data.datasets.RawCropDataset`: pad + random
crop, cheap slicing) and `BatchAugment` does the expensive part for a whole
batch (B, n_mels, W) on the device, with the same distributions:

    RandomResizedCrop (p 0.33)  boxes drawn like torchvision (10 attempts, then a
                                centre-crop fallback), resampled with F.grid_sample at
                                exactly the points F.interpolate(bilinear) uses
    SpecAugment (p 0.5)         1..num_masks rounds of a band of mel bins and a block of
                                frames, as broadcast masks filled with each image's minimum
    deltas                      [log-mel, delta, delta-delta] / 100 (src.audio.deltas)
    mixing (p 0.8)              sigmoid concat (p 0.6, integer radius per sample) or add
                                (p 0.4, alpha per sample); targets as in src/augment/mixers.py

Mixing partners. The per-sample mixer draws its partner, transformed the same way
but not mixed, from the sample's own source. Here the partner is another element
of the same batch, taken from the batch *before* mixing, so it is also a clip
augmented the same way but not mixed: the same distribution. The source
constraint is kept as "same noisy flag": partners are drawn uniformly (and
independently, like the per-sample path's random draws) among the *other*
batch elements with the same flag. Two documented differences:
  * curated and corrected-noisy clips share flag 0, so they may be partnered with
    each other (the per-sample path keeps those two sources apart); both are
    trusted labels, and the flag, which is all the loss sees, stays correct;
  * a sample that is alone in its flag group has no partner and is not mixed
    (e.g. with noisy_prob 0.01 about 28% of the noisy samples in a batch of 128).

Why padding and cropping stay in the workers: they are slicing plus one small
copy per sample (~0.2 ms), reuse the reference classes unchanged, and make the
batch a fixed-size tensor; doing them on the device would mean shipping whole
clips (up to 30 s) to it.

All randomness is drawn in `BatchAugment.sample` from torch's RNG on the device
(seeded by `torch.manual_seed`, i.e. `src.runtime.seed_everything`), and `apply`
is deterministic. On an accelerator nothing reads values back to the host: every
random choice is applied to the whole batch with `torch.where`, so a CUDA step
never syncs. On CPU, where reading back is free, `apply` takes host-side
shortcuts for speed (chunks of rows that stay in cache, resampling only the
chosen rows, banded deltas, row-by-row mixing); a test checks both code paths
give the same output.
"""
import math

import torch
import torch.nn.functional as F

from src.audio.deltas import deltas
from src.augment.checks import (check_delta_width, check_int_range, check_positive_int, check_prob, check_range,
                                 check_resize_box, fallback_box_size, normalise_probs)
from src.augment.mixers import concat_ramp
from src.augment.settings import TRANSFORM_KEYS, batch_augment_params

CPU_CHUNK = 8  # rows per step of a CPU batch (see BatchAugment.apply)


def _on_host(tensor) -> bool:
    """CPU tensors: there, reading values back and looping over chunks cost nothing, so the CPU path
    takes such shortcuts; on an accelerator every step stays a fixed-shape, sync-free tensor op."""
    return tensor.device.type == "cpu"


# ---------------------------------------------------------------------------
# Random draws (all on the device, shapes fixed by the batch size)
# ---------------------------------------------------------------------------

def _rand(shape, device, generator):
    return torch.rand(shape, device=device, generator=generator)


def _uniform(low, high, shape, device, generator):
    """U(low, high), like np.random.uniform(low, high)."""
    return low + (high - low) * _rand(shape, device, generator)


def _randint(low, high, shape, device, generator):
    """Integers uniform in [low, high) (high may be a tensor), as float, like np.random.randint."""
    return torch.floor(low + (high - low) * _rand(shape, device, generator))


def sample_crop_boxes(n, height, width, scale, ratio, device=None, generator=None, attempts=10):
    """(top, left, h, w) float tensors (n,) drawn like torchvision's RandomResizedCrop.get_params.

    Per sample: up to `attempts` tries of area fraction ~ U(scale) and aspect ratio (width/height)
    ~ exp(U(log ratio)); the first box that fits is placed uniformly at random, otherwise a centre
    crop clipped to the ratio range. All tries are drawn at once and the first fitting one is
    picked with argmax (it returns the first maximum), so no sample waits for another.
    """
    area = height * width
    target_area = area * _uniform(scale[0], scale[1], (n, attempts), device, generator)
    aspect = torch.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), (n, attempts), device, generator))
    # torch.round rounds half to even, like Python's round() in the reference.
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]

    # Fallback (rare unless check_resized_crop_fits refuses the ranges): the centre box.
    fallback_h, fallback_w = fallback_box_size(height, width, ratio)
    w = torch.where(found, w, torch.full_like(w, fallback_w))
    h = torch.where(found, h, torch.full_like(h, fallback_h))
    top = torch.where(found, _randint(0, height - h + 1, (n,), device, generator), (height - h) // 2)
    left = torch.where(found, _randint(0, width - w + 1, (n,), device, generator), (width - w) // 2)
    return top, left, h, w


def sample_bands(n, rounds, total, max_fraction, device=None, generator=None):
    """(start, width) float tensors (n, rounds) of bands drawn like SpecAugment._band:
    width = int(U(0, max_fraction) * total), start = int(U(0, total - width))."""
    width = torch.floor(_uniform(0.0, max_fraction, (n, rounds), device, generator) * total)
    start = torch.floor(_uniform(0.0, 1.0, (n, rounds), device, generator) * (total - width))
    return start, width


def sample_partners(groups, generator=None):
    """Mixing partner of every batch element: uniform among the *other* elements of its group.

    Returns (partner (B,) long, has_partner (B,) bool); an element alone in its group gets itself
    and has_partner False. Uniform choice without host sync: random scores, invalid pairs set to
    -1, argmax per row.
    """
    n = groups.shape[0]
    allowed = groups[:, None] == groups[None, :]
    allowed &= ~torch.eye(n, dtype=torch.bool, device=groups.device)
    scores = _rand((n, n), groups.device, generator).masked_fill(~allowed, -1.0)
    has_partner = allowed.any(dim=1)
    partner = torch.where(has_partner, scores.argmax(dim=1), torch.arange(n, device=groups.device))
    return partner, has_partner


# ---------------------------------------------------------------------------
# Deterministic batch operations
# ---------------------------------------------------------------------------

def _resize_coords(start, crop, out_size):
    """Source coordinates (B, out_size) of F.interpolate(bilinear, align_corners=False) resizing a
    crop of length `crop` starting at `start` to `out_size`: half-pixel centres, clamped to the crop
    (interpolate clamps at the crop's edges, not the image's)."""
    dst = torch.arange(out_size, device=start.device, dtype=torch.float32)
    src = (dst + 0.5) * (crop[:, None] / out_size) - 0.5
    return start[:, None] + torch.minimum(src.clamp(min=0.0), crop[:, None] - 1)


def resized_crop(images, top, left, h, w):
    """Crop box (top, left, h, w) of every image in (B, H, W), resized back to (H, W) bilinearly.

    Equals F.interpolate(crop, (H, W), mode='bilinear', align_corners=False) per image (float
    rounding aside): grid_sample with align_corners=True samples at the absolute pixel
    coordinates interpolate uses, so no pixel outside the box leaks in.
    """
    batch, height, width = images.shape
    ys = _resize_coords(top, h, height) * (2.0 / (height - 1)) - 1.0   # (B, H) in [-1, 1]
    xs = _resize_coords(left, w, width) * (2.0 / (width - 1)) - 1.0    # (B, W)
    grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # (B, H, W, [x, y])
    out = F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, 0]


def band_mask(start, width, active, total):
    """(B, total) bool: index inside any active band [start, start + width) of its row."""
    index = torch.arange(total, device=start.device, dtype=start.dtype)[None, None, :]
    inside = (index >= start[..., None]) & (index < (start + width)[..., None]) & active[..., None]
    return inside.any(dim=1)


def spec_augment(images, freq_start, freq_width, time_start, time_width, active):
    """Mask the given mel bands and time blocks of (B, H, W) images with each image's minimum
    (taken before masking); rows of `active` (B, rounds) switch rounds on/off per image."""
    _, height, width = images.shape
    mask = (band_mask(freq_start, freq_width, active, height)[:, :, None]
            | band_mask(time_start, time_width, active, width)[:, None, :])
    return torch.where(mask, images.amin(dim=(1, 2), keepdim=True), images)


def mix_images(images, partner, weight):
    """weight * a + (1 - weight) * b for a = images, b = images[partner] (weight (B, W) over time)."""
    # lerp(b, a, weight) = weight * a + (1 - weight) * b, in one pass; exactly a where weight == 1.
    return torch.lerp(images[partner], images, weight[:, None, None, :])  # broadcast over (C, H)


def mix_targets(targets, partner, use_sigmoid, alpha, mixed):
    """Sigmoid concat clamp(ta + tb, 0, 1), add clamp((1 - alpha) ta + alpha tb, 0, 1), unmixed ta
    (as src/augment/mixers.py), with tb = targets[partner]."""
    other = targets[partner]
    alpha = alpha[:, None]
    summed = torch.clamp(targets + other, 0.0, 1.0)
    blended = torch.clamp((1.0 - alpha) * targets + alpha * other, 0.0, 1.0)
    return torch.where(mixed[:, None], torch.where(use_sigmoid[:, None], summed, blended), targets)


def mix(images, targets, partner, weight, use_sigmoid, alpha, mixed):
    """Mix a whole batch: (mix_images, mix_targets)."""
    return (mix_images(images, partner, weight),
            mix_targets(targets, partner, use_sigmoid, alpha, mixed))


# ---------------------------------------------------------------------------
# The batch transform
# ---------------------------------------------------------------------------

class BatchAugment:
    """Device-side training augmentation: raw crops (B, n_mels, W) -> model input (B, 3, n_mels, W).

    Same settings (and defaults) as `src.augment.transforms.get_transforms(train=True)` (minus the
    worker-side padding) and `src.augment.mixers.get_mixer`. `sample(noisy, height, width)` draws every
    random choice of a batch; `apply(images, targets, params)` applies them; calling the object
    does both: `(images, targets, noisy) -> (inputs, targets, noisy)`.
    """

    def __init__(self, resize_scale=(0.8, 1.0), resize_ratio=(1.7, 2.3), resize_prob=0.33,
                 spec_num_mask=2, spec_freq_masking=0.15, spec_time_masking=0.20, spec_prob=0.5,
                 mixer_prob=0.8, mixer_choice=(0.6, 0.4), sigmoid_range=(3, 12), alpha_range=(0.0, 0.5),
                 delta_width=9, scale=100.0, generator=None):
        self.resize_scale, self.resize_ratio = check_resize_box(resize_scale, resize_ratio, "BatchAugment resize_scale",
                                                                "BatchAugment resize_ratio")
        self.resize_prob = check_prob(resize_prob, "BatchAugment resize_prob")
        self.spec_num_mask = check_positive_int(spec_num_mask, "BatchAugment spec_num_mask")
        self.spec_freq_masking = check_prob(spec_freq_masking, "BatchAugment spec_freq_masking")
        self.spec_time_masking = check_prob(spec_time_masking, "BatchAugment spec_time_masking")
        self.spec_prob = check_prob(spec_prob, "BatchAugment spec_prob")
        self.mixer_prob = check_prob(mixer_prob, "BatchAugment mixer_prob")
        self.mixer_choice = tuple(float(p) for p in normalise_probs(mixer_choice, 2, "BatchAugment mixer_choice"))
        self.sigmoid_range = check_int_range(sigmoid_range, "BatchAugment sigmoid_range")
        self.alpha_range = check_range(alpha_range, "BatchAugment alpha_range", low=0.0, high=1.0)
        self.delta_width = check_delta_width(delta_width, "BatchAugment")
        self.scale = float(scale)
        self.generator = generator  # optional torch.Generator on the batch's device (tests)

    def sample(self, noisy, height, width) -> dict:
        """Every random choice for a batch with flags `noisy` (B,) of (height, width) images."""
        n, device, gen = noisy.shape[0], noisy.device, self.generator
        top, left, h, w = sample_crop_boxes(n, height, width, self.resize_scale, self.resize_ratio, device, gen)
        rounds = _randint(1, self.spec_num_mask + 1, (n,), device, gen)  # like np.random.randint(1, num_masks + 1)
        active = torch.arange(self.spec_num_mask, device=device)[None, :] < rounds[:, None]
        freq_start, freq_width = sample_bands(n, self.spec_num_mask, height, self.spec_freq_masking, device, gen)
        time_start, time_width = sample_bands(n, self.spec_num_mask, width, self.spec_time_masking, device, gen)
        partner, has_partner = sample_partners(noisy, gen)
        low, high = self.sigmoid_range
        return {
            "resize": _rand(n, device, gen) < self.resize_prob,
            "top": top, "left": left, "h": h, "w": w,
            "spec": _rand(n, device, gen) < self.spec_prob,
            "spec_rounds": rounds, "spec_active": active,
            "freq_start": freq_start, "freq_width": freq_width,
            "time_start": time_start, "time_width": time_width,
            # A mixed sample needs a partner; the per-sample path always has one.
            "mixed": (_rand(n, device, gen) < self.mixer_prob) & has_partner,
            "partner": partner, "has_partner": has_partner,
            "use_sigmoid": _rand(n, device, gen) < self.mixer_choice[0],   # else AddMixer
            "radius": _randint(low, high + 1, (n,), device, gen),
            "alpha": _uniform(self.alpha_range[0], self.alpha_range[1], (n,), device, gen),
        }

    def mix_weight(self, params, width):
        """(B, width) weight of each sample itself: sigmoid(r * concat_ramp(W)) for sigmoid concat
        (the original's arange(-r, r, 2r/W)), 1 - alpha for add, 1 when unmixed."""
        ramp = concat_ramp(width, device=params["radius"].device)
        sigmoid = torch.sigmoid(params["radius"][:, None] * ramp)
        weight = torch.where(params["use_sigmoid"][:, None], sigmoid, (1.0 - params["alpha"])[:, None])
        return torch.where(params["mixed"][:, None], weight, torch.ones_like(weight))

    def _workspace(self, like, shape):
        """A reused buffer for the pre-mix features: a fresh 50 MB tensor would cost page faults
        on every batch (allocations that large go straight to the OS)."""
        buffer = getattr(self, "_buffer", None)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffer = like.new_empty(shape)
        return buffer

    def features(self, images, params, out=None):
        """Resized crop -> SpecAugment -> [log-mel, delta, delta-delta] / scale, for the rows of `params`."""
        resize = params["resize"]
        # resize_prob 0 (corrections_002/003, trained before the step existed): no resampling at all.
        if self.resize_prob > 0 and _on_host(images):
            # On the host, reading the choice back is free: resample only the chosen third of the rows.
            rows = resize.nonzero()[:, 0]
            if len(rows):
                resized = resized_crop(images[rows], params["top"][rows], params["left"][rows], params["h"][rows],
                                       params["w"][rows])
                images = images.index_copy(0, rows, resized)
        elif self.resize_prob > 0:  # on an accelerator, resample every row and select: no host sync
            resized = resized_crop(images, params["top"], params["left"], params["h"], params["w"])
            images = torch.where(resize[:, None, None], resized, images)
        active = params["spec_active"] & params["spec"][:, None]
        images = spec_augment(images, params["freq_start"], params["freq_width"], params["time_start"],
                              params["time_width"], active)
        return deltas(images, self.delta_width, self.scale, out=out)

    @torch.no_grad()
    def apply(self, images, targets, params):
        """Resized crop -> SpecAugment -> deltas -> mixing, the per-sample path's order.

        On CPU the batch goes through in chunks of CPU_CHUNK rows: each chunk's intermediate tensors
        stay in the cache, where a whole-batch op would stream ~50 MB through memory per step (this
        makes the CPU path several times faster). On CUDA the whole batch is one chunk.
        """
        images, targets = images.float(), targets.float()
        batch, _, width = images.shape
        weight = self.mix_weight(params, width)
        mixed_targets = mix_targets(targets, params["partner"], params["use_sigmoid"], params["alpha"],
                                    params["mixed"])
        if not _on_host(images) or batch <= CPU_CHUNK:
            inputs = self.features(images, params)
            return mix_images(inputs, params["partner"], weight), mixed_targets
        chunks = [slice(start, start + CPU_CHUNK) for start in range(0, batch, CPU_CHUNK)]
        inputs = self._workspace(images, (batch, 3, *images.shape[1:]))
        for rows in chunks:
            self.features(images[rows], {key: value[rows] for key, value in params.items()}, out=inputs[rows])
        # Partners come from the whole batch, before mixing. Row by row, lerp reads both rows in place
        # (no gathered copy of the partners): about twice as fast here.
        out = torch.empty_like(inputs)
        for row, partner in enumerate(params["partner"].tolist()):
            torch.lerp(inputs[partner], inputs[row], weight[row], out=out[row])
        return out, mixed_targets

    def __call__(self, images, targets, noisy):
        if images.ndim != 3:
            raise ValueError(f"BatchAugment: expected raw crops (B, n_mels, frames), got shape {tuple(images.shape)}")
        if images.shape[-1] < self.delta_width:
            raise ValueError(f"BatchAugment: crops have {images.shape[-1]} frames, fewer than "
                             f"delta_width={self.delta_width}")
        params = self.sample(noisy, images.shape[1], images.shape[2])
        inputs, targets = self.apply(images, targets, params)
        return inputs, targets, noisy

    def __repr__(self):
        return (f"{self.__class__.__name__}(resize_scale={self.resize_scale}, resize_ratio={self.resize_ratio}, "
                f"resize_prob={self.resize_prob}, spec_num_mask={self.spec_num_mask}, "
                f"spec_freq_masking={self.spec_freq_masking}, spec_time_masking={self.spec_time_masking}, "
                f"spec_prob={self.spec_prob}, mixer_prob={self.mixer_prob}, mixer_choice={self.mixer_choice}, "
                f"sigmoid_range={self.sigmoid_range}, alpha_range={self.alpha_range})")


def create_batch_augment(experiment: dict, generator=None) -> BatchAugment:
    """BatchAugment from an experiment dict (or its `batch_augment_params` subset)."""
    settings = batch_augment_params(experiment)
    transforms = {key: value for key, value in settings["transforms"].items() if key in TRANSFORM_KEYS}
    return BatchAugment(**transforms, mixer_prob=settings["mixer_prob"], mixer_choice=settings["mixer_choice"],
                        sigmoid_range=settings["sigmoid_range"], alpha_range=settings["alpha_range"],
                        generator=generator)
