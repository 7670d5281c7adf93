import librosa
import numpy as np
import pytest
import torch

from src.augment.transforms import (
    CenterCrop, Compose, ImageToTensor, OneOf, PadToSize, RandomCrop, RandomResizedCrop,
    SpecAugment, UseWithProb, get_transforms,
)
from src.augment.checks import check_resized_crop_fits
from src.augment.settings import check_crop_settings
from src.config import AUDIO
from src.errors import BadSetting
from src.experiments import EXPERIMENTS, get_experiment


def make_image(frames, n_mels=128, seed=0):
    """Random log-mel-like image in [-100, 0] with a unique value per cell."""
    rng = np.random.default_rng(seed)
    return (-100 * rng.random((n_mels, frames))).astype(np.float32)


def assert_binomial(count, n, p, sigmas=4.0):
    """count ~ Binomial(n, p) within `sigmas` standard deviations."""
    std = np.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= sigmas * std + 1e-9, (count, n * p, std)


# ---------------------------------------------------------------- padding

def test_pad_constant_uses_minimum_and_splits_evenly():
    image = make_image(101)
    out = PadToSize(256, mode="constant")(image)
    assert out.shape == (128, 256) and out.dtype == np.float32
    left, right = 155 // 2, 155 - 155 // 2  # 77 and 78
    np.testing.assert_array_equal(out[:, left:left + 101], image)
    assert (out[:, :left] == image.min()).all()
    assert (out[:, left + 101:] == image.min()).all()
    assert out[:, left + 101:].shape[1] == right


@pytest.mark.parametrize("frames", [100, 30, 7, 1])
def test_pad_wrap_repeats_clip(frames):
    # Also when the padding is many clip lengths long: frame j is input frame (j - left) mod frames.
    image = make_image(frames)
    out = PadToSize(256, mode="wrap")(image)
    assert out.shape == (128, 256)
    left = (256 - frames) // 2
    expected = image[:, (np.arange(256) - left) % frames]
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[:, left:left + frames], image)


def test_pad_leaves_long_images_alone():
    image = make_image(300)
    for mode in ("constant", "wrap"):
        assert PadToSize(256, mode=mode)(image) is image


def test_pad_rejects_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        PadToSize(256, mode="reflect")


# ---------------------------------------------------------------- crops

def test_random_crop_is_contiguous_window():
    np.random.seed(0)
    image = make_image(400)
    starts = set()
    for _ in range(50):
        out = RandomCrop(256)(image)
        assert out.shape == (128, 256)
        # unique values per cell -> locate the window start from the first frame
        start = int(np.flatnonzero((image == out[0, 0]).any(axis=0))[0])
        np.testing.assert_array_equal(out, image[:, start:start + 256])
        starts.add(start)
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 400 - 256


def test_random_crop_exact_size_and_too_short():
    image = make_image(256)
    np.testing.assert_array_equal(RandomCrop(256)(image), image)
    with pytest.raises(ValueError, match="fewer than size"):
        RandomCrop(256)(make_image(100))


def test_center_crop_is_centered():
    image = make_image(301)
    out = CenterCrop(256)(image)
    start = (301 - 256) // 2
    np.testing.assert_array_equal(out, image[:, start:start + 256])
    # odd leftover: one more frame dropped on the right than on the left
    assert start == 22 and 301 - (start + 256) == 23


def test_random_resized_crop_shape_and_box_limits():
    np.random.seed(1)
    rrc = RandomResizedCrop(scale=(0.8, 1.0), ratio=(1.7, 2.3))
    for _ in range(50):
        top, left, h, w = rrc.get_params(128, 256)
        assert 0 <= top and top + h <= 128 and 0 <= left and left + w <= 256
        assert 0.8 * 128 * 256 * 0.97 <= h * w <= 128 * 256
        assert 1.6 <= w / h <= 2.4
    out = rrc(make_image(256))
    assert out.shape == (128, 256) and out.dtype == np.float32
    out = RandomResizedCrop(size=(64, 100))(make_image(256))
    assert out.shape == (64, 100)


def test_random_resized_crop_full_box_is_identity():
    image = make_image(256)
    out = RandomResizedCrop(scale=(1.0, 1.0), ratio=(2.0, 2.0))(image)
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_random_resized_crop_fallback_centre_crop():
    # ratio >= 10 never fits into a 128x256 image; input ratio 2 < min ratio 10 ->
    # full width, height round(256 / 10) = 26, centred vertically (top 51).
    np.random.seed(0)
    assert RandomResizedCrop(ratio=(10.0, 12.0)).get_params(128, 256) == ((128 - 26) // 2, 0, 26, 256)


@pytest.mark.parametrize("width, scale, ratio", [
    (256, (0.8, 1.0), (1.7, 2.3)),      # the 2019 crops: boxes fit
    (64, (0.8, 1.0), (0.425, 0.575)),   # demo / small: the range scaled with the crop
    (64, (0.8, 1.0), (1.7, 2.3)),       # the 2019 range on 64 frames: never fits
    (128, (0.8, 1.0), (1.7, 2.3)),
    (32, (0.8, 1.0), (0.425, 0.575)),
    (64, (0.2, 1.0), (1.7, 2.3)),       # small areas: short wide boxes fit again
])
def test_crop_check_says_whether_any_box_fits(width, scale, ratio):
    """check_resized_crop_fits refuses exactly the settings whose every box is the one centre fallback."""
    rrc = RandomResizedCrop(scale=scale, ratio=ratio)
    np.random.seed(0)
    boxes = {rrc.get_params(128, width) for _ in range(500)}
    try:
        check_resized_crop_fits(128, width, scale, ratio)
        accepted = True
    except BadSetting as error:
        accepted = False
        assert "resize_ratio" in str(error) and f"128 x {width}" in str(error)
    assert accepted == (len(boxes) > 1), boxes


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiments_resized_crop_can_take_its_crop(name):
    """The 2019 members keep 1.7-2.3 on 256 frames; the 64-frame experiments need the scaled range."""
    check_crop_settings(get_experiment(name), AUDIO.n_mels)


def test_random_resized_crop_matches_bilinear_resize_of_crop():
    # Check the resize against a hand computation: a linear ramp along time stays linear.
    image = np.tile(np.arange(256, dtype=np.float32), (128, 1))
    rrc = RandomResizedCrop(scale=(0.8, 0.8), ratio=(2.0, 2.0))
    np.random.seed(3)
    top, left, h, w = rrc.get_params(128, 256)
    np.random.seed(3)
    out = rrc(image)
    # align_corners=False: output column x samples input column (x + 0.5) * w / 256 - 0.5 (clamped)
    src = np.clip((np.arange(256) + 0.5) * w / 256 - 0.5, 0, w - 1) + left
    np.testing.assert_allclose(out, np.tile(src, (128, 1)), atol=1e-3)


# ---------------------------------------------------------------- SpecAugment

def test_spec_augment_masks_with_minimum_within_limits():
    np.random.seed(0)
    aug = SpecAugment(num_masks=2, freq_masking=0.15, time_masking=0.20)
    image = make_image(256)
    rows_masked, cols_masked = [], []
    for _ in range(300):
        out = aug(image)
        assert out.shape == image.shape
        changed = out != image
        # every change sets the cell to the (pre-mask) minimum
        assert (out[changed] == image.min()).all()
        full_rows = np.flatnonzero(changed.sum(1) >= 255)  # whole band (minus the min cell)
        full_cols = np.flatnonzero(changed.sum(0) >= 127)
        # changed cells are exactly the union of masked rows and masked columns
        mask = np.zeros_like(changed)
        mask[full_rows, :] = True
        mask[:, full_cols] = True
        mask &= image != image.min()
        np.testing.assert_array_equal(changed, mask)
        # at most 2 rounds x (15% of 128 bins, 20% of 256 frames)
        assert len(full_rows) <= 2 * int(0.15 * 128)
        assert len(full_cols) <= 2 * int(0.20 * 256)
        rows_masked.append(len(full_rows))
        cols_masked.append(len(full_cols))
    # something is masked most of the time; widths spread over the range
    assert np.mean(np.array(cols_masked) > 0) > 0.9
    assert max(cols_masked) > int(0.20 * 256) and max(rows_masked) > int(0.15 * 128)


def test_spec_augment_single_round_band_widths():
    np.random.seed(1)
    aug = SpecAugment(num_masks=1, freq_masking=0.15, time_masking=0.20)
    image = make_image(256)
    widths = []
    for _ in range(400):
        out = aug(image)
        cols = np.flatnonzero((out == image.min()).all(0))
        if len(cols):
            assert cols[-1] - cols[0] + 1 == len(cols)  # one contiguous block
        widths.append(len(cols))
    widths = np.array(widths)
    assert widths.max() <= int(0.20 * 256)
    # width = int(U(0, 0.2) * 256): mean ~ 25.1
    assert abs(widths.mean() - 25.1) < 2.5


def test_spec_augment_does_not_modify_input():
    image = make_image(256)
    copy = image.copy()
    SpecAugment()(image)
    np.testing.assert_array_equal(image, copy)


# ---------------------------------------------------------------- ImageToTensor

@pytest.mark.parametrize("frames", [256, 9])
def test_image_to_tensor_channels_match_librosa(frames):
    image = make_image(frames)
    out = ImageToTensor()(image)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == (3, 128, frames)
    np.testing.assert_allclose(out[0].numpy(), image / 100, rtol=1e-6)
    np.testing.assert_allclose(out[1].numpy(), librosa.feature.delta(image, width=9, order=1) / 100,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[2].numpy(), librosa.feature.delta(image, width=9, order=2) / 100,
                               rtol=1e-5, atol=1e-6)


def test_image_to_tensor_too_short():
    with pytest.raises(ValueError, match="delta_width=9"):
        ImageToTensor()(make_image(8))


# ---------------------------------------------------------------- composition

class AddOne:
    def __call__(self, x):
        return x + 1

    def __repr__(self):
        return "AddOne()"


class Const:
    def __init__(self, value):
        self.value = value

    def __call__(self, x):
        return self.value


def test_use_with_prob_frequency():
    np.random.seed(0)
    t = UseWithProb(AddOne(), prob=0.33)
    n = 5000
    applied = sum(t(0) == 1 for _ in range(n))
    assert_binomial(applied, n, 0.33)
    assert UseWithProb(AddOne(), prob=0.0)(0) == 0 and UseWithProb(AddOne(), prob=1.0)(0) == 1
    with pytest.raises(ValueError, match="prob"):
        UseWithProb(AddOne(), prob=1.5)


def test_one_of_frequencies():
    np.random.seed(0)
    t = OneOf([Const(0), Const(1), Const(2)], p=[0.2, 0.3, 0.5])
    n = 5000
    counts = np.bincount([t(None) for _ in range(n)], minlength=3)
    for count, p in zip(counts, [0.2, 0.3, 0.5]):
        assert_binomial(count, n, p)
    # unnormalised weights and the uniform default
    np.testing.assert_allclose(OneOf([Const(0), Const(1)], p=[3, 1]).p, [0.75, 0.25])
    np.testing.assert_allclose(OneOf([Const(0), Const(1)]).p, [0.5, 0.5])


def test_compose_order_and_repr():
    t = Compose([AddOne(), UseWithProb(AddOne(), 1.0)])
    assert t(1) == 3
    assert "AddOne()" in repr(t) and "prob=1.0" in repr(t)
    assert repr(SpecAugment()) == "SpecAugment(num_masks=2, freq_masking=0.15, time_masking=0.2)"


# ---------------------------------------------------------------- factory

@pytest.mark.parametrize("frames", [40, 256, 1000])
def test_get_transforms_shapes(frames):
    np.random.seed(0)
    image = make_image(frames)
    for train in (True, False):
        t = get_transforms(train=train)
        for _ in range(5 if train else 1):
            out = t(image)
            assert tuple(out.shape) == (3, 128, 256) and out.dtype == torch.float32
            assert torch.isfinite(out).all()


def test_get_transforms_val_is_deterministic_and_centered():
    image = make_image(1000)
    t = get_transforms(train=False, size=256)
    a, b = t(image), t(image)
    torch.testing.assert_close(a, b)
    start = (1000 - 256) // 2
    np.testing.assert_allclose(a[0].numpy(), image[:, start:start + 256] / 100, rtol=1e-6)
    # short input: constant padding with the minimum
    short = make_image(100)
    out = t(short)[0].numpy() * 100
    np.testing.assert_allclose(out[:, :78], short.min(), rtol=1e-6)


def test_get_transforms_train_structure():
    t = get_transforms(train=True, size=128, wrap_pad_prob=1.0, resize_prob=0.0, spec_prob=0.0)
    # wrap padding always, nothing else random but the crop -> output is a window of the wrapped clip
    np.random.seed(0)
    image = make_image(50)
    out = t(image)[0].numpy() * 100
    wrapped = PadToSize(128, mode="wrap")(image)
    np.testing.assert_allclose(out, wrapped, rtol=1e-6)
    assert "SpecAugment" in repr(t)
    # resize_prob 0 leaves the resized-crop step out (corrections_002/003's pipeline); the default has it.
    assert "RandomResizedCrop" not in repr(t) and "RandomResizedCrop" in repr(get_transforms(train=True))
