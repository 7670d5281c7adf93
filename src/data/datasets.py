"""Datasets and loaders: clips -> (image, target, noisy_flag) samples.

`experiment_train_dataset` / `experiment_val_dataset` build both for an experiment
(either augmentation mode); the classes below are what they assemble.

`ClipDataset` turns a list of log-mel spectrograms and their multi-hot targets
into model samples (per-sample transform, then an optional mixer). It serves the
curated training folds (with a mixer), the noisy sets, and validation (the
deterministic `get_transforms(train=False)` pipeline, no mixer).

`RandomSourceDataset` is the original's training stream: an "epoch" is a fixed
number of samples (32,768 = 128 x 256), each drawn from the noisy set with
probability NOISY_PROB, from the corrected-noisy subset with CORR_NOISY_PROB and
otherwise from the curated training folds, then a uniformly random clip of that
source. Every sample carries a flag (1 = noisy, 0 = curated or corrected) that
the loss uses to pick BCE or L-soft. A mixed sample's partner comes from the
same source (the source's own mixer calls the source's own `random_sample`),
as in the original, so a noisy clip is only mixed with noisy clips and its flag
stays meaningful.

Seeding: all per-sample randomness uses numpy's global RNG. The original
reseeded it from the wall clock in every worker, which made runs
unrepeatable. Here `make_loader` gives the DataLoader a `torch.Generator`
seeded by `--seed`; torch derives each worker's seed from it
(`base_seed + worker_id`, with a new `base_seed` each time workers start) and
`src.runtime.seed_worker` seeds numpy/random from that. So the same seed repeats a
run exactly, while workers never produce duplicate samples.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from src.augment.checks import check_positive_int, check_prob
from src.augment.mixers import get_mixer
from src.augment.settings import augment_mode, raw_crop_settings
from src.augment.transforms import get_transforms, pad_and_crop
from src.runtime import seed_worker

PROB_TOLERANCE = 1e-6


class ClipDataset(Dataset):
    """Spectrograms + (N, C) targets -> (image, target, noisy_flag).

    specs:     sequence of (n_mels, frames) float32 arrays; may be read-only memory maps
               (`FeatureSet.specs`): each one is copied before the transform sees it, so no
               transform can write into the shared feature cache.
    targets:   (N, C) multi-hot matrix (float32 after conversion).
    transform: numpy (n_mels, frames) -> torch (3, n_mels, W), e.g. `get_transforms(train)`.
    mixer:     optional `mixer(dataset, image, target) -> (image, target)` from `src.augment.mixers`,
               applied after the transform; its partner comes from `self.random_sample()`.
    noisy:     flag value of every sample: True for the noisy set (L-soft loss), False for
               curated or hand-corrected clips (BCE).
    """

    def __init__(self, specs, targets, transform, mixer=None, noisy=False):
        self.specs = list(specs)
        self.targets = np.asarray(targets, dtype=np.float32)
        if self.targets.ndim != 2:
            raise ValueError(f"ClipDataset: targets must be an (N, n_classes) matrix, got shape "
                             f"{self.targets.shape}")
        if len(self.specs) != len(self.targets):
            raise ValueError(f"ClipDataset: {len(self.specs)} spectrogram(s) but {len(self.targets)} "
                             f"target row(s)")
        for i, spec in enumerate(self.specs):
            if getattr(spec, "ndim", None) != 2:
                raise ValueError(f"ClipDataset: spectrogram {i} must be 2-D (n_mels, frames), got shape "
                                 f"{getattr(spec, 'shape', None)}")
        if transform is None:
            raise ValueError("ClipDataset: a transform is required (it turns the spectrogram into a tensor)")
        self.transform = transform
        self.mixer = mixer
        self.noisy = bool(noisy)

    def __len__(self):
        return len(self.specs)

    @property
    def n_classes(self) -> int:
        return self.targets.shape[1]

    def _transformed(self, index):
        """Transformed (image, target) of clip `index`, without mixing."""
        image = np.array(self.specs[index], dtype=np.float32)  # private, writeable copy
        image = self.transform(image)
        target = torch.from_numpy(self.targets[index].copy())
        return image, target

    def random_sample(self):
        """A uniformly random clip, transformed (not mixed): the mixers' partner sample."""
        if len(self) == 0:
            raise IndexError("ClipDataset.random_sample: the dataset is empty")
        return self._transformed(np.random.randint(len(self)))

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"ClipDataset: index {index} out of range for {len(self)} clip(s)")
        image, target = self._transformed(index)
        if self.mixer is not None:
            image, target = self.mixer(self, image, target)
        return image, target, torch.tensor(float(self.noisy), dtype=torch.float32)

    def __repr__(self):
        return (f"{self.__class__.__name__}(n={len(self)}, n_classes={self.n_classes}, noisy={self.noisy}, "
                f"mixer={self.mixer!r})")


class RawCropDataset(ClipDataset):
    """ClipDataset serving raw fixed-width log-mel crops for the device-side batch augmentation.

    A sample is (crop, target, noisy_flag) with crop a float32 tensor (n_mels, size): the clip
    padded to `size` frames if shorter (wrap-around with probability wrap_pad_prob, else constant
    with the clip's minimum; split evenly left/right) and a random window of `size` frames, drawn
    exactly as the per-sample path's first steps (the same `pad_and_crop`). That is cheap
    slicing, so it stays in the DataLoader workers; resized crop, SpecAugment, deltas and mixing
    run on the training device (`src.augment.batch.BatchAugment`). No mixer here: partners are
    picked within the batch.
    """

    def __init__(self, specs, targets, size=256, wrap_pad_prob=0.5, noisy=False):
        transform = pad_and_crop(size, train=True, wrap_pad_prob=wrap_pad_prob)
        super().__init__(specs, targets, transform, mixer=None, noisy=noisy)

    def _transformed(self, index):
        # Padding and cropping never write into their input, so the (possibly memory-mapped)
        # clip is not copied whole first, as ClipDataset does: only the crop is copied.
        crop = self.transform(self.specs[index])
        image = torch.from_numpy(np.array(crop, dtype=np.float32))
        return image, torch.from_numpy(self.targets[index].copy())


class RandomSourceDataset(Dataset):
    """`epoch_size` random samples an epoch, each from source k with probability probs[k].

    The index is ignored (apart from the range check that ends plain iteration): which
    source and which clip are drawn from numpy's RNG, like the original's training stream.
    Each source applies its own transform and mixer, so mixing partners stay within a source.
    """

    def __init__(self, sources, probs, epoch_size):
        self.sources = list(sources)
        probs = np.asarray(probs, dtype=np.float64)
        if not self.sources:
            raise ValueError("RandomSourceDataset: sources must not be empty")
        if probs.shape != (len(self.sources),):
            raise ValueError(f"RandomSourceDataset: {len(self.sources)} source(s) but probs has shape "
                             f"{probs.shape}: {probs.tolist()}")
        if not np.isfinite(probs).all() or (probs < 0).any():
            raise ValueError(f"RandomSourceDataset: probs must be non-negative, got {probs.tolist()}")
        if abs(probs.sum() - 1.0) > PROB_TOLERANCE:
            raise ValueError(f"RandomSourceDataset: probs must sum to 1, got {probs.tolist()} "
                             f"(sum {probs.sum():.6f})")
        empty = [k for k, (source, p) in enumerate(zip(self.sources, probs)) if p > 0 and len(source) == 0]
        if empty:
            raise ValueError(f"RandomSourceDataset: source(s) {empty} are empty but have probability > 0 "
                             f"({probs[empty].tolist()})")
        self.probs = probs / probs.sum()  # exact sum 1 for np.random.choice
        self.epoch_size = check_positive_int(epoch_size, "RandomSourceDataset: epoch_size")

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, index):
        if not -self.epoch_size <= index < self.epoch_size:
            raise IndexError(f"RandomSourceDataset: index {index} out of range for epoch_size {self.epoch_size}")
        source = self.sources[np.random.choice(len(self.sources), p=self.probs)]
        return source[np.random.randint(len(source))]

    def __repr__(self):
        inner = "".join(f"\n    p={p:.4f}: {s!r}," for s, p in zip(self.sources, self.probs))
        return f"{self.__class__.__name__}(epoch_size={self.epoch_size}, sources=[{inner}\n])"


def build_train_dataset(curated, noisy=None, corrected=None, noisy_prob=0.0, corr_noisy_prob=0.0,
                        epoch_size=32768, transform=None, mixer=None, raw_crop=None) -> RandomSourceDataset:
    """The training stream from (specs, targets) pairs.

    curated   -> flag 0, probability 1 - noisy_prob - corr_noisy_prob
    noisy     -> flag 1, probability noisy_prob
    corrected -> flag 0 (hand-corrected noisy clips are trusted like curated ones), corr_noisy_prob
    Sources with probability 0 are left out. `transform` defaults to `get_transforms(train=True)`;
    `mixer` defaults to None (no mixing): pass `src.augment.mixers.get_mixer(...)` for the experiment's mixing.
    raw_crop: None (the per-sample path above), or RawCropDataset kwargs such as
    {"size": 256, "wrap_pad_prob": 0.5} to serve raw crops for the device-side batch augmentation
    (experiment setting augment="device"); transform and mixer must then be None.
    """
    if raw_crop is not None and (transform is not None or mixer is not None):
        raise ValueError("build_train_dataset: raw_crop serves un-augmented crops; do not pass a transform "
                         "or a mixer with it")
    for name, p in (("noisy_prob", noisy_prob), ("corr_noisy_prob", corr_noisy_prob)):
        check_prob(p, f"build_train_dataset: {name}")
    curated_prob = 1.0 - noisy_prob - corr_noisy_prob
    if curated_prob < -PROB_TOLERANCE:
        raise ValueError(f"build_train_dataset: noisy_prob + corr_noisy_prob = {noisy_prob + corr_noisy_prob} "
                         f"exceeds 1")
    curated_prob = max(curated_prob, 0.0)
    if transform is None:
        transform = get_transforms(train=True)

    sources, probs = [], []
    for name, pair, prob, flag in (("curated", curated, curated_prob, False),
                                   ("noisy", noisy, noisy_prob, True),
                                   ("corrected", corrected, corr_noisy_prob, False)):
        if prob <= PROB_TOLERANCE:
            continue
        if pair is None:
            raise ValueError(f"build_train_dataset: {name} probability is {prob} but no {name} data was given")
        specs, targets = pair
        if raw_crop is not None:
            sources.append(RawCropDataset(specs, targets, **raw_crop, noisy=flag))
        else:
            sources.append(ClipDataset(specs, targets, transform, mixer=mixer, noisy=flag))
        probs.append(prob)
    return RandomSourceDataset(sources, np.asarray(probs) / np.sum(probs), epoch_size)


def experiment_train_dataset(experiment, curated, noisy=None, corrected=None, epoch_size=None):
    """The training stream of an experiment, in its augmentation mode (src/augment/settings.py).

    augment="sample": every source applies the experiment's per-sample transforms and mixer.
    augment="device": every source serves raw pad-and-crop crops, and the model's BatchAugment
    (built from the same experiment, `argus_params`) does the rest on the device.
    curated / noisy / corrected: (specs, targets) pairs or None, as for `build_train_dataset`;
    epoch_size: samples per epoch (default the experiment's; a DDP rank draws its share).
    """
    if augment_mode(experiment) == "device":
        augmentation = {"raw_crop": raw_crop_settings(experiment)}
    else:
        augmentation = {
            "transform": get_transforms(train=True, size=experiment["crop_size"], **experiment["transforms"]),
            "mixer": get_mixer(experiment["mixer_prob"], experiment["sigmoid_range"], experiment["alpha_range"],
                               experiment["mixer_choice"]),
        }
    return build_train_dataset(curated, noisy, corrected, noisy_prob=experiment["noisy_prob"],
                               corr_noisy_prob=experiment["corr_noisy_prob"],
                               epoch_size=experiment["epoch_size"] if epoch_size is None else epoch_size,
                               **augmentation)


def experiment_val_dataset(experiment, specs, targets) -> ClipDataset:
    """Validation clips of an experiment: constant pad, centre crop of crop_size frames, no mixing."""
    return ClipDataset(specs, targets, get_transforms(train=False, size=experiment["crop_size"]))


def make_loader(dataset, batch_size, shuffle=False, workers=0, seed=0, drop_last=False,
                persistent=True) -> DataLoader:
    """A DataLoader whose randomness is reproducible from `seed`.

    The loader's `torch.Generator` (seeded by `seed`) drives the shuffling and the per-worker
    base seed; `seed_worker` passes each worker's torch seed on to numpy/random, which the
    transforms and mixers use. With workers=0 the samples are drawn in the main process from
    numpy's global RNG, so seed it with `src.runtime.seed_everything` for a repeatable run.
    Persistent workers keep their RNG state across epochs, so every epoch draws new samples.
    persistent=False starts fresh workers each epoch, seeded from the generator (a new base
    seed each epoch): the generator's state then determines every epoch, so a saved state
    can be resumed exactly (src/train/resume.py).
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=persistent and workers > 0,
    )
