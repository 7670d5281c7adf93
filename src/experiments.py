"""Named experiments: every setting of a training run, as plain data.

`train_folds.py --experiment NAME` and `predict_folds.py --experiment NAME`
look the name up here, so the seven first-level members of the original's final
ensemble are reproducible by name from one commit. Settings a user overrides on
the command line (`--epochs`, ...) are applied to a copy and the resolved
experiment is saved beside the weights (`config.json`).

Keys:
  model            (name in src.models.MODELS, kwargs) - num_classes is filled in at run time
  loss             (name in src.train.losses, kwargs)
  optimizer        (torch.optim name, kwargs)
  batch_size, crop_size, epoch_size, epochs
  noisy_prob, corr_noisy_prob   share of the training stream drawn from noisy / corrected-noisy clips
  mixer_prob, mixer_choice (sigmoid-concat vs add), sigmoid_range, alpha_range
  transforms       kwargs of src.augment.transforms.get_transforms(train=True, ...)
  plateau          ReduceLROnPlateau(patience, factor, min_lr) on val_lwlrap
  early_stopping   patience in epochs, on val_lwlrap
  curated_corrections, noisy_corrections
                   label-corrections files (fname -> "A,B" | "remove"): None, "auto" (the data dir's
                   corrections.json / noisy_corrections.json if present), the name of a version shipped in
                   corrections/ (e.g. "curated_final"), or a JSON file in the data dir; see src/data/corrections.py.
                   Anything but None/"auto" that is missing stops the run.
  noisy_source     which noisy clips form the noisy source (flag 1, L-soft); the corrected-noisy source
                   (flag 0, BCE) is always the clips that noisy_corrections relabels, with those labels:
                     "all"         every noisy clip, web labels
                     "relabelled"  only the relabelled clips, corrected labels (the same clips as the
                                   corrected-noisy source)
                     "kept"        every clip not marked "remove"; relabelled ones with corrected labels
                                   (so they are in both sources)
  amp              'auto' | 'bf16' | 'fp16' | 'none', resolved per device by src/precision.py: on CUDA
                   'auto' and 'bf16' are the same (bf16 from compute capability 8.0, fp16 on 7.x, fp32
                   below); on a CPU 'auto' trains in fp32 and 'bf16' trains in bf16 where the CPU has it
                   natively (avx512_bf16/AMX), else fp32
  augment          'sample': per-sample numpy augmentation in the DataLoader workers (the reference);
                   'device': workers serve raw crops, src.augment.batch augments whole batches on the device
                   (src/augment/settings.py)
  channels_last    NHWC memory format for the network and its inputs (faster convs on recent GPUs)
  compile          torch.compile the network for the training step
  val_batch_size
  tile_step        sliding-window step in frames of out-of-fold predictions (predict_folds.py)
  test_tile_step   the step of test predictions and of tagging (tag.py, export.py bundles)
  optional_sources  use train_noisy / noisy_corrections.json only when present (use_available_sources)

Every setting has its value in BASE (the code reads `experiment[key]`, never a
fallback), so a run's config.json is the whole truth of it. A config.json written
before a setting existed is read through `complete_config`, which fills the
missing settings from BASE (and applies the two renames of older versions).
"""
import copy
from pathlib import Path

AUX_WEIGHTS = [1.0, 0.4, 0.2, 0.1]  # main, aux3, aux2, aux1

# BCE on curated (flag 0), L-soft with beta 0.7 on noisy (flag 1), each weighted 0.5 (src/train/losses.py).
NOISY_CURATED_LOSS = {
    "noisy": "lsoft", "noisy_params": {"beta": 0.7},
    "curated": "bce", "noisy_weight": 0.5, "curated_weight": 0.5,
}

# The original's first-level recipe (docs/recipe.md, sections 3 and 4).
BASE = {
    "model": ("AuxSkipAttention", {"base_size": 64, "dropout": 0.4, "ratio": 16, "kernel_size": 7}),
    "loss": ("aux", {"base": {"name": "noisy_curated", **NOISY_CURATED_LOSS}, "weights": AUX_WEIGHTS}),
    "optimizer": ("Adam", {"lr": 0.0009}),
    "batch_size": 128,
    "val_batch_size": 128,
    "crop_size": 256,
    "epoch_size": 32768,
    "epochs": 700,
    "noisy_prob": 0.2,
    "corr_noisy_prob": 0.0,
    "mixer_prob": 0.8,
    "mixer_choice": (0.6, 0.4),
    "sigmoid_range": (3, 12),
    "alpha_range": (0.0, 0.5),
    "transforms": {
        "wrap_pad_prob": 0.5,
        "resize_scale": (0.8, 1.0), "resize_ratio": (1.7, 2.3), "resize_prob": 0.33,
        "spec_num_mask": 2, "spec_freq_masking": 0.15, "spec_time_masking": 0.20, "spec_prob": 0.5,
    },
    "plateau": {"patience": 6, "factor": 0.6, "min_lr": 1e-8},
    "early_stopping": 18,
    # A user's experiment built from BASE reads the data dir's corrections files, if any.
    "curated_corrections": "auto",
    "noisy_corrections": "auto",
    "noisy_source": "all",
    "amp": "auto",           # the card's precision on CUDA (bf16 on A100/H100); fp32 training on a CPU
    "augment": "sample",     # or "device" (src/augment/batch.py): same distributions, far fewer CPU cycles
    "channels_last": False,  # NHWC network + inputs
    "compile": False,        # torch.compile the network (first steps are slow while it compiles)
    "tile_step": 64,
    "test_tile_step": 128,   # the final submission's test predictions (out-of-fold stays at 64)
    "optional_sources": False,
}


def _variant(**changes) -> dict:
    """BASE with some keys replaced; dict values are merged one level deep."""
    experiment = copy.deepcopy(BASE)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(experiment.get(key), dict):
            experiment[key].update(value)
        else:
            experiment[key] = value
    return experiment


def _skip_attention(kernel_size):
    return ("SkipAttention", {"base_size": 64, "dropout": 0.2, "ratio": 16, "kernel_size": kernel_size})


EXPERIMENTS = {
    # The seven first-level members of the final ensemble (README). Each trained with its own version of
    # the label corrections (corrections/README.md) and its own rule for the noisy source.
    "auxiliary_016": _variant(noisy_prob=0.2, curated_corrections="curated_auxiliary_016",
                              noisy_corrections=None, noisy_source="all"),
    "auxiliary_019": _variant(noisy_prob=0.2, transforms={"resize_scale": (0.75, 1.0), "resize_ratio": (1.6, 2.4)},
                              curated_corrections="curated_auxiliary_019", noisy_corrections=None,
                              noisy_source="all"),
    "corr_noisy_003": _variant(model=("RnnAuxSkipAttention", {"base_size": 64, "dropout": 0.4, "ratio": 16,
                                                              "kernel_size": 7}),
                               noisy_prob=0.1, corr_noisy_prob=0.2, curated_corrections="curated_final",
                               noisy_corrections="noisy_corr_noisy_003", noisy_source="all"),
    "corr_noisy_004": _variant(noisy_prob=0.07, corr_noisy_prob=0.33, curated_corrections="curated_final",
                               noisy_corrections="noisy_final", noisy_source="relabelled"),
    "corr_noisy_007": _variant(noisy_prob=0.01, corr_noisy_prob=0.42, curated_corrections="curated_final",
                               noisy_corrections="noisy_final", noisy_source="kept"),
    # Trained before the random resized crop existed: pad -> crop -> SpecAugment -> tensor.
    "corrections_002": _variant(model=_skip_attention(7), loss=("noisy_curated", NOISY_CURATED_LOSS),
                                noisy_prob=0.33, mixer_prob=0.66, transforms={"resize_prob": 0.0},
                                curated_corrections="curated_corrections_002_003", noisy_corrections=None,
                                noisy_source="all"),
    "corrections_003": _variant(model=_skip_attention(3), loss=("noisy_curated", NOISY_CURATED_LOSS),
                                noisy_prob=0.33, mixer_prob=0.66, transforms={"resize_prob": 0.0},
                                curated_corrections="curated_corrections_002_003", noisy_corrections=None,
                                noisy_source="all"),
}

# CPU-sized versions for the generated demo data: the same recipe (aux heads, L-soft on noisy,
# corrected-noisy stream, mixers, SpecAugment, resized crops), a 16x thinner network on
# 64-frame (1 s) crops and 768-sample epochs, so 5 folds train in a few minutes on 2 cores.
# augment="device": the workers only cut crops, so the network gets both cores (~1.8x faster
# than the per-sample path here); that buys 14 epochs at a higher lr, which every fold needs to
# pass 0.85 val lwlrap (10 epochs at lr 0.003 left folds at 0.73-0.93, still climbing).
# Corrections: the generated data's own files ("auto": noisy_corrections.json is a simulated review
# that gives 106 of the 300 noisy clips their true labels, with no "remove"). noisy_source="kept", the
# final recipe's rule (corr_noisy_007): all 300 noisy clips stay in the noisy stream, the reviewed
# ones with their true labels, so 22% of its labels are wrong (web labels: 30%; the unreviewed clips
# alone, this repo's earlier rule: 34% of 194 clips); "relabelled" would leave only the 106 clips
# that the corrected-noisy stream already serves.
# Random resized crop on 64-frame crops: the 2019 aspect range (1.7, 2.3) brackets its 128 x 256 crops'
# width/height of 2; a 128 x 64 crop's is 0.5, so the range scales by 64/256. Left at (1.7, 2.3), no box
# would ever fit and every resized crop would stretch the same 38 mel bands 3.4x in frequency
# (src/augment/checks.py, check_resized_crop_fits), which cost `small` 0.11 test lwlrap on real recordings.
CROP_64_RATIO = (0.425, 0.575)
DEMO = _variant(
    model=("AuxSkipAttention", {"base_size": 4, "dropout": 0.2, "ratio": 2, "kernel_size": 7}),
    transforms={"resize_ratio": CROP_64_RATIO},
    optimizer=("Adam", {"lr": 0.006}),
    augment="device",
    batch_size=32, val_batch_size=64, crop_size=64, epoch_size=768, epochs=14,
    noisy_prob=0.1, corr_noisy_prob=0.2, mixer_prob=0.5,
    plateau={"patience": 2, "factor": 0.5}, early_stopping=5, tile_step=32, test_tile_step=32,
    curated_corrections="auto", noisy_corrections="auto", noisy_source="kept",
)
EXPERIMENTS["demo"] = DEMO
EXPERIMENTS["demo_skip"] = _variant(
    **{k: v for k, v in DEMO.items() if k not in ("model", "loss")},
    # kernel 7 (corrections_002's): at this size kernel 3 learnt too slowly for 14 epochs (folds 0.64-0.89)
    model=("SkipAttention", {"base_size": 4, "dropout": 0.2, "ratio": 2, "kernel_size": 7}),
    loss=("noisy_curated", NOISY_CURATED_LOSS),
)

# CPU-sized recipe for users' own recordings (README "Training on your own tagged audio"): the full
# recipe (aux heads, mixers, SpecAugment, L-soft on noisy clips, tile prediction) on an 8x thinner
# network than the 2019 one and 1 s crops. Settings chosen on the real-recordings dev set of bench/realdev/ (the
# trials and their scores are listed in bench/realdev/README.md): the crop-sized resize ratio was worth
# +0.11 test lwlrap, 60 epochs with patience 6 another +0.02; a 2x wider network (base_size 16) raised
# the CV score but not the test score, at twice the time; stronger resized crops (p 0.66, area from 0.6)
# cost 0.05. Epochs of 768 samples: 640 (17% less training, 2.1x instead of 1.7x the speed of the
# NCHW recipe) held grouped CV on three seeds per dev set, but over seven seeds it lowered realdev2's
# grouped CV by 0.007 and its class-averaged CV by 0.036, all in the classes with one or two clips
# (bench/realdev2/README.md); `--set epoch_size=640` is there for whoever prefers the speed.
# "optional_sources": the noisy and corrected-noisy streams are used only when the data dir has
# train_noisy.csv / noisy_corrections.json (see use_available_sources); their shares otherwise go back to
# the curated clips.
SMALL = _variant(
    model=("AuxSkipAttention", {"base_size": 8, "dropout": 0.2, "ratio": 4, "kernel_size": 7}),
    transforms={"resize_ratio": CROP_64_RATIO},
    optimizer=("Adam", {"lr": 0.006}),
    augment="device",
    batch_size=32, val_batch_size=64, crop_size=64, epoch_size=768, epochs=60,
    noisy_prob=0.1, corr_noisy_prob=0.1, mixer_prob=0.5,
    plateau={"patience": 6, "factor": 0.5}, early_stopping=15, tile_step=32, test_tile_step=32,
    optional_sources=True,
    # Speed (issue 21): NHWC tensors run the training step 1.6x faster on a CPU (bench/cpu_step.py), in fp32.
    # bf16 autocast on top (amp="bf16", where the CPU has native bf16) gave 2.1x but lowered grouped CV
    # on the dev set (bench/realdev/README.md; lower with each of two seeds), so `small` keeps BASE's "auto":
    # fp32 training on a CPU.
    channels_last=True,
)
EXPERIMENTS["small"] = SMALL


def use_available_sources(experiment: dict, data_dir) -> dict:
    """For an experiment with optional_sources: zero the shares of noisy sources the data dir lacks.

    No train_noisy.csv: no noisy and no corrected-noisy clips. No noisy_corrections.json: no
    corrected-noisy clips (the noisy stream keeps its share). Other experiments are returned as is:
    the full-size recipes ask for their files.
    """
    if not experiment["optional_sources"]:
        return experiment
    data_dir = Path(data_dir)
    experiment = copy.deepcopy(experiment)
    if not (data_dir / "train_noisy.csv").is_file():
        experiment["noisy_prob"] = 0.0
        experiment["corr_noisy_prob"] = 0.0
    elif not (data_dir / "noisy_corrections.json").is_file():
        experiment["corr_noisy_prob"] = 0.0
    return experiment


def get_experiment(name: str) -> dict:
    """A deep copy of the named experiment (safe to modify)."""
    if name not in EXPERIMENTS:
        raise KeyError(f"Unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return copy.deepcopy(EXPERIMENTS[name])


def complete_config(experiment: dict, base: dict = BASE) -> dict:
    """A copy of an experiment recorded by an older version (its config.json), with the settings it
    lacks taken from `base` (BASE; the stacking table's base for stacking experiments).

    Dict settings (transforms, plateau) are completed one level deep; (name, kwargs) pairs are
    whole settings. Two settings replaced older ones, and their old meaning is kept:
      corrections: true/false   ->  curated_corrections and noisy_corrections "auto" (the data dir's
                                    files) or None
      no test_tile_step         ->  test predictions used `tile_step`, like the out-of-fold ones
    An experiment that has every setting comes back equal to itself.
    """
    experiment = copy.deepcopy(experiment)
    if "corrections" in experiment:
        legacy = "auto" if experiment.pop("corrections") else None
        experiment.setdefault("curated_corrections", legacy)
        experiment.setdefault("noisy_corrections", legacy)
    if "tile_step" in base and "test_tile_step" not in experiment:
        experiment["test_tile_step"] = experiment.get("tile_step", base["tile_step"])
    for key, default in base.items():
        if key not in experiment:
            experiment[key] = copy.deepcopy(default)
        elif isinstance(default, dict) and isinstance(experiment[key], dict):
            experiment[key] = {**copy.deepcopy(default), **experiment[key]}
    return experiment


def data_settings(experiment: dict) -> dict:
    """The keyword arguments of src.data.sources.load_training_data for an experiment."""
    return {"curated_corrections": experiment["curated_corrections"],
            "noisy_corrections": experiment["noisy_corrections"],
            "noisy_source": experiment["noisy_source"],
            "need_noisy": experiment["noisy_prob"] > 0,
            "need_corrected": experiment["corr_noisy_prob"] > 0}
