"""Sample mixing augmentations, applied after the per-sample transform.

A mixer is called as `mixer(dataset, image, target) -> (image, target)`, where `image` is the
transformed model input tensor (C, H, W), `target` the float multi-hot tensor (n_classes,), and
`dataset.random_sample()` returns another random (image, target) pair transformed the same way.

As in the 2019 winning solution: with probability 0.8 mix, using SigmoidConcatMixer (p 0.6) or
AddMixer (p 0.4). Randomness comes from numpy's global RNG (seeded per DataLoader worker).
"""
import numpy as np
import torch

from src.augment.checks import check_int_range, check_prob, check_range, normalise_probs


def concat_ramp(width, device=None, dtype=torch.float32):
    """The sigmoid-concat mixer's ramp for radius 1: -1 + 2k/W for frames k = 0..W-1.

    Times a radius r this is the 2019 code's `np.arange(-r, r, 2r/W)`: it starts at -r, advances by
    2r/W, ends one step short of +r, and frame W/2 is exactly 0. (A linspace from -r to +r would
    end at +r and put no frame at 0 for even W.) Both mixer paths, per sample (SigmoidConcatMixer)
    and per batch (src.augment.batch.BatchAugment), take their ramp from here.
    """
    if int(width) < 1:
        raise ValueError(f"concat_ramp: width must be >= 1, got {width}")
    return torch.arange(int(width), device=device, dtype=dtype) * (2.0 / width) - 1.0


class SigmoidConcatMixer:
    """Soft time-wise concatenation of two samples.

    A radius r ~ uniform integer in [sigmoid_range[0], sigmoid_range[1]] (inclusive) sets the
    sharpness of the seam; mask = sigmoid(r * concat_ramp(W)) over the W frames, broadcast over
    (C, H): the original's numpy `arange(-r, r, 2r/W)`, which starts at -r, ends one step short of
    +r, and is exactly 0 (mask 0.5) at frame W/2. image = mask * a + (1 - mask) * b, so the mask rises from ~0 to ~1 along time: the
    *other* sample b fills the start (left) of the window and the given sample a the end (right).
    The direction is not flipped at random (as in the original); both samples come from the same
    random stream, so the two orders are equally likely anyway.
    target = clamp(target_a + target_b, 0, 1): both clips are audible, so both sets of labels apply.
    """

    def __init__(self, sigmoid_range=(3, 12)):
        self.sigmoid_range = check_int_range(sigmoid_range, "SigmoidConcatMixer sigmoid_range")

    def sample_mask(self, width, dtype=torch.float32):
        """Time mask of shape (width,), increasing from sigmoid(-r) to sigmoid(r - 2r/W)."""
        radius = np.random.randint(self.sigmoid_range[0], self.sigmoid_range[1] + 1)
        return torch.sigmoid(radius * concat_ramp(width, dtype=torch.float64)).to(dtype)

    def __call__(self, dataset, image, target):
        other_image, other_target = dataset.random_sample()
        if other_image.shape != image.shape:
            raise ValueError(f"SigmoidConcatMixer: image shapes differ: {tuple(image.shape)} vs "
                             f"{tuple(other_image.shape)}")
        mask = self.sample_mask(image.shape[-1], dtype=image.dtype)  # (W,) broadcasts over (C, H, W)
        image = mask * image + (1 - mask) * other_image
        target = torch.clamp(target + other_target, 0.0, 1.0)
        return image, target

    def __repr__(self):
        return f"{self.__class__.__name__}(sigmoid_range={self.sigmoid_range})"


class AddMixer:
    """Weighted sum of two samples (mixup-like, but with a small weight for the other clip).

    alpha ~ U(alpha_dist[0], alpha_dist[1]) (default U(0, 0.5));
    image = (1 - alpha) * a + alpha * b.
    The target follows the reference description "target likewise" literally:
    target = (1 - alpha) * target_a + alpha * target_b (soft labels; already within [0, 1] for
    multi-hot inputs, the final clamp only guards against out-of-range inputs).
    """

    def __init__(self, alpha_dist=(0.0, 0.5)):
        self.alpha_dist = check_range(alpha_dist, "AddMixer alpha_dist", low=0.0, high=1.0)

    def sample_alpha(self):
        return float(np.random.uniform(*self.alpha_dist))

    def __call__(self, dataset, image, target):
        other_image, other_target = dataset.random_sample()
        if other_image.shape != image.shape:
            raise ValueError(f"AddMixer: image shapes differ: {tuple(image.shape)} vs {tuple(other_image.shape)}")
        alpha = self.sample_alpha()
        image = (1 - alpha) * image + alpha * other_image
        target = torch.clamp((1 - alpha) * target + alpha * other_target, 0.0, 1.0)
        return image, target

    def __repr__(self):
        return f"{self.__class__.__name__}(alpha_dist={self.alpha_dist})"


class RandomMixer:
    """Apply one of `mixers`, chosen with probabilities `p` (uniform if None; normalised to sum 1)."""

    def __init__(self, mixers, p=None):
        self.mixers = list(mixers)
        if not self.mixers:
            raise ValueError("RandomMixer: mixers must not be empty")
        self.p = normalise_probs(p, len(self.mixers), "RandomMixer")

    def __call__(self, dataset, image, target):
        index = np.random.choice(len(self.mixers), p=self.p)
        return self.mixers[index](dataset, image, target)

    def __repr__(self):
        inner = ", ".join(repr(m) for m in self.mixers)
        return f"{self.__class__.__name__}([{inner}], p={[round(float(x), 4) for x in self.p]})"


class UseMixerWithProb:
    """Apply `mixer` with probability `prob`, otherwise return (image, target) unchanged."""

    def __init__(self, mixer, prob=0.5):
        self.mixer = mixer
        self.prob = check_prob(prob)

    def __call__(self, dataset, image, target):
        if np.random.random() < self.prob:
            return self.mixer(dataset, image, target)
        return image, target

    def __repr__(self):
        return f"{self.__class__.__name__}({self.mixer!r}, prob={self.prob})"


def get_mixer(mixer_prob=0.8, sigmoid_range=(3, 12), alpha_range=(0.0, 0.5), p=(0.6, 0.4)):
    """Training mixer: with `mixer_prob`, SigmoidConcatMixer or AddMixer (probabilities `p`).
    Returns None when mixer_prob == 0 (no mixing)."""
    mixer_prob = check_prob(mixer_prob, "mixer_prob")
    if mixer_prob == 0:
        return None
    return UseMixerWithProb(
        RandomMixer([SigmoidConcatMixer(sigmoid_range), AddMixer(alpha_range)], p=p),
        prob=mixer_prob,
    )
