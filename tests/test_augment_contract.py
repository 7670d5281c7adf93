"""One contract for the two augmentation paths: shared parameter checks (src/augment/checks.py),
one pad-and-crop, one builder of an experiment's training stream, and torch-free experiment tables."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src.augment.batch import BatchAugment
from src.augment.checks import (check_delta_width, check_int_range, check_positive_int, check_prob, check_range,
                                check_resize_box, normalise_probs)
from src.augment.mixers import SigmoidConcatMixer, UseMixerWithProb, get_mixer
from src.augment.settings import raw_crop_settings
from src.augment.transforms import ImageToTensor, RandomResizedCrop, get_transforms, pad_and_crop
from src.data.datasets import (ClipDataset, RawCropDataset, build_train_dataset, experiment_train_dataset,
                               experiment_val_dataset)
from src.experiments import get_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_experiment_tables_imports_no_torch():
    code = "import src.experiments, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("src"):
                offenders += [f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
                              for alias in node.names if alias.name.startswith("_")]
    assert not offenders


# ---------------------------------------------------------------- checks

def test_checks_return_the_stored_form():
    assert check_positive_int(np.int64(3), "n") == 3 and type(check_positive_int(np.int64(3), "n")) is int
    assert check_prob(1, "p") == 1.0 and isinstance(check_prob(1, "p"), float)
    assert check_range([0, 1], "r", low=0, high=1) == (0.0, 1.0)
    assert check_int_range((3.0, 12), "s") == (3, 12)
    assert check_resize_box([0.8, 1], (1.7, 2.3), "scale", "ratio") == ((0.8, 1.0), (1.7, 2.3))
    assert check_delta_width(9, "x") == 9
    np.testing.assert_allclose(normalise_probs([3, 1], 2, "p"), [0.75, 0.25])
    np.testing.assert_allclose(normalise_probs(None, 4, "p"), [0.25] * 4)


@pytest.mark.parametrize("check, args, message", [
    (check_positive_int, (0, "PadToSize size"), "PadToSize size must be a positive integer"),
    (check_positive_int, (True, "n"), "positive integer"),
    (check_positive_int, (2.0, "n"), "positive integer"),
    (check_prob, (1.5, "mixer_prob"), r"mixer_prob must be a probability in \[0, 1\]"),
    (check_prob, (-0.1, "p"), "probability"),
    (check_range, ((1.0, 0.5), "alpha"), "min <= max"),
    (check_range, ((0.0, 1.5), "scale", 0.0, 1.0), r"within \[0.0, 1.0\]"),
    (check_range, ((0.1, 0.2, 0.3), "r"), "pair"),
    (check_int_range, ((3.5, 12), "sigmoid_range"), "positive integers"),
    (check_int_range, ((0, 12), "sigmoid_range"), "positive integers"),
    (check_int_range, ((12, 3), "sigmoid_range"), "min <= max"),
    (check_resize_box, ((0.0, 0.0), (1.7, 2.3), "resize_scale", "resize_ratio"), "must be positive"),
    (check_resize_box, ((0.8, 1.0), (0.0, 2.3), "resize_scale", "resize_ratio"), "must be positive"),
    (check_delta_width, (8, "ImageToTensor"), "odd and >= 3"),
    (check_delta_width, (1, "ImageToTensor"), "odd and >= 3"),
    (normalise_probs, ([1.0, -1.0], 2, "OneOf"), "non-negative"),
    (normalise_probs, ([1.0], 2, "OneOf"), "2 non-negative weights"),
    (normalise_probs, ([0.0, 0.0], 2, "OneOf"), "positive sum"),
])
def test_checks_reject_bad_values(check, args, message):
    with pytest.raises(ValueError, match=message):
        check(*args)


@pytest.mark.parametrize("setting, value, per_sample", [
    ("sigmoid_range", (0, 5), lambda v: SigmoidConcatMixer(v)),
    ("resize_ratio", (0.0, 2.0), lambda v: RandomResizedCrop(ratio=v)),
    ("resize_scale", (0.5, 1.2), lambda v: RandomResizedCrop(scale=v)),
    ("delta_width", 4, lambda v: ImageToTensor(delta_width=v)),
    ("mixer_prob", 1.2, lambda v: get_mixer(mixer_prob=v)),
    ("spec_prob", -0.5, lambda v: get_transforms(train=True, spec_prob=v)),
])
def test_both_paths_reject_the_same_settings(setting, value, per_sample):
    with pytest.raises(ValueError) as sample_error:
        per_sample(value)
    with pytest.raises(ValueError) as batch_error:
        BatchAugment(**{setting: value})
    # The same check: the same message after the setting's name.
    assert " must " in str(batch_error.value)
    assert str(sample_error.value).split(" must ", 1)[1] == str(batch_error.value).split(" must ", 1)[1]


# ---------------------------------------------------------------- pad and crop

def clips(n=6, seed=0):
    rng = np.random.default_rng(seed)
    specs = [rng.normal(-40.0, 10.0, (16, frames)).astype(np.float32) for frames in rng.integers(20, 150, n)]
    return specs, np.eye(n, 4, dtype=np.float32)


def test_raw_crops_are_the_per_sample_pipelines_first_steps():
    specs, targets = clips()
    dataset = RawCropDataset(specs, targets, size=64, wrap_pad_prob=0.5)
    crop = pad_and_crop(64, train=True, wrap_pad_prob=0.5)
    np.random.seed(3)
    served = [dataset[i][0].numpy() for i in range(len(specs))]
    np.random.seed(3)
    expected = [crop(spec) for spec in specs]
    for got, want, spec in zip(served, expected, specs):
        assert got.shape == (16, 64)
        np.testing.assert_array_equal(got, want)
    # The per-sample training pipeline starts with the same step: the same crops for the same draws.
    first_step = get_transforms(train=True, size=64).transforms[0]
    np.random.seed(3)
    for spec, want in zip(specs, expected):
        np.testing.assert_array_equal(first_step(spec), want)


def test_eval_pad_and_crop_centres_the_clip():
    spec = np.arange(16 * 40, dtype=np.float32).reshape(16, 40)
    padded = pad_and_crop(64, train=False)(spec)
    assert padded.shape == (16, 64)
    np.testing.assert_array_equal(padded[:, 12:52], spec)       # 24 frames of padding, 12 on the left
    assert (padded[:, :12] == spec.min()).all() and (padded[:, 52:] == spec.min()).all()
    np.testing.assert_array_equal(pad_and_crop(16, train=False)(spec), spec[:, 12:28])


def test_pad_and_crop_checks_wrap_pad_prob():
    with pytest.raises(ValueError, match="wrap_pad_prob"):
        pad_and_crop(64, train=True, wrap_pad_prob=1.5)


# ---------------------------------------------------------------- the experiment's training stream

def tiny(augment):
    return dict(get_experiment("demo"), augment=augment, crop_size=32, epoch_size=12, noisy_prob=0.25,
                corr_noisy_prob=0.25)


def samples(dataset, seed):
    np.random.seed(seed)
    return [dataset[i] for i in range(len(dataset))]


def test_sample_mode_builds_the_experiments_transforms_and_mixer():
    experiment = tiny("sample")
    curated, noisy, corrected = clips(seed=0), clips(seed=1), clips(seed=2)
    dataset = experiment_train_dataset(experiment, curated, noisy, corrected)
    assert len(dataset) == 12 and [s.noisy for s in dataset.sources] == [False, True, False]
    np.testing.assert_allclose(dataset.probs, [0.5, 0.25, 0.25])
    mixer = dataset.sources[0].mixer
    assert isinstance(mixer, UseMixerWithProb) and mixer.prob == experiment["mixer_prob"]
    # Exactly what one would assemble by hand from the experiment: the same samples, draw for draw.
    by_hand = build_train_dataset(
        curated, noisy, corrected, noisy_prob=0.25, corr_noisy_prob=0.25, epoch_size=12,
        transform=get_transforms(train=True, size=32, **experiment["transforms"]),
        mixer=get_mixer(experiment["mixer_prob"], experiment["sigmoid_range"], experiment["alpha_range"],
                        experiment["mixer_choice"]))
    for (a, ta, fa), (b, tb, fb) in zip(samples(dataset, 5), samples(by_hand, 5)):
        assert a.shape == (3, 16, 32)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(ta, tb, rtol=0, atol=0)
        assert fa == fb


def test_device_mode_serves_raw_crops_and_a_rank_share():
    experiment = tiny("device")
    dataset = experiment_train_dataset(experiment, clips(seed=0), clips(seed=1), clips(seed=2), epoch_size=6)
    assert len(dataset) == 6
    assert all(isinstance(source, RawCropDataset) and source.mixer is None for source in dataset.sources)
    image, target, flag = dataset[0]
    assert image.shape == (16, 32) and target.shape == (4,)      # raw crop: no delta channels yet
    assert raw_crop_settings(experiment) == {"size": 32, "wrap_pad_prob": experiment["transforms"]["wrap_pad_prob"]}


def test_validation_dataset_is_the_centre_crop():
    specs, targets = clips()
    dataset = experiment_val_dataset(tiny("device"), specs, targets)
    assert isinstance(dataset, ClipDataset) and dataset.mixer is None
    expected = ImageToTensor()(pad_and_crop(32, train=False)(specs[0]))
    torch.testing.assert_close(dataset[0][0], expected, rtol=0, atol=0)
