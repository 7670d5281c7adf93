"""Per-sample spectrogram augmentations (timm-style small transform classes).

Every transform takes a log-mel spectrogram ("image"): a numpy float32 array of
shape (n_mels, frames), and returns a new one (inputs are never modified in
place). The last step, `ImageToTensor`, turns it into the 3-channel model input
tensor (3, n_mels, frames) = [log-mel, delta, delta-delta] / 100.

Randomness comes from numpy's global RNG (`np.random`), which is seeded per
DataLoader worker elsewhere (`src.runtime.seed_worker`), so runs are reproducible.

Training pipeline (see `get_transforms`), as in the 2019 winning solution:
    `pad_and_crop`: pad to `size` (wrap with p=0.5 else constant with the minimum)
                    -> random crop of `size` frames
    -> with p=0.33 RandomResizedCrop (scale 0.8-1.0, ratio 1.7-2.3) back to the same shape
    -> with p=0.5 SpecAugment (1-2 rounds of frequency + time masks filled with the minimum)
    -> ImageToTensor
Validation / test: constant pad -> centre crop -> ImageToTensor.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from src.audio.deltas import delta_numpy
from src.augment.checks import (check_delta_width, check_positive_int, check_prob, check_resize_box,
                                 fallback_box_size, normalise_probs)


def _check_image(image, name):
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        shape = getattr(image, "shape", None)
        raise ValueError(f"{name}: expected a 2-D numpy array (n_mels, frames), got {type(image).__name__} "
                         f"with shape {shape}")


# ---------------------------------------------------------------------------
# Composition helpers
# ---------------------------------------------------------------------------

class Compose:
    """Apply transforms one after another."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{self.__class__.__name__}([{inner}\n])"


class UseWithProb:
    """Apply `transform` with probability `prob`, otherwise return the input unchanged."""

    def __init__(self, transform, prob=0.5):
        self.transform = transform
        self.prob = check_prob(prob)

    def __call__(self, image):
        if np.random.random() < self.prob:
            image = self.transform(image)
        return image

    def __repr__(self):
        return f"{self.__class__.__name__}({self.transform!r}, prob={self.prob})"


class OneOf:
    """Apply exactly one of `transforms`, chosen with probabilities `p` (uniform if None;
    weights are normalised to sum to 1)."""

    def __init__(self, transforms, p=None):
        self.transforms = list(transforms)
        if not self.transforms:
            raise ValueError("OneOf: transforms must not be empty")
        self.p = normalise_probs(p, len(self.transforms), "OneOf")

    def __call__(self, image):
        index = np.random.choice(len(self.transforms), p=self.p)
        return self.transforms[index](image)

    def __repr__(self):
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"{self.__class__.__name__}([{inner}], p={[round(float(x), 4) for x in self.p]})"


# ---------------------------------------------------------------------------
# Padding and cropping along time
# ---------------------------------------------------------------------------

class PadToSize:
    """Pad along time (axis 1) to `size` frames if the image is shorter.

    The padding is split evenly: left = padding // 2, right = the rest.
    mode='constant' fills with the image minimum (the quietest dB value, i.e. "silence"),
    mode='wrap' repeats the clip circularly (np.pad 'wrap' semantics: output frame j is input
    frame (j - left) mod frames, which stays correct when the padding is many clip lengths long).
    Images already >= `size` frames are returned unchanged.
    """

    modes = ("constant", "wrap")

    def __init__(self, size, mode="constant"):
        self.size = check_positive_int(size, "PadToSize size")
        if mode not in self.modes:
            raise ValueError(f"PadToSize mode must be one of {self.modes}, got {mode!r}")
        self.mode = mode

    def __call__(self, image):
        _check_image(image, self.__class__.__name__)
        frames = image.shape[1]
        if frames >= self.size:
            return image
        if frames == 0:
            raise ValueError("PadToSize: cannot pad an image with 0 frames")
        padding = self.size - frames
        left = padding // 2
        pad_width = ((0, 0), (left, padding - left))
        if self.mode == "constant":
            return np.pad(image, pad_width, mode="constant", constant_values=image.min())
        return np.pad(image, pad_width, mode="wrap")

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size}, mode={self.mode!r})"


class _TimeCrop:
    """A contiguous window of `size` frames along time; subclasses choose where it starts."""

    def __init__(self, size):
        self.size = check_positive_int(size, f"{self.__class__.__name__} size")

    def _start(self, frames) -> int:
        raise NotImplementedError

    def __call__(self, image):
        _check_image(image, self.__class__.__name__)
        frames = image.shape[1]
        if frames < self.size:
            raise ValueError(f"{self.__class__.__name__}: image has {frames} frames, fewer than size={self.size} "
                             f"(pad first)")
        start = self._start(frames)
        return image[:, start:start + self.size]

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size})"


class RandomCrop(_TimeCrop):
    """Random window of `size` frames along time (start uniform over all valid offsets)."""

    def _start(self, frames):
        return np.random.randint(0, frames - self.size + 1)


class CenterCrop(_TimeCrop):
    """Centre window of `size` frames along time (start = (frames - size) // 2)."""

    def _start(self, frames):
        return (frames - self.size) // 2


class RandomResizedCrop:
    """torchvision-style RandomResizedCrop on the 2-D spectrogram.

    The crop box is sampled exactly like torchvision's `RandomResizedCrop.get_params`:
    up to 10 attempts of (area fraction ~ U(scale), aspect ratio width/height ~ exp(U(log ratio)));
    the first box that fits is placed uniformly at random; otherwise a centre crop clipped to the
    ratio range. The crop is resized with bilinear interpolation (torch, align_corners=False,
    the same half-pixel convention as cv2.INTER_LINEAR) to `size` = (height, width), or back to
    the input shape when `size` is None.
    """

    def __init__(self, size=None, scale=(0.8, 1.0), ratio=(1.7, 2.3)):
        if size is not None:
            if len(size) != 2:
                raise ValueError(f"RandomResizedCrop size must be None or (height, width), got {size!r}")
            size = tuple(check_positive_int(s, "RandomResizedCrop size") for s in size)
        self.size = size
        self.scale, self.ratio = check_resize_box(scale, ratio, "RandomResizedCrop scale", "RandomResizedCrop ratio")

    def get_params(self, height, width):
        """Return the crop box (top, left, crop_height, crop_width)."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * np.random.uniform(*self.scale)
            aspect_ratio = math.exp(np.random.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                top = np.random.randint(0, height - h + 1)
                left = np.random.randint(0, width - w + 1)
                return top, left, h, w
        h, w = fallback_box_size(height, width, self.ratio)
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image):
        _check_image(image, self.__class__.__name__)
        height, width = image.shape
        out_size = self.size if self.size is not None else (height, width)
        top, left, h, w = self.get_params(height, width)
        crop = torch.from_numpy(np.ascontiguousarray(image[top:top + h, left:left + w], dtype=np.float32))
        resized = F.interpolate(crop[None, None], size=out_size, mode="bilinear", align_corners=False)
        return resized[0, 0].numpy()

    def __repr__(self):
        return f"{self.__class__.__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio})"


# ---------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------

class SpecAugment:
    """SpecAugment-style masking (Park et al. 2019), as used in the 2019 winning solution.

    Draws 1..num_masks rounds (uniform). Each round masks
      * a band of int(U(0, freq_masking) * n_mels) consecutive mel bins, and
      * a block of int(U(0, time_masking) * frames) consecutive frames,
    each placed uniformly at random, and fills both with the image minimum (taken before masking).
    """

    def __init__(self, num_masks=2, freq_masking=0.15, time_masking=0.20):
        self.num_masks = check_positive_int(num_masks, "SpecAugment num_masks")
        self.freq_masking = check_prob(freq_masking, "SpecAugment freq_masking")
        self.time_masking = check_prob(time_masking, "SpecAugment time_masking")

    @staticmethod
    def _band(total, max_fraction):
        """Random [start, stop) band of up to max_fraction * total consecutive indices."""
        width = int(np.random.uniform(0.0, max_fraction) * total)
        start = int(np.random.uniform(0.0, total - width))
        return start, start + width

    def __call__(self, image):
        _check_image(image, self.__class__.__name__)
        image = image.copy()
        value = image.min()
        n_freqs, n_frames = image.shape
        for _ in range(np.random.randint(1, self.num_masks + 1)):
            f0, f1 = self._band(n_freqs, self.freq_masking)
            image[f0:f1, :] = value
            t0, t1 = self._band(n_frames, self.time_masking)
            image[:, t0:t1] = value
        return image

    def __repr__(self):
        return (f"{self.__class__.__name__}(num_masks={self.num_masks}, freq_masking={self.freq_masking}, "
                f"time_masking={self.time_masking})")


# ---------------------------------------------------------------------------
# To model input
# ---------------------------------------------------------------------------

class ImageToTensor:
    """(n_mels, frames) log-mel -> torch float32 (3, n_mels, frames): [log-mel, delta, delta-delta] / 100.

    Deltas are librosa.feature.delta(width=9, order=1 / 2) along time with librosa's default
    mode='interp' (Savitzky-Golay fit at the edges), which needs at least `width` (9) frames;
    shorter images raise a ValueError. Training crops and prediction tiles are 256 frames wide.
    """

    def __init__(self, delta_width=9, scale=100.0):
        self.delta_width = check_delta_width(delta_width, "ImageToTensor")
        self.scale = float(scale)

    def __call__(self, image):
        _check_image(image, self.__class__.__name__)
        if image.shape[1] < self.delta_width:
            raise ValueError(f"ImageToTensor: image has {image.shape[1]} frames, but the delta features "
                             f"need at least delta_width={self.delta_width}")
        # Same numbers as librosa.feature.delta (tested), ~10x faster: see src/audio/deltas.py.
        delta = delta_numpy(image, order=1, width=self.delta_width)
        delta2 = delta_numpy(image, order=2, width=self.delta_width)
        stacked = np.stack([image, delta, delta2], axis=0).astype(np.float32) / np.float32(self.scale)
        return torch.from_numpy(stacked)

    def __repr__(self):
        return f"{self.__class__.__name__}(delta_width={self.delta_width}, scale={self.scale})"


# ---------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------

def pad_and_crop(size, train, wrap_pad_prob=0.5):
    """Any clip -> exactly `size` frames: the first steps of every pipeline.

    train=True: pad by wrapping (probability wrap_pad_prob) or with the minimum, then a random
    window (the training crop, also what `src.data.datasets.RawCropDataset` serves to the batch
    augmentation). train=False: pad with the minimum, then the centre window (validation, test).
    """
    if not train:
        return Compose([PadToSize(size, mode="constant"), CenterCrop(size)])
    wrap_pad_prob = check_prob(wrap_pad_prob, "wrap_pad_prob")
    return Compose([
        OneOf([PadToSize(size, mode="wrap"), PadToSize(size, mode="constant")], p=[wrap_pad_prob, 1.0 - wrap_pad_prob]),
        RandomCrop(size),
    ])


def get_transforms(train, size=256, wrap_pad_prob=0.5, resize_scale=(0.8, 1.0), resize_ratio=(1.7, 2.3),
                   resize_prob=0.33, spec_num_mask=2, spec_freq_masking=0.15, spec_time_masking=0.20,
                   spec_prob=0.5):
    """Build the training (train=True) or validation/test (train=False) spectrogram pipeline."""
    if not train:
        return Compose([pad_and_crop(size, train=False), ImageToTensor()])
    # resize_prob 0 leaves the step out, as in the pipelines that predate it (corrections_002/003).
    resized_crop = [] if check_prob(resize_prob, "resize_prob") == 0 else [
        UseWithProb(RandomResizedCrop(scale=resize_scale, ratio=resize_ratio), prob=resize_prob)]
    return Compose([
        pad_and_crop(size, train=True, wrap_pad_prob=wrap_pad_prob),
        *resized_crop,
        UseWithProb(SpecAugment(num_masks=spec_num_mask, freq_masking=spec_freq_masking,
                                time_masking=spec_time_masking), prob=spec_prob),
        ImageToTensor(),
    ])
