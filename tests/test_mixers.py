import numpy as np
import pytest
import torch

from src.augment.mixers import AddMixer, RandomMixer, SigmoidConcatMixer, UseMixerWithProb, get_mixer


class FakeDataset:
    """Returns the same 'other' sample every time and counts the draws."""

    def __init__(self, shape=(3, 8, 32), n_classes=5):
        self.image = torch.full(shape, -2.0)
        self.target = torch.zeros(n_classes)
        self.target[[1, 2]] = 1.0
        self.calls = 0

    def random_sample(self):
        self.calls += 1
        return self.image.clone(), self.target.clone()


def sample_a(shape=(3, 8, 32), n_classes=5):
    image = torch.full(shape, 4.0)
    target = torch.zeros(n_classes)
    target[[0, 1]] = 1.0
    return image, target


def assert_binomial(count, n, p, sigmas=4.0):
    std = np.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= sigmas * std + 1e-9, (count, n * p, std)


# ---------------------------------------------------------------- sigmoid concat

def original_mask(radius, width):
    """The 2019 code's mask, written from its definition: sigmoid of numpy's arange(-r, r, 2r/W)."""
    ramp = np.arange(-radius, radius, 2 * radius / width)
    assert len(ramp) == width
    return torch.from_numpy(1.0 / (1.0 + np.exp(-ramp)))


def test_sigmoid_mask_shape_monotonic_and_ends():
    np.random.seed(0)
    mixer = SigmoidConcatMixer(sigmoid_range=(3, 12))
    ends = set()
    for _ in range(200):
        mask = mixer.sample_mask(256)
        assert mask.shape == (256,) and mask.dtype == torch.float32
        assert (mask[1:] > mask[:-1]).all()  # strictly increasing ramp
        r = float(-torch.logit(mask[0].double()).round())  # the ramp starts at exactly -r
        assert 3 <= r <= 12
        # frame W/2 is exactly 0 on the ramp, and the ramp ends one step (2r/W) short of +r
        assert float(mask[128]) == 0.5
        torch.testing.assert_close(mask[-1], torch.sigmoid(torch.tensor(r - 2 * r / 256)))
        # symmetric about frame W/2: mask[W/2 - i] + mask[W/2 + i] == 1
        torch.testing.assert_close(mask[1:128] + mask[129:].flip(0), torch.ones(127))
        ends.add(r)
    assert ends == set(range(3, 13))  # inclusive integer range, all values drawn


@pytest.mark.parametrize("width", [256, 64, 37])
@pytest.mark.parametrize("radius", [3, 7, 12])
def test_sigmoid_mask_is_the_original_arange_ramp(radius, width):
    mixer = SigmoidConcatMixer(sigmoid_range=(radius, radius))
    mask = mixer.sample_mask(width, dtype=torch.float64)
    torch.testing.assert_close(mask, original_mask(radius, width), rtol=0, atol=1e-12)
    # not the linspace that ends at +r (the ramp before this fix)
    linspace_mask = torch.sigmoid(torch.linspace(-radius, radius, width, dtype=torch.float64))
    assert (mask - linspace_mask).abs().max() > 1e-4


def test_sigmoid_concat_image_is_convex_combination():
    np.random.seed(1)
    dataset = FakeDataset()
    image, target = sample_a()
    mixer = SigmoidConcatMixer((5, 5))
    mixed, mixed_target = mixer(dataset, image, target)
    assert mixed.shape == image.shape and dataset.calls == 1
    mask = original_mask(5, 32).float()
    expected = mask * 4.0 + (1 - mask) * -2.0
    torch.testing.assert_close(mixed, expected.expand(3, 8, 32))
    # image a (value 4) on the right, image b (value -2) on the left
    assert mixed[..., -1].min() > 3.9 and mixed[..., 0].max() < -1.9
    # target = clamp(ta + tb): class 1 is in both -> 1, not 2
    torch.testing.assert_close(mixed_target, torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]))


def test_sigmoid_concat_rejects_bad_range():
    with pytest.raises(ValueError, match="sigmoid_range"):
        SigmoidConcatMixer((12, 3))


# ---------------------------------------------------------------- add

def test_add_mixer_alpha_range_and_combination():
    np.random.seed(2)
    mixer = AddMixer(alpha_dist=(0.0, 0.5))
    alphas = np.array([mixer.sample_alpha() for _ in range(2000)])
    assert alphas.min() >= 0.0 and alphas.max() <= 0.5
    assert abs(alphas.mean() - 0.25) < 0.02

    dataset = FakeDataset()
    image, target = sample_a()
    for _ in range(20):
        mixed, mixed_target = mixer(dataset, image, target)
        # image = (1 - alpha) * 4 + alpha * (-2) -> recover alpha
        alpha = (4.0 - mixed[0, 0, 0].item()) / 6.0
        assert 0.0 <= alpha <= 0.5 + 1e-6
        torch.testing.assert_close(mixed, torch.full_like(image, (1 - alpha) * 4.0 - 2.0 * alpha))
        # target likewise: class 0 only in a, class 1 in both, class 2 only in b
        torch.testing.assert_close(mixed_target, torch.tensor([1 - alpha, 1.0, alpha, 0.0, 0.0]),
                                   atol=1e-5, rtol=0)


# ---------------------------------------------------------------- composition

class Tag:
    """Mixer that marks which one was used in the target."""

    def __init__(self, value):
        self.value = value

    def __call__(self, dataset, image, target):
        return image, torch.tensor(float(self.value))

    def __repr__(self):
        return f"Tag({self.value})"


def test_random_mixer_frequencies():
    np.random.seed(0)
    mixer = RandomMixer([Tag(0), Tag(1)], p=[0.6, 0.4])
    n = 5000
    ones = sum(int(mixer(None, None, None)[1]) for _ in range(n))
    assert_binomial(ones, n, 0.4)
    assert repr(mixer) == "RandomMixer([Tag(0), Tag(1)], p=[0.6, 0.4])"


def test_use_mixer_with_prob_frequency():
    np.random.seed(0)
    mixer = UseMixerWithProb(Tag(1), prob=0.8)
    n = 5000
    applied = sum(mixer(None, None, torch.tensor(0.0))[1].item() == 1.0 for _ in range(n))
    assert_binomial(applied, n, 0.8)


def test_get_mixer():
    assert get_mixer(0) is None
    mixer = get_mixer(0.8, sigmoid_range=(3, 12), alpha_range=(0, 0.5), p=(0.6, 0.4))
    assert isinstance(mixer, UseMixerWithProb) and mixer.prob == 0.8
    inner = mixer.mixer
    assert isinstance(inner, RandomMixer)
    assert [type(m) for m in inner.mixers] == [SigmoidConcatMixer, AddMixer]
    np.testing.assert_allclose(inner.p, [0.6, 0.4])
    assert "SigmoidConcatMixer(sigmoid_range=(3, 12))" in repr(mixer)
    # end to end: shapes kept, targets stay within [0, 1]
    np.random.seed(0)
    dataset = FakeDataset(shape=(3, 128, 256))
    for _ in range(20):
        image, target = mixer(dataset, *sample_a(shape=(3, 128, 256)))
        assert image.shape == (3, 128, 256)
        assert target.min() >= 0 and target.max() <= 1
