"""Parameter checks shared by both augmentation paths.

The per-sample transforms and mixers (transforms.py, mixers.py) and the batch
augmentation (batch.py) take the same settings, so they validate them with the
same functions and give the same errors. Each check returns the value in the
form the classes store (float, int or tuple), so a constructor reads
`self.prob = check_prob(prob, "name")`. numpy only: no torch here.
"""
import numpy as np

from src.errors import BadSetting


def check_positive_int(value, name):
    """A positive int (bools rejected: True is an int to Python, never a size here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_prob(prob, name="prob"):
    """A probability in [0, 1], as float."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {prob!r}")
    return float(prob)


def check_range(value, name, low=None, high=None):
    """A (min, max) pair with min <= max (optionally inside [low, high]), as a float tuple."""
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {value!r}")
    if (low is not None and value[0] < low) or (high is not None and value[1] > high):
        raise ValueError(f"{name} must lie within [{low}, {high}], got {value!r}")
    return tuple(float(v) for v in value)


def check_int_range(value, name):
    """A (min, max) pair of positive integers with min <= max, as an int tuple
    (the sigmoid-concat radius range, drawn inclusive of both ends)."""
    low, high = value
    if int(low) != low or int(high) != high or not 0 < low <= high:
        raise ValueError(f"{name} must be positive integers (min, max) with min <= max, got {value!r}")
    return int(low), int(high)


def check_resize_box(scale, ratio, scale_name, ratio_name):
    """RandomResizedCrop's area fraction `scale` (within [0, 1]) and aspect `ratio` (width / height):
    two (min, max) float tuples, the largest scale and the smallest ratio positive."""
    scale = check_range(scale, scale_name, low=0.0, high=1.0)
    ratio = check_range(ratio, ratio_name)
    if scale[1] <= 0 or ratio[0] <= 0:
        raise ValueError(f"{scale_name} and {ratio_name} must be positive, got {scale!r}, {ratio!r}")
    return scale, ratio


def fallback_box_size(height, width, ratio):
    """(h, w) of the box RandomResizedCrop takes when no drawn box fits (torchvision's rule): the
    whole height x width image, clipped to the `ratio` range of width / height; it is then centred."""
    aspect = width / height
    if aspect < ratio[0]:
        return int(round(width / ratio[0])), width
    if aspect > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width


def check_resized_crop_fits(height, width, scale, ratio):
    """Raise when no box of the `scale` and `ratio` ranges fits a height x width image.

    A box of area fraction s and aspect r (width / height) fits when s * aspect <= r <= aspect / s,
    aspect = width / height, widest at the smallest s. When no (s, r) of the ranges fits, every
    draw falls back to the same centre box (`fallback_box_size`): e.g. the 2019 ratio
    (1.7, 2.3), which brackets the 128 x 256 crop's aspect 2, makes every box of a 128 x 64 crop a
    38 x 64 band stretched 3.4x in frequency. Scale the ratio with the crop instead.
    """
    aspect = width / height
    if scale[0] > 0 and (ratio[1] < scale[0] * aspect or ratio[0] > aspect / scale[0]):
        raise BadSetting(
            f"transforms.resize_ratio {tuple(ratio)} never fits a {height} x {width} crop (aspect {aspect:.3g} with "
            f"resize_scale {tuple(scale)}): every resized crop would stretch the same centre band; use a ratio "
            f"around the crop's aspect, e.g. ({0.85 * aspect:.3g}, {1.15 * aspect:.3g}), or resize_prob 0")


def check_delta_width(width, name):
    """The delta filter width: odd and >= 3 (librosa.feature.delta's own rule)."""
    width = check_positive_int(width, f"{name} delta_width")
    if width < 3 or width % 2 == 0:
        raise ValueError(f"{name} delta_width must be odd and >= 3, got {width}")
    return width


def normalise_probs(p, n, name):
    """None -> uniform; otherwise n non-negative weights with a positive sum, normalised to sum 1."""
    if p is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,) or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"{name}: p must be {n} non-negative weights with a positive sum, got {p.tolist()}")
    return p / p.sum()
