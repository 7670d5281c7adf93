"""Which augmentation path an experiment uses, and the settings each path reads: plain data.

src/experiments.py reads these to fill the argus params, so this module imports
nothing heavy (no torch): the experiment tables stay pure data.

    augment="sample"  per-sample numpy transforms + mixers in the DataLoader workers (the reference)
    augment="device"  the workers cut raw crops (`raw_crop_settings`), and the model augments whole
                      batches on the training device (`batch_augment_params`, src/augment/batch.py)
"""
from src.augment.checks import check_resized_crop_fits

AUGMENT_MODES = ("sample", "device")

# Experiment keys that the batch augmentation reads (transforms' wrap_pad_prob belongs to the workers' crops).
EXPERIMENT_KEYS = ("transforms", "mixer_prob", "mixer_choice", "sigmoid_range", "alpha_range")
TRANSFORM_KEYS = ("resize_scale", "resize_ratio", "resize_prob", "spec_num_mask", "spec_freq_masking",
                  "spec_time_masking", "spec_prob")


def augment_mode(experiment: dict) -> str:
    """The experiment's "augment" setting: 'sample' (per-sample numpy, BASE's) or 'device'."""
    mode = experiment["augment"]
    if mode not in AUGMENT_MODES:
        raise ValueError(f"experiment setting augment must be one of {AUGMENT_MODES}, got {mode!r}")
    return mode


def batch_augment_params(experiment: dict) -> dict:
    """The subset of an experiment that `src.augment.batch.create_batch_augment` needs, as plain data
    (it travels in the argus params, so a checkpoint rebuilds the same augmentation)."""
    missing = [key for key in EXPERIMENT_KEYS if key not in experiment]
    if missing:
        raise KeyError(f"batch augmentation: experiment lacks setting(s) {missing}")
    return {key: experiment[key] for key in EXPERIMENT_KEYS}


def raw_crop_settings(experiment: dict) -> dict:
    """kwargs of `src.data.datasets.RawCropDataset` for augment="device": the workers' pad and random crop."""
    return {"size": experiment["crop_size"], "wrap_pad_prob": experiment["transforms"]["wrap_pad_prob"]}


def check_crop_settings(experiment: dict, n_mels: int) -> None:
    """Stop on a random resized crop whose box can never fit the experiment's n_mels x crop_size crops."""
    transforms = experiment["transforms"]
    if transforms["resize_prob"] > 0:
        check_resized_crop_fits(n_mels, experiment["crop_size"], transforms["resize_scale"],
                                transforms["resize_ratio"])
