"""Experiment settings: strict `--set KEY=VALUE` (every level of a dotted key must be a setting), and
every setting in the tables, with `complete_config` for the config.json of older runs."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.errors import BadSetting, UserError
from src.experiments import BASE, EXPERIMENTS, complete_config, get_experiment
from src.overrides import apply_override, apply_overrides, parse_value
from src.stacking.experiments import BASE as STACKING_BASE, STACKING_EXPERIMENTS, get_stacking_experiment

ROOT = Path(__file__).resolve().parents[1]


def leaves(settings, prefix=""):
    """(dotted key, value) of every setting --set can reach: dict keys and the kwargs of (name, kwargs) pairs."""
    pair = isinstance(settings, tuple) and len(settings) == 2 and isinstance(settings[1], dict)
    children = settings[1] if pair else settings
    if not isinstance(children, dict) or not children:  # a value (or a pair without kwargs: set as a whole)
        yield prefix, settings
        return
    for key, value in children.items():
        yield from leaves(value, f"{prefix}.{key}" if prefix else key)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS) + sorted(STACKING_EXPERIMENTS))
def test_every_setting_of_every_experiment_can_be_set_to_itself(name):
    experiment = get_experiment(name) if name in EXPERIMENTS else get_stacking_experiment(name)
    original = copy.deepcopy(experiment)
    keys = [key for key, _ in leaves(experiment)]
    assert {"plateau.patience", "optimizer.lr", "model.dropout"} <= set(keys)
    for key, value in leaves(original):
        apply_override(experiment, f"{key}={value!r}")
    assert experiment == original


def test_valid_keys_change_only_their_setting():
    experiment = get_experiment("corr_noisy_007")
    apply_overrides(experiment, ["batch_size=64", "plateau.patience=3", "model.base_size=8",
                                 "loss.base.noisy_params.beta=0.6", "transforms.resize_scale=(0.5, 1.0)"])
    expected = get_experiment("corr_noisy_007")
    expected["batch_size"] = 64
    expected["plateau"]["patience"] = 3
    expected["model"][1]["base_size"] = 8
    expected["loss"][1]["base"]["noisy_params"]["beta"] = 0.6
    expected["transforms"]["resize_scale"] = (0.5, 1.0)
    assert experiment == expected
    # A whole (name, kwargs) pair: how a model or optimizer gets an argument the table does not list.
    apply_override(experiment, "optimizer=('AdamW', {'lr': 1e-3, 'weight_decay': 0.01})")
    assert experiment["optimizer"] == ("AdamW", {"lr": 1e-3, "weight_decay": 0.01})
    stacking = get_stacking_experiment("stacking_demo")
    apply_overrides(stacking, ["model.reduction=4", "inputs=['demo']", "run_prob=0.25"])
    assert stacking["model"][1]["reduction"] == 4 and stacking["inputs"] == ["demo"] and stacking["run_prob"] == 0.25


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("1e-3", 1e-3), ("-0.5", -0.5), ("(3, 12)", (3, 12)), ("[1.0, 0.4]", [1.0, 0.4]),
    ("True", True), ("None", None), ("'none'", "none"), ("bf16", "bf16"), ("curated_final", "curated_final"),
    ("{'patience': 2}", {"patience": 2}), ("a b", "a b"),
])
def test_values_are_python_literals_or_plain_strings(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)
    experiment = get_experiment("demo")
    apply_override(experiment, f"amp={text}")
    assert experiment["amp"] == value


@pytest.mark.parametrize("text, value", [("false", False), ("False", False), ("TRUE", True), ("true", True)])
def test_a_switch_takes_true_or_false_in_any_case(text, value):
    # `--set channels_last=false` used to set the text 'false', which is truthy: NHWC stayed on.
    experiment = get_experiment("small")
    apply_override(experiment, f"channels_last={text}")
    assert experiment["channels_last"] is value


@pytest.mark.parametrize("assignment, says", [
    ("channels_last=flase", "channels_last is True or False (it is True now)"),
    ("channels_last=1", "channels_last is True or False"),
    ("epoch_size=768.0", "epoch_size is a whole number (it is 768 now)"),
    ("epoch_size=6400x", "epoch_size is a whole number"),
    ("epochs=True", "epochs is a whole number"),
    ("optimizer.lr=fast", "optimizer.lr is a number (it is 0.006 now)"),
    ("transforms.resize_ratio=wide", "transforms.resize_ratio is a tuple or list"),
    ("model=AuxSkipAttention", "model is a tuple or list"),
])
def test_a_value_of_the_wrong_kind_is_refused_and_nothing_changes(assignment, says):
    experiment = get_experiment("small")
    before = copy.deepcopy(experiment)
    with pytest.raises(BadSetting) as info:
        apply_override(experiment, assignment)
    assert str(info.value).startswith(f"--set {assignment}: {says}"), str(info.value)
    assert experiment == before


def test_values_of_a_suited_kind_are_taken():
    experiment = get_experiment("small")
    apply_overrides(experiment, ["optimizer.lr=1", "noisy_prob=0", "transforms.resize_ratio=[0.4, 0.6]",
                                 "amp=none", "curated_corrections=None"])
    assert experiment["optimizer"][1]["lr"] == 1 and experiment["noisy_prob"] == 0
    assert experiment["transforms"]["resize_ratio"] == [0.4, 0.6] and experiment["amp"] == "none"
    assert experiment["curated_corrections"] is None


@pytest.mark.parametrize("key, unknown, valid", [
    ("bacth_size", "bacth_size", sorted(BASE)),                                  # top level
    ("plateau.patiance", "patiance", sorted(BASE["plateau"])),                   # a nested dict
    ("model.base_sise", "base_sise", sorted(BASE["model"][1])),                  # a (name, kwargs) pair
    ("loss.base.noisy_params.betta", "betta", ["beta"]),                         # four levels down
    ("transforms.spec_prob.x", None, None),                                      # below a value
    ("plateu.patience", "plateu", sorted(BASE)),                                 # the first of two levels
])
def test_a_typo_at_any_level_is_refused_with_the_valid_keys(key, unknown, valid):
    experiment = get_experiment("auxiliary_016")
    before = copy.deepcopy(experiment)
    with pytest.raises(BadSetting) as info:
        apply_override(experiment, f"{key}=3")
    message = str(info.value)
    assert isinstance(info.value, UserError) and message.startswith(f"--set {key}: ")
    if unknown is None:
        assert "transforms.spec_prob is a value (0.5)" in message
    else:
        assert f"unknown setting {unknown!r}" in message
        assert message.split("valid ")[1].split(": ", 1)[1].split(";")[0] == ", ".join(valid)
    assert experiment == before  # nothing half-applied


def test_error_text_names_the_level_and_the_way_out():
    with pytest.raises(BadSetting, match=r"^--set plateau\.patiance: unknown setting 'patiance'; valid settings of "
                                         r"plateau: factor, min_lr, patience$"):
        apply_override(get_experiment("demo"), "plateau.patiance=3")
    with pytest.raises(BadSetting, match=r"valid settings of optimizer: lr; to pass another argument, set the "
                                         r"whole pair: --set optimizer="):
        apply_override(get_experiment("demo"), "optimizer.weight_decay=0.01")
    with pytest.raises(BadSetting, match="valid top-level settings: .*inputs.*run_prob"):
        apply_override(get_stacking_experiment("stacking_demo"), "run_porb=0.2")
    with pytest.raises(BadSetting, match="expects KEY=VALUE"):
        apply_override(get_experiment("demo"), "plateau.patience")


@pytest.mark.parametrize("script, experiment", [("train_folds.py", "demo"), ("stacking_train.py", "stacking_demo")])
def test_scripts_refuse_a_typo_in_one_line_and_write_nothing(tmp_path, script, experiment):
    result = subprocess.run([sys.executable, script, "--experiment", experiment, "--data-dir", str(tmp_path),
                             "--set", "plateau.patiance=3"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"{script}: error: --set plateau.patiance: unknown setting 'patiance'")
    assert "patience" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_train_folds_refuses_a_resized_crop_that_never_fits_and_writes_nothing(tmp_path):
    # demo's ratio suits 64-frame crops; on 256 frames no box of it fits (every crop the same stretched band).
    result = subprocess.run([sys.executable, "train_folds.py", "--experiment", "demo", "--data-dir", str(tmp_path),
                             "--set", "crop_size=256"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "transforms.resize_ratio (0.425, 0.575) never fits a 128 x 256 crop" in lines[0]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- every setting in the table

def test_every_experiment_has_exactly_the_settings_of_its_base():
    for name, experiment in EXPERIMENTS.items():
        assert set(experiment) == set(BASE), name
        assert complete_config(experiment) == experiment, name
    for name, experiment in STACKING_EXPERIMENTS.items():
        assert set(experiment) == set(STACKING_BASE), name
        assert complete_config(experiment, STACKING_BASE) == experiment, name


def test_complete_config_fills_what_an_older_run_did_not_record():
    old = json.loads(json.dumps(get_experiment("corr_noisy_004")))  # as read back from config.json
    for key in ("amp", "augment", "channels_last", "compile", "optional_sources", "val_batch_size"):
        del old[key]
    del old["transforms"]["wrap_pad_prob"], old["plateau"]["min_lr"]
    before = copy.deepcopy(old)
    completed = complete_config(old)
    assert old == before  # a copy
    for key in ("amp", "augment", "channels_last", "compile", "optional_sources", "val_batch_size"):
        assert completed[key] == BASE[key]
    assert completed["transforms"] == {**old["transforms"], "wrap_pad_prob": BASE["transforms"]["wrap_pad_prob"]}
    assert completed["plateau"] == {**old["plateau"], "min_lr": BASE["plateau"]["min_lr"]}
    assert completed["noisy_source"] == "relabelled" and completed["model"] == old["model"]  # recorded: kept


def test_complete_config_keeps_the_meaning_of_older_settings():
    # `corrections: true/false` before curated_corrections / noisy_corrections: the data dir's files, or none
    assert complete_config({"corrections": True})["curated_corrections"] == "auto"
    completed = complete_config({"corrections": False, "noisy_corrections": "noisy_final"})
    assert completed["curated_corrections"] is None and completed["noisy_corrections"] == "noisy_final"
    assert "corrections" not in completed
    # no test_tile_step: test predictions used the out-of-fold step
    assert complete_config({"tile_step": 32})["test_tile_step"] == 32
    assert complete_config({})["test_tile_step"] == BASE["tile_step"]
    assert complete_config({"tile_step": 32, "test_tile_step": 96})["test_tile_step"] == 96
    stacking = {k: v for k, v in STACKING_EXPERIMENTS["stacking_demo"].items() if k not in ("compile", "channels_last")}
    assert complete_config(stacking, STACKING_BASE) == STACKING_EXPERIMENTS["stacking_demo"]
