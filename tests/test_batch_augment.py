"""Device-side batch augmentation (src/augment/batch.py) against the per-sample reference path.

The distribution tests draw many parameters from both paths (the per-sample classes are
wrapped to record what they draw) and compare them with two-sample tests under fixed seeds;
the equality tests apply both paths to the same drawn parameters.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.utils._python_dispatch import TorchDispatchMode

from src.augment import batch as batch_augment_module
from src.train.argus_model import FreesoundModel, argus_params
from src.augment.batch import (
    BatchAugment, create_batch_augment, mix, resized_crop, sample_crop_boxes, sample_partners, spec_augment,
)
from src.augment.settings import TRANSFORM_KEYS, augment_mode, batch_augment_params
from src.data.datasets import RawCropDataset, build_train_dataset, make_loader
from src.experiments import BASE, get_experiment
from src.augment.mixers import AddMixer, SigmoidConcatMixer, get_mixer
from src.augment.transforms import ImageToTensor, PadToSize, RandomResizedCrop, SpecAugment, get_transforms

H, W = 128, 256
P_MIN = 1e-3  # two-sample tests: the paths must not be distinguishable at this level (fixed seeds)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small tensors (tests/conftest.py)

# The distribution tests draw on each device: on CUDA, torch's GPU generator must give the same
# distributions as the CPU one (run by `pytest -m cuda`, e.g. from bench/gpu_check.sh).
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]


def images_batch(n, frames=W, seed=0):
    return -100.0 * torch.rand(n, H, frames, generator=torch.Generator().manual_seed(seed))


def assert_binomial(count, n, p, sigmas=4.0):
    std = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= sigmas * std, (count, n * p, std)


def assert_same_rate(k1, n1, k2, n2):
    """Two proportions equal (two-sided z-test, p > P_MIN)."""
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    assert stats.chi2_contingency(table).pvalue > P_MIN, table


def assert_same_discrete(a, b):
    """Same distribution of integer values (chi-square over the values seen >= 10 times)."""
    a, b = np.asarray(a, int), np.asarray(b, int)
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    table = table[:, table.sum(0) >= 10]
    assert stats.chi2_contingency(table).pvalue > P_MIN, (values, table)


def assert_same_continuous(a, b):
    assert stats.ks_2samp(a, b).pvalue > P_MIN


def batch_params(augment, n_draws, batch=2000, noisy=None, seed=0, device="cpu"):
    """Concatenated BatchAugment.sample draws (n_draws batches of `batch`) made on `device`, on the CPU."""
    torch.manual_seed(seed)
    noisy = torch.zeros(batch) if noisy is None else noisy
    draws = [augment.sample(noisy.to(device), H, W) for _ in range(n_draws)]
    assert all(d["resize"].device.type == torch.device(device).type for d in draws)
    return {key: torch.cat([d[key] for d in draws]).cpu() for key in draws[0]}


@pytest.fixture
def recorder(monkeypatch):
    """Wrap the per-sample classes so every random choice they make is recorded."""
    log = {"boxes": [], "bands": [], "spec_calls": 0, "pads": [], "radius": [], "alpha": []}

    get_params = RandomResizedCrop.get_params
    def recording_get_params(self, height, width):
        box = get_params(self, height, width)
        log["boxes"].append(box)
        return box
    monkeypatch.setattr(RandomResizedCrop, "get_params", recording_get_params)

    band = SpecAugment._band
    def recording_band(total, max_fraction):
        start, stop = band(total, max_fraction)
        log["bands"].append((log["spec_calls"], total, start, stop - start))
        return start, stop
    monkeypatch.setattr(SpecAugment, "_band", staticmethod(recording_band))

    spec_call = SpecAugment.__call__
    def recording_spec_call(self, image):
        log["spec_calls"] += 1
        return spec_call(self, image)
    monkeypatch.setattr(SpecAugment, "__call__", recording_spec_call)

    pad_call = PadToSize.__call__
    def recording_pad_call(self, image):
        if image.shape[1] < self.size:
            log["pads"].append(self.mode)
        return pad_call(self, image)
    monkeypatch.setattr(PadToSize, "__call__", recording_pad_call)

    sample_mask = SigmoidConcatMixer.sample_mask
    def recording_sample_mask(self, width, dtype=torch.float32):
        mask = sample_mask(self, width, dtype=torch.float64)
        log["radius"].append(round(float(-torch.logit(mask[0]))))  # mask[0] = sigmoid(-radius)
        return mask.to(dtype)
    monkeypatch.setattr(SigmoidConcatMixer, "sample_mask", recording_sample_mask)

    sample_alpha = AddMixer.sample_alpha
    def recording_sample_alpha(self):
        alpha = sample_alpha(self)
        log["alpha"].append(alpha)
        return alpha
    monkeypatch.setattr(AddMixer, "sample_alpha", recording_sample_alpha)
    return log


class PartnerStub:
    """Mixer partner source for the per-sample mixers: always returns the given pair."""

    def __init__(self, image, target):
        self.pair = (image, target)

    def random_sample(self):
        return self.pair


# ---------------------------------------------------------------- shapes

def test_no_augmentation_gives_image_to_tensor_output():
    # With every probability 0 the batch path is exactly ImageToTensor per image.
    x = images_batch(4)
    augment = BatchAugment(resize_prob=0, spec_prob=0, mixer_prob=0)
    targets = torch.eye(4, 6)
    out, out_targets, _ = augment(x, targets, torch.zeros(4))
    expected = torch.stack([ImageToTensor()(image.numpy()) for image in x])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    assert torch.equal(out_targets, targets)


@pytest.mark.parametrize("height, frames", [(128, 256), (64, 128)])
def test_shapes_dtypes_on_cpu(height, frames):
    x = -100 * torch.rand(8, height, frames)
    targets = torch.zeros(8, 80)
    targets[torch.arange(8), torch.arange(8)] = 1
    noisy = torch.tensor([0, 1] * 4, dtype=torch.float32)
    out, out_targets, out_noisy = BatchAugment()(x, targets, noisy)
    assert out.shape == (8, 3, height, frames) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert out_targets.shape == (8, 80) and out_targets.dtype == torch.float32
    assert out_targets.min() >= 0 and out_targets.max() <= 1
    assert out_noisy is noisy
    assert torch.isfinite(out).all()


def test_rejects_bad_inputs_and_settings():
    with pytest.raises(ValueError, match="raw crops"):
        BatchAugment()(torch.zeros(2, 3, H, W), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="mixer_prob"):
        BatchAugment(mixer_prob=1.5)
    with pytest.raises(ValueError, match="sigmoid_range"):
        BatchAugment(sigmoid_range=(0, 3))
    with pytest.raises(ValueError, match="augment"):
        augment_mode({"augment": "gpu"})


def test_cpu_and_accelerator_code_paths_agree(monkeypatch):
    # CPU: chunks of rows, resampling only the chosen rows, banded deltas; accelerator: whole-batch ops.
    x, noisy = images_batch(40), (torch.arange(40) % 3 == 0).float()
    targets = F.one_hot(torch.arange(40) % 7, 7).float()
    augment = BatchAugment(mixer_prob=0.9)
    params = augment.sample(noisy, H, W)
    assert 0 < int(params["resize"].sum()) < 40 and int(params["mixed"].sum()) > 20
    host = augment.apply(x, targets, params)
    monkeypatch.setattr(batch_augment_module, "_on_host", lambda tensor: False)
    device = augment.apply(x, targets, params)
    torch.testing.assert_close(host[0], device[0], rtol=0, atol=1e-5)
    assert torch.equal(host[1], device[1])
    assert torch.equal(x, images_batch(40))  # the input batch is left untouched


# ---------------------------------------------------------------- resized crop

@pytest.mark.parametrize("name, resizes", [("corrections_002", False), ("corrections_003", False),
                                           ("auxiliary_016", True)])
def test_no_resized_crop_in_corrections_002_and_003(monkeypatch, name, resizes):
    # Both were trained before the resized crop existed: pad -> crop -> SpecAugment -> tensor.
    experiment = get_experiment(name)
    transforms = dict(experiment["transforms"], spec_prob=0.0)  # leave only pad, crop and resized crop
    image = images_batch(1)[0].numpy()                          # 256 frames: pad and crop change nothing
    # Per-sample path: no resized-crop step in the pipeline, so every output is the plain tensor.
    pipeline = get_transforms(train=True, size=experiment["crop_size"], **transforms)
    assert any(isinstance(getattr(t, "transform", t), RandomResizedCrop) for t in pipeline.transforms) == resizes
    np.random.seed(0)
    plain = ImageToTensor()(image)
    unchanged = [torch.equal(pipeline(image), plain) for _ in range(60)]
    assert all(unchanged) != resizes
    # Device path, on both its host and accelerator branches: never resamples, output = plain tensor.
    calls = []
    real = batch_augment_module.resized_crop
    monkeypatch.setattr(batch_augment_module, "resized_crop", lambda *args: calls.append(1) or real(*args))
    augment = BatchAugment(**{k: v for k, v in transforms.items() if k in TRANSFORM_KEYS},
                           mixer_prob=0.0)
    x = images_batch(64)
    expected = torch.stack([ImageToTensor()(row.numpy()) for row in x])
    for on_host in (True, False):
        monkeypatch.setattr(batch_augment_module, "_on_host", lambda tensor, on_host=on_host: on_host)
        out, _, _ = augment(x, torch.zeros(64, 5), torch.zeros(64))
        assert torch.allclose(out, expected, atol=1e-5) != resizes
    assert bool(calls) == resizes
    # The experiment's own batch augmentation draws no resized crop either.
    assert bool(batch_params(create_batch_augment(experiment), 2)["resize"].any()) == resizes


def test_resized_crop_equals_reference_for_same_box(monkeypatch):
    x = images_batch(4)
    boxes = [(0, 0, 128, 256), (3, 7, 110, 240), (20, 2, 96, 200), (10, 30, 105, 226)]
    top, left, h, w = (torch.tensor([b[i] for b in boxes], dtype=torch.float32) for i in range(4))
    out = resized_crop(x, top, left, h, w)
    for i, box in enumerate(boxes):
        monkeypatch.setattr(RandomResizedCrop, "get_params", lambda self, height, width, box=box: box)
        reference = RandomResizedCrop()(x[i].numpy())
        # grid_sample normalises coordinates to [-1, 1] in float32: ~1e-5 relative error on dB values.
        np.testing.assert_allclose(out[i].numpy(), reference, rtol=0, atol=5e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale, ratio", [((0.8, 1.0), (1.7, 2.3)), ((0.5, 1.0), (1.5, 3.0))])
def test_crop_boxes_distributed_like_torchvision_sampler(scale, ratio, device):
    # The second setting rejects many attempts, so it also checks the "first fitting attempt" rule.
    np.random.seed(0)
    reference = RandomResizedCrop(scale=scale, ratio=ratio)
    ref = np.array([reference.get_params(H, W) for _ in range(4000)], dtype=float)  # top, left, h, w
    generator = torch.Generator(device).manual_seed(0)
    top, left, h, w = (t.double().cpu().numpy() for t in sample_crop_boxes(20000, H, W, scale, ratio, device,
                                                                     generator=generator))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= H).all() and (left + w <= W).all()
    area, aspect = h * w / (H * W), w / h
    ref_area, ref_aspect = ref[:, 2] * ref[:, 3] / (H * W), ref[:, 3] / ref[:, 2]
    assert_same_continuous(area, ref_area)
    assert_same_continuous(aspect, ref_aspect)
    assert_same_discrete(h, ref[:, 2])  # integer box sizes, rounded like Python's round()
    assert_same_discrete(w, ref[:, 3])
    # The box sizes are rounded, so allow one pixel of slack around the sampled ranges.
    assert area.min() >= scale[0] - 2 / 128 and area.max() <= 1.0
    assert aspect.min() >= ratio[0] - 0.03 and aspect.max() <= ratio[1] + 0.03
    # Positions: uniform over the valid offsets.
    assert_same_continuous(top / np.maximum(H - h, 1), ref[:, 0] / np.maximum(H - ref[:, 2], 1))
    assert_same_continuous(left / np.maximum(W - w, 1), ref[:, 1] / np.maximum(W - ref[:, 3], 1))


def test_crop_box_fallback_is_reference_centre_crop():
    # No attempt can fit (ratio 3-4 with ~the full area is wider than 256): centre crop, as torchvision.
    np.random.seed(0)
    expected = RandomResizedCrop(scale=(0.95, 1.0), ratio=(3.0, 4.0)).get_params(H, W)
    boxes = torch.stack(sample_crop_boxes(50, H, W, (0.95, 1.0), (3.0, 4.0)), dim=1)
    assert expected == (21, 0, 85, 256)
    assert (boxes == torch.tensor(expected, dtype=boxes.dtype)).all()


# ---------------------------------------------------------------- SpecAugment

@pytest.mark.parametrize("device", DEVICES)
def test_spec_augment_band_widths_and_rounds_match(recorder, device):
    np.random.seed(0)
    reference = SpecAugment(num_masks=2, freq_masking=0.15, time_masking=0.20)
    image = np.zeros((H, W), np.float32)
    for _ in range(3000):
        reference(image)
    bands = np.array(recorder["bands"])  # (call, total, start, width)
    freq, time = bands[bands[:, 1] == H], bands[bands[:, 1] == W]
    ref_rounds = np.bincount(freq[:, 0].astype(int))[1:]

    params = batch_params(BatchAugment(spec_num_mask=2, spec_freq_masking=0.15, spec_time_masking=0.20), 5,
                          device=device)
    active = params["spec_active"].numpy()
    assert_same_discrete(params["spec_rounds"].numpy(), ref_rounds)
    freq_width, time_width = params["freq_width"].numpy()[active], params["time_width"].numpy()[active]
    assert_same_discrete(freq_width, freq[:, 3])
    assert_same_discrete(time_width, time[:, 3])
    # Same extreme widths: int(0.15 * 128) = 19 mel bins, int(0.2 * 256) = 51 frames.
    assert freq_width.max() == freq[:, 3].max() == 19 and time_width.max() == time[:, 3].max() == 51
    assert freq_width.min() == 0 and time_width.min() == 0
    freq_start, time_start = params["freq_start"].numpy()[active], params["time_start"].numpy()[active]
    assert (freq_start + freq_width <= H).all() and (time_start + time_width <= W).all()
    assert_same_continuous(freq_start / (H - freq_width), freq[:, 2] / (H - freq[:, 3]))


def test_spec_augment_masks_bands_with_image_minimum():
    x = images_batch(2)
    freq_start, freq_width = torch.tensor([[5.0, 40.0], [0.0, 100.0]]), torch.tensor([[3.0, 2.0], [4.0, 19.0]])
    time_start, time_width = torch.tensor([[10.0, 200.0], [250.0, 0.0]]), torch.tensor([[5.0, 51.0], [6.0, 7.0]])
    active = torch.tensor([[True, False], [True, True]])  # image 0: one round, image 1: two
    out = spec_augment(x, freq_start, freq_width, time_start, time_width, active)
    for i in range(2):
        rows, cols = np.zeros(H, bool), np.zeros(W, bool)
        for r in range(2):
            if active[i, r]:
                f0, t0 = int(freq_start[i, r]), int(time_start[i, r])
                rows[f0:f0 + int(freq_width[i, r])] = True
                cols[t0:t0 + int(time_width[i, r])] = True
        masked = rows[:, None] | cols[None, :]
        expected = np.where(masked, x[i].numpy().min(), x[i].numpy())
        np.testing.assert_array_equal(out[i].numpy(), expected)
    assert not torch.equal(out[0, 40:42], torch.full_like(out[0, 40:42], float(x[0].min())))  # round 2 off


# ---------------------------------------------------------------- pipeline-level rates

@pytest.mark.parametrize("device", DEVICES)
def test_application_rates_match_per_sample_pipeline(recorder, device):
    np.random.seed(0)
    transform = get_transforms(train=True, size=64)  # the same steps; a narrow crop keeps it fast
    short_clip = -100 * np.random.rand(H, 40).astype(np.float32)
    n = 3000
    for _ in range(n):
        transform(short_clip)
    params = batch_params(BatchAugment(), 5, device=device)
    m = len(params["resize"])
    assert_same_rate(len(recorder["boxes"]), n, int(params["resize"].sum()), m)   # RandomResizedCrop, p 0.33
    assert_same_rate(recorder["spec_calls"], n, int(params["spec"].sum()), m)      # SpecAugment, p 0.5
    assert_binomial(int(params["resize"].sum()), m, 0.33)
    assert_binomial(int(params["spec"].sum()), m, 0.5)


@pytest.mark.parametrize("wrap_pad_prob", [0.5, 0.2])
def test_raw_crops_pad_modes_and_windows(recorder, wrap_pad_prob):
    np.random.seed(1)
    # Distinct values per frame; a short clip (always padded) and a long, read-only one (cropped).
    short = np.tile(-np.arange(1, 101, dtype=np.float32), (H, 1))
    long = np.tile(-np.arange(1, 401, dtype=np.float32), (H, 1))
    long.flags.writeable = False
    dataset = RawCropDataset([short, long], np.eye(2, 3, dtype=np.float32), size=W,
                             wrap_pad_prob=wrap_pad_prob, noisy=True)
    n, wraps = 2000, 0
    for _ in range(n):
        crop, target, flag = dataset[0]
        assert crop.shape == (H, W) and crop.dtype == torch.float32 and float(flag) == 1.0
        # Constant padding fills with the clip minimum (-100) on both sides; wrap repeats the clip.
        left = (W - 100) // 2
        wrapped = crop[0, left - 1] == -100 and crop[0, left + 100] == -1
        constant = (crop[0, :left] == -100).all() and (crop[0, left + 100:] == -100).all()
        assert wrapped != constant
        wraps += int(wrapped)
    assert_binomial(wraps, n, wrap_pad_prob)
    assert recorder["pads"].count("wrap") == wraps  # the same PadToSize steps as the per-sample path
    starts = []
    for _ in range(500):
        crop = dataset[1][0][0].numpy()
        start = int(-crop[0]) - 1
        np.testing.assert_array_equal(crop, -np.arange(start + 1, start + W + 1))  # a contiguous window
        starts.append(start)
    assert min(starts) >= 0 and max(starts) <= 400 - W and len(set(starts)) > 50


# ---------------------------------------------------------------- mixers

@pytest.mark.parametrize("device", DEVICES)
def test_mixer_rates_choice_radius_and_alpha_match(recorder, device):
    np.random.seed(0)
    mixer = get_mixer(0.8, (3, 12), (0.0, 0.5), (0.6, 0.4))
    stub = PartnerStub(torch.zeros(1, 1, 8), torch.zeros(3))
    n = 5000
    for _ in range(n):
        mixer(stub, torch.zeros(1, 1, 8), torch.zeros(3))
    n_sigmoid, n_add = len(recorder["radius"]), len(recorder["alpha"])

    params = batch_params(BatchAugment(mixer_prob=0.8, mixer_choice=(0.6, 0.4)), 5, device=device)
    mixed, sigmoid = params["mixed"], params["use_sigmoid"]
    m = len(mixed)
    assert params["has_partner"].all()
    assert_same_rate(n_sigmoid + n_add, n, int(mixed.sum()), m)
    assert_same_rate(n_sigmoid, n_sigmoid + n_add, int((mixed & sigmoid).sum()), int(mixed.sum()))
    assert_binomial(int(mixed.sum()), m, 0.8)
    radius = params["radius"][mixed & sigmoid].numpy()
    assert set(radius.astype(int)) == set(recorder["radius"]) == set(range(3, 13))
    assert_same_discrete(radius, recorder["radius"])
    alpha = params["alpha"][mixed & ~sigmoid].numpy()
    assert alpha.min() >= 0 and alpha.max() < 0.5
    assert_same_continuous(alpha, recorder["alpha"])


def test_mixing_equals_reference_mixers():
    torch.manual_seed(0)
    inputs = torch.randn(4, 3, 8, 16)
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    partner = torch.tensor([1, 0, 3, 2])
    params = {"radius": torch.tensor([5.0, 3.0, 12.0, 7.0]), "alpha": torch.tensor([0.3, 0.1, 0.45, 0.2]),
              "use_sigmoid": torch.tensor([True, False, True, False]),
              "mixed": torch.tensor([True, True, True, False])}
    weight = BatchAugment().mix_weight(params, 16)
    out, out_targets = mix(inputs, targets, partner, weight, params["use_sigmoid"], params["alpha"],
                           params["mixed"])
    for i in range(4):
        stub = PartnerStub(inputs[partner[i]], targets[partner[i]])
        if not params["mixed"][i]:
            expected = (inputs[i], targets[i])
        elif params["use_sigmoid"][i]:
            r = int(params["radius"][i])
            expected = SigmoidConcatMixer((r, r))(stub, inputs[i], targets[i])
        else:
            a = float(params["alpha"][i])
            expected = AddMixer((a, a))(stub, inputs[i], targets[i])
        torch.testing.assert_close(out[i], expected[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(out_targets[i], expected[1], rtol=0, atol=1e-6)
    # Target sums by hand: sigmoid concat clamp(ta + tb), add (1 - a) ta + a tb, unmixed ta.
    torch.testing.assert_close(out_targets[0], torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(out_targets[1], torch.tensor([0.1, 0.9, 0.0]))
    torch.testing.assert_close(out_targets[2], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(out_targets[3], targets[3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("width", [256, 64])
def test_sigmoid_weight_is_the_original_arange_ramp(device, width):
    # The 2019 mask, from its definition: sigmoid(np.arange(-r, r, 2r/W)); frame W/2 is exactly 0.5.
    radius = torch.arange(3, 13, dtype=torch.float32, device=device)
    n = len(radius)
    params = {"radius": radius, "alpha": torch.zeros(n, device=device),
              "use_sigmoid": torch.ones(n, dtype=torch.bool, device=device),
              "mixed": torch.ones(n, dtype=torch.bool, device=device)}
    weight = BatchAugment().mix_weight(params, width).cpu().double()
    for row, r in zip(weight, range(3, 13)):
        expected = 1.0 / (1.0 + np.exp(-np.arange(-r, r, 2 * r / width)))
        np.testing.assert_allclose(row.numpy(), expected, rtol=0, atol=1e-6)
        assert float(row[width // 2]) == 0.5
    # and the per-sample mixer draws the same mask for the same radius
    for r in (3, 12):
        torch.testing.assert_close(SigmoidConcatMixer((r, r)).sample_mask(width).to(device),
                                   BatchAugment().mix_weight({**params, "radius": torch.full((n,), float(r),
                                                                                            device=device)},
                                                             width)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_partners_stay_within_noisy_group_and_are_uniform(device):
    noisy = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 1, 0], dtype=torch.float32, device=device)
    generator = torch.Generator(device).manual_seed(0)
    counts = np.zeros(10, int)
    for _ in range(2000):
        partner, has_partner = sample_partners(noisy, generator)
        assert has_partner.all()
        assert torch.equal(noisy[partner], noisy)  # never across the curated/noisy groups
        assert (partner.cpu() != torch.arange(10)).all()
        counts[int(partner[0])] += 1
    # Element 0's partner: uniform over the 6 other curated elements.
    others = [2, 3, 5, 6, 7, 9]
    assert counts[[1, 4, 8, 0]].sum() == 0
    assert stats.chisquare(counts[others]).pvalue > P_MIN

    # Alone in its group: no partner, so never mixed.
    lone = torch.tensor([0, 0, 1, 0], dtype=torch.float32)
    partner, has_partner = sample_partners(lone)
    assert has_partner.tolist() == [True, True, False, True] and int(partner[2]) == 2
    params = BatchAugment(mixer_prob=1.0).sample(lone, H, W)
    assert params["mixed"].tolist() == [True, True, False, True]


def test_mixed_batches_never_combine_noisy_and_curated():
    # Curated clips carry classes 0-3, noisy ones 4-7: a mixed target must stay inside one group.
    torch.manual_seed(0)
    noisy = (torch.rand(64) < 0.3).float()
    labels = torch.where(noisy > 0, 4 + torch.arange(64) % 4, torch.arange(64) % 4)
    targets = F.one_hot(labels, 8).float()
    _, out_targets, out_noisy = BatchAugment(mixer_prob=1.0)(images_batch(64), targets, noisy)
    assert torch.equal(out_noisy, noisy)
    assert (out_targets[noisy == 0][:, 4:] == 0).all() and (out_targets[noisy == 1][:, :4] == 0).all()
    assert ((out_targets > 0).sum(1) >= 2).float().mean() > 0.5  # most samples were really mixed


# ---------------------------------------------------------------- factory, wiring

def test_create_batch_augment_from_experiment():
    experiment = get_experiment("auxiliary_019")
    augment = create_batch_augment(experiment)
    assert augment.resize_scale == (0.75, 1.0) and augment.resize_ratio == (1.6, 2.4)
    assert augment.mixer_prob == 0.8 and augment.mixer_choice == (0.6, 0.4) and augment.sigmoid_range == (3, 12)
    assert augment.spec_num_mask == 2 and augment.spec_prob == 0.5
    assert "resize_scale=(0.75, 1.0)" in repr(augment) and repr(augment).startswith("BatchAugment(")
    # The params subset is plain data and builds the same object.
    params = batch_augment_params(experiment)
    assert copy.deepcopy(params) == params
    assert repr(create_batch_augment(params)) == repr(augment)


def test_augment_setting_selects_the_path():
    assert BASE["augment"] == "sample" and BASE["channels_last"] is False and BASE["compile"] is False
    experiment = get_experiment("demo")
    experiment["augment"] = "sample"
    assert argus_params(experiment, 5, "cpu")["batch_augment"] is None
    experiment["augment"] = "device"
    params = argus_params(experiment, 5, "cpu")
    assert params["batch_augment"]["mixer_prob"] == experiment["mixer_prob"]
    model = FreesoundModel(params)
    assert isinstance(model.batch_augment, BatchAugment)
    assert model.batch_augment.mixer_prob == experiment["mixer_prob"]


def stripe_data(n_clips, seed=0):
    """Two-label clips: horizontal and/or vertical stripes (8-pixel period) on a noise floor.
    Local textures, so a small CNN learns them through crops, masks and mixing."""
    rng = np.random.default_rng(seed)
    labels = np.stack([np.arange(n_clips) % 2, np.arange(n_clips) // 2 % 2], axis=1).astype(np.float32)
    specs = []
    for horizontal, vertical in labels:
        frames = int(rng.integers(40, 200))
        spec = rng.uniform(-80, -70, size=(H, frames)).astype(np.float32)
        if horizontal:
            spec[(np.arange(H) // 4) % 2 == 1] += 30
        if vertical:
            spec[:, (np.arange(frames) // 4) % 2 == 1] += 30
        specs.append(spec)
    return specs, labels


def tiny_experiment(**changes):
    experiment = get_experiment("demo")
    experiment.update(model=("SimpleKaggle", {"base_size": 4, "dropout": 0.0}),
                      loss=("bce", {}), optimizer=("Adam", {"lr": 0.01}), crop_size=64, augment="sample")
    experiment.update(changes)
    return experiment


def test_tiny_training_run_with_device_augmentation_learns():
    torch.manual_seed(0)
    np.random.seed(0)
    experiment = tiny_experiment(augment="device")
    dataset = build_train_dataset(stripe_data(40), noisy=stripe_data(20, seed=1), noisy_prob=0.3,
                                  epoch_size=16 * 30, raw_crop={"size": 64, "wrap_pad_prob": 0.5})
    model = FreesoundModel(argus_params(experiment, 2, "cpu"))
    losses = []
    for input, target, noisy in make_loader(dataset, 16, shuffle=True, seed=0, drop_last=True):
        assert input.shape == (16, H, 64)  # raw crops; the model augments them
        losses.append(float(model.train_step((input, target, noisy), None)["loss"]))
    assert len(losses) == 30
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:3]), losses


# ---------------------------------------------------------------- model step

def test_train_step_channels_last_and_no_host_sync(monkeypatch):
    # The accelerator code path (fixed shapes, no reading back), run on CPU tensors.
    monkeypatch.setattr(batch_augment_module, "_on_host", lambda tensor: False)
    experiment = tiny_experiment(augment="device", channels_last=True, compile=False)
    model = FreesoundModel(argus_params(experiment, 4, "cpu"))
    seen = []
    model.nn_module.register_forward_pre_hook(
        lambda module, args: seen.append((args[0].shape, args[0].is_contiguous(memory_format=torch.channels_last))))
    conv = next(m for m in model.nn_module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)

    # Record every op of the step; outside optimizer.step (CPU Adam reads its step count with .item()),
    # none may read a value back to the host or produce a data-dependent shape.
    class OpRecorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.in_optimizer = [], False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not self.in_optimizer:
                self.ops.append(func.name())
            return func(*args, **(kwargs or {}))

    recorder = OpRecorder()
    step = model.optimizer.step
    def optimizer_step(*args, **kwargs):
        recorder.in_optimizer = True
        try:
            return step(*args, **kwargs)
        finally:
            recorder.in_optimizer = False
    model.optimizer.step = optimizer_step

    batch = (-100 * torch.rand(16, H, 64), torch.eye(4)[torch.arange(16) % 4], torch.tensor([0.0, 1.0] * 8))
    before = [p.detach().clone() for p in model.nn_module.parameters()]
    with recorder:
        output = model.train_step(batch, None)
    assert seen == [((16, 3, H, 64), True)]
    assert isinstance(output["loss"], torch.Tensor) and output["loss"].ndim == 0
    assert not output["loss"].requires_grad and torch.isfinite(output["loss"])
    assert output["prediction"].shape == (16, 4) and output["target"].shape == (16, 4)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.nn_module.parameters()))
    assert any("convolution_backward" in op for op in recorder.ops)  # backward was recorded too
    syncing = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique",
               "aten::_unique2", "aten::item"}
    assert not syncing & set(recorder.ops), syncing & set(recorder.ops)


def test_compile_wraps_the_network_for_the_train_step(monkeypatch):
    compiled = []
    def fake_compile(module):
        compiled.append(module)
        return lambda input: module(input)
    monkeypatch.setattr(torch, "compile", fake_compile)
    model = FreesoundModel(argus_params(tiny_experiment(compile=True), 4, "cpu"))
    batch = (-100 * torch.rand(4, 3, H, 64), torch.eye(4), torch.zeros(4))
    model.train_step(batch, None)
    model.train_step(batch, None)
    assert compiled == [model.nn_module]  # compiled once, the plain module keeps the weights
    assert not any(key.startswith("_orig_mod") for key in model.nn_module.state_dict())


def test_fused_adam_on_cuda_only():
    model = FreesoundModel(argus_params(tiny_experiment(), 4, "cpu"))
    meta = model._meta["optimizer"]
    assert not model.optimizer.defaults.get("fused")
    model.params["device"] = "cuda"  # what argus_params gives on a GPU machine
    assert model.build_optimizer(meta, ("Adam", {"lr": 0.1})).defaults["fused"] is True
    assert model.build_optimizer(meta, ("AdamW", {"lr": 0.1})).defaults["fused"] is True
    assert not model.build_optimizer(meta, ("Adam", {"lr": 0.1, "fused": False})).defaults["fused"]
    assert "fused" not in model.build_optimizer(meta, ("SGD", {"lr": 0.1})).defaults or \
        not model.build_optimizer(meta, ("SGD", {"lr": 0.1})).defaults.get("fused")
