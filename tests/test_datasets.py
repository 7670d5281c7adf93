import numpy as np
import pytest
import torch

from src.data.datasets import ClipDataset, RandomSourceDataset, build_train_dataset, make_loader
from src.augment.mixers import AddMixer, get_mixer
from src.augment.transforms import get_transforms

N_MELS = 128
SIZE = 256


def assert_binomial(count, n, p, sigmas=4.0):
    std = np.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= sigmas * std + 1e-9, (count, n * p, std)


def random_specs(n, seed=0, lengths=(100, 256, 300, 700)):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-80, 0, size=(N_MELS, lengths[i % len(lengths)]))).astype(np.float32) for i in range(n)]


def one_hot(indices, n_classes):
    targets = np.zeros((len(indices), n_classes), np.float32)
    targets[np.arange(len(indices)), indices] = 1.0
    return targets


class CheapTransform:
    """First 16 frames as a (1, n_mels, 16) tensor: keeps the sampling tests fast (no deltas)."""

    def __call__(self, image):
        return torch.from_numpy(np.ascontiguousarray(image[:, :16]))


class ZeroInPlace:
    """A badly behaved transform that writes into its input before converting it."""

    def __call__(self, image):
        image[:] = 0.0
        return torch.from_numpy(image[None])


def disjoint_sources(n_classes=12, clips=8, frames=32):
    """Three sources with disjoint class sets (0-3, 4-7, 8-11), one label per clip, and a constant
    spectrogram value per source (-10, -50, -90), so a sample reveals the source(s) it came from."""
    pairs = {}
    for k, (name, value) in enumerate((("curated", -10.0), ("noisy", -50.0), ("corrected", -90.0))):
        specs = [np.full((N_MELS, frames), value, np.float32) for _ in range(clips)]
        targets = one_hot([4 * k + i % 4 for i in range(clips)], n_classes)
        pairs[name] = (specs, targets)
    return pairs


SOURCE_CLASSES = {"curated": set(range(0, 4)), "noisy": set(range(4, 8)), "corrected": set(range(8, 12))}
SOURCE_VALUE = {"curated": -10.0, "noisy": -50.0, "corrected": -90.0}
SOURCE_FLAG = {"curated": 0.0, "noisy": 1.0, "corrected": 0.0}


def source_of(target):
    labels = set(np.flatnonzero(target.numpy() > 0).tolist())
    owners = [name for name, classes in SOURCE_CLASSES.items() if labels <= classes]
    assert len(owners) == 1, f"labels {labels} span several sources"
    return owners[0]


# ---------------------------------------------------------------- ClipDataset

def test_clip_dataset_shapes_dtypes_and_flags():
    np.random.seed(0)
    specs = random_specs(4)
    targets = one_hot([0, 1, 2, 3], 5)
    for noisy, flag in ((False, 0.0), (True, 1.0)):
        dataset = ClipDataset(specs, targets, get_transforms(train=True), noisy=noisy)
        assert len(dataset) == 4
        for i in range(len(dataset)):
            image, target, noisy_flag = dataset[i]
            assert image.shape == (3, N_MELS, SIZE) and image.dtype == torch.float32
            assert target.shape == (5,) and target.dtype == torch.float32
            assert torch.equal(target, torch.from_numpy(targets[i]))
            assert noisy_flag.shape == () and noisy_flag.dtype == torch.float32 and noisy_flag.item() == flag


def test_validation_dataset_is_deterministic_centre_crop():
    specs = random_specs(4)
    dataset = ClipDataset(specs, one_hot([0, 1, 2, 3], 4), get_transforms(train=False))
    for i, spec in enumerate(specs):
        np.random.seed(1)
        first = dataset[i][0]
        np.random.seed(2)
        second = dataset[i][0]
        assert torch.equal(first, second)
        if spec.shape[1] >= SIZE:  # centre crop: channel 0 is the crop / 100
            start = (spec.shape[1] - SIZE) // 2
            np.testing.assert_allclose(first[0].numpy(), spec[:, start:start + SIZE] / 100, rtol=1e-6)


def test_read_only_memmap_specs_are_never_written(tmp_path):
    frames = np.random.default_rng(0).uniform(-80, 0, size=(N_MELS, 900)).astype(np.float32)
    np.save(tmp_path / "frames.npy", frames)
    mapped = np.load(tmp_path / "frames.npy", mmap_mode="r")
    specs = [mapped[:, 0:200], mapped[:, 200:500], mapped[:, 500:900]]
    assert not specs[0].flags.writeable
    targets = one_hot([0, 1, 2], 3)

    # A transform that writes in place only sees a private copy: no error, the cache is unchanged.
    image, _, _ = ClipDataset(specs, targets, ZeroInPlace())[1]
    assert torch.count_nonzero(image) == 0
    np.testing.assert_array_equal(np.asarray(specs[1]), frames[:, 200:500])

    # The full training pipeline with mixing works on read-only views.
    np.random.seed(0)
    dataset = ClipDataset(specs, targets, get_transforms(train=True), mixer=get_mixer(1.0))
    for i in range(len(dataset)):
        assert dataset[i][0].shape == (3, N_MELS, SIZE)
    np.testing.assert_array_equal(np.load(tmp_path / "frames.npy"), frames)


def test_random_sample_is_uniform_and_unmixed():
    np.random.seed(0)
    n_clips, draws = 5, 2000
    dataset = ClipDataset([np.zeros((4, 20), np.float32)] * n_clips, one_hot(range(n_clips), n_clips),
                          CheapTransform(), mixer=AddMixer((0.1, 0.5)))
    counts = np.zeros(n_clips)
    for _ in range(draws):
        _, target = dataset.random_sample()
        assert target.sum() == 1.0  # the partner itself is never mixed
        counts[int(target.argmax())] += 1
    for count in counts:
        assert_binomial(count, draws, 1 / n_clips)


def test_mixer_makes_multi_label_targets_from_single_label_data():
    np.random.seed(0)
    n_clips = 8
    specs = random_specs(n_clips)
    dataset = ClipDataset(specs, one_hot([i % 4 for i in range(n_clips)], 4), get_transforms(train=True),
                          mixer=get_mixer(1.0))
    multi = 0
    draws = 60
    for i in range(draws):
        image, target, _ = dataset[i % n_clips]
        assert image.shape == (3, N_MELS, SIZE)
        assert target.min() >= 0 and target.max() <= 1
        multi += int((target > 0).sum() > 1)
    # The partner has another label with probability 3/4 (4 classes, 2 clips each).
    assert multi >= draws // 2


def test_clip_dataset_rejects_bad_inputs():
    with pytest.raises(ValueError, match="3 spectrogram"):
        ClipDataset(random_specs(3), one_hot([0, 1], 2), CheapTransform())
    with pytest.raises(ValueError, match="targets"):
        ClipDataset(random_specs(2), np.zeros(2, np.float32), CheapTransform())
    with pytest.raises(ValueError, match="2-D"):
        ClipDataset([np.zeros(5, np.float32)], one_hot([0], 1), CheapTransform())
    with pytest.raises(IndexError):
        ClipDataset(random_specs(2), one_hot([0, 1], 2), CheapTransform())[2]


# ---------------------------------------------------------------- training stream

def test_source_frequencies_and_flags_match_probs():
    np.random.seed(0)
    pairs = disjoint_sources()
    dataset = build_train_dataset(pairs["curated"], pairs["noisy"], pairs["corrected"], noisy_prob=0.2,
                                  corr_noisy_prob=0.3, epoch_size=100, transform=CheapTransform())
    assert len(dataset) == 100
    np.testing.assert_allclose(dataset.probs, [0.5, 0.2, 0.3])
    assert [s.noisy for s in dataset.sources] == [False, True, False]

    draws = 4000
    counts = dict.fromkeys(SOURCE_CLASSES, 0)
    for i in range(draws):
        image, target, flag = dataset[i % len(dataset)]
        name = source_of(target)
        counts[name] += 1
        assert flag.item() == SOURCE_FLAG[name]
        assert torch.all(image == SOURCE_VALUE[name])
    for name, p in (("curated", 0.5), ("noisy", 0.2), ("corrected", 0.3)):
        assert_binomial(counts[name], draws, p)


def test_mixing_partner_comes_from_the_same_source():
    np.random.seed(0)
    pairs = disjoint_sources(frames=300)
    dataset = build_train_dataset(pairs["curated"], pairs["noisy"], pairs["corrected"], noisy_prob=0.35,
                                  corr_noisy_prob=0.35, epoch_size=64, mixer=get_mixer(1.0))  # real transforms
    seen, multi = set(), 0
    for i in range(len(dataset)):
        image, target, flag = dataset[i]
        assert image.shape == (3, N_MELS, SIZE)
        name = source_of(target)  # all labels (both partners') belong to one source
        seen.add(name)
        assert flag.item() == SOURCE_FLAG[name]
        # Constant spectrograms per source: a partner from another source would change the values.
        np.testing.assert_allclose(image[0].numpy(), SOURCE_VALUE[name] / 100, rtol=1e-5)
        multi += int((target > 0).sum() > 1)
    assert seen == set(SOURCE_CLASSES)
    assert multi >= len(dataset) // 3  # mixing did happen


def test_build_train_dataset_drops_zero_probability_sources():
    pairs = disjoint_sources()
    dataset = build_train_dataset(pairs["curated"], pairs["noisy"], pairs["corrected"], noisy_prob=0.2,
                                  transform=CheapTransform())
    assert len(dataset.sources) == 2 and [s.noisy for s in dataset.sources] == [False, True]
    np.testing.assert_allclose(dataset.probs, [0.8, 0.2])
    only_curated = build_train_dataset(pairs["curated"], transform=CheapTransform(), epoch_size=7)
    assert len(only_curated.sources) == 1 and len(only_curated) == 7
    only_noisy = build_train_dataset(pairs["curated"], pairs["noisy"], pairs["corrected"], noisy_prob=0.58,
                                     corr_noisy_prob=0.42, transform=CheapTransform())
    assert [s.noisy for s in only_noisy.sources] == [True, False]


def test_bad_probabilities_and_sources_raise():
    pairs = disjoint_sources()
    a = ClipDataset(*pairs["curated"], CheapTransform())
    b = ClipDataset(*pairs["noisy"], CheapTransform(), noisy=True)
    empty = ClipDataset([], np.zeros((0, 12), np.float32), CheapTransform())
    with pytest.raises(ValueError, match="sum to 1"):
        RandomSourceDataset([a, b], [0.5, 0.6], 10)
    with pytest.raises(ValueError, match="2 source"):
        RandomSourceDataset([a, b], [1.0], 10)
    with pytest.raises(ValueError, match="non-negative"):
        RandomSourceDataset([a, b], [1.2, -0.2], 10)
    with pytest.raises(ValueError, match="empty"):
        RandomSourceDataset([a, empty], [0.5, 0.5], 10)
    with pytest.raises(ValueError, match="epoch_size"):
        RandomSourceDataset([a], [1.0], 0)
    with pytest.raises(ValueError, match="must not be empty"):
        RandomSourceDataset([], [], 10)
    RandomSourceDataset([a, empty], [1.0, 0.0], 10)  # an empty source that is never drawn is fine
    with pytest.raises(ValueError, match="no noisy data"):
        build_train_dataset(pairs["curated"], noisy_prob=0.2, transform=CheapTransform())
    with pytest.raises(ValueError, match="exceeds 1"):
        build_train_dataset(pairs["curated"], pairs["noisy"], pairs["corrected"], noisy_prob=0.6,
                            corr_noisy_prob=0.6, transform=CheapTransform())
    with pytest.raises(ValueError, match="noisy_prob"):
        build_train_dataset(pairs["curated"], pairs["noisy"], noisy_prob=-0.1, transform=CheapTransform())
    with pytest.raises(IndexError):
        RandomSourceDataset([a], [1.0], 10)[10]


# ---------------------------------------------------------------- loaders and seeding

def training_stream(epoch_size=16):
    # Long clips: random crop offsets alone make an accidental repeat of a sample very unlikely.
    specs = random_specs(12, seed=3, lengths=(600, 800, 1000))
    noisy_specs = random_specs(12, seed=4, lengths=(600, 800, 1000))
    return build_train_dataset((specs, one_hot([i % 6 for i in range(12)], 6)),
                               (noisy_specs, one_hot([i % 6 for i in range(12)], 6)), noisy_prob=0.3,
                               epoch_size=epoch_size, mixer=get_mixer(0.8))


def epoch_batches(loader):
    return [tuple(t.clone() for t in batch) for batch in loader]


def same_batches(first, second):
    return all(torch.equal(x, y) for a, b in zip(first, second) for x, y in zip(a, b))


def test_loader_is_reproducible_from_seed_and_workers_differ():
    dataset = training_stream()
    np.random.seed(123)  # the main process RNG must not matter with workers
    loader = make_loader(dataset, batch_size=4, shuffle=True, workers=2, seed=7, drop_last=True)
    run_a = [epoch_batches(loader), epoch_batches(loader)]
    np.random.seed(456)
    run_b = [epoch_batches(make_loader(dataset, 4, shuffle=True, workers=2, seed=7, drop_last=True))]
    other = epoch_batches(make_loader(dataset, 4, shuffle=True, workers=2, seed=8, drop_last=True))

    image, target, flag = run_a[0][0]
    assert image.shape == (4, 3, N_MELS, SIZE) and target.shape == (4, 6) and flag.shape == (4,)
    assert len(run_a[0]) == 4
    assert same_batches(run_a[0], run_b[0])  # same seed -> identical first epoch
    assert not same_batches(run_a[0], other)  # another seed -> other samples
    assert not same_batches(run_a[0], run_a[1])  # persistent workers: the next epoch draws anew

    # Batches alternate between the two workers (0, 1, 0, 1): if both shared one RNG state,
    # batches 2k and 2k+1 would be identical. No sample of the epoch is repeated at all.
    for k in (0, 2):
        assert not torch.equal(run_a[0][k][0], run_a[0][k + 1][0])
    images = torch.cat([batch[0] for batch in run_a[0]]).flatten(1)
    assert len(torch.unique(images, dim=0)) == len(images)


def test_make_loader_settings():
    dataset = training_stream(epoch_size=8)
    loader = make_loader(dataset, batch_size=4, shuffle=False, workers=0, seed=0)
    assert loader.pin_memory == torch.cuda.is_available()
    assert not loader.persistent_workers and loader.num_workers == 0
    assert len(loader) == 2
    with_workers = make_loader(dataset, batch_size=3, shuffle=False, workers=2, seed=0, drop_last=True)
    assert with_workers.persistent_workers and with_workers.num_workers == 2 and len(with_workers) == 2


def test_validation_loader_keeps_order_and_values():
    specs = random_specs(6)
    targets = one_hot([0, 1, 2, 3, 4, 5], 6)
    dataset = ClipDataset(specs, targets, get_transforms(train=False))
    batches = epoch_batches(make_loader(dataset, batch_size=4, shuffle=False, workers=2, seed=0))
    images = torch.cat([b[0] for b in batches])
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.from_numpy(targets))
    assert torch.all(torch.cat([b[2] for b in batches]) == 0)
    for i in range(len(dataset)):
        assert torch.equal(images[i], dataset[i][0])
