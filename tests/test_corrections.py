"""Label corrections per experiment (src/data/corrections.py, src/data/sources.py): the shipped 2019 versions,
how a setting finds its file, clips the corrections name but the data lacks, the three noisy-source
rules, and the record of the applied files in config.json."""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import predict_folds
import train_folds
from src.data.corrections import (SHIPPED_DIR, Corrections, cli_setting, load_experiment_corrections, read_curated,
                                  resolve_corrections, shipped_names)
from src.data.sources import load_training_data, noisy_sources
from src.experiments import EXPERIMENTS, complete_config, data_settings
from src.data.labels import REMOVE, load_corrections
from src.errors import BadInput, InputFileNotFound
from src.metrics import lwlrap
from src.predict.prediction_sets import read_prediction_set
from src.stacking.experiments import STACKING_EXPERIMENTS

CLASSES = ["A", "B", "C"]

# Each 2019 member's correction versions and noisy-source rule (the README's table of the ensemble).
RECIPES = {
    "auxiliary_016": ("curated_auxiliary_016", None, "all"),
    "auxiliary_019": ("curated_auxiliary_019", None, "all"),
    "corrections_002": ("curated_corrections_002_003", None, "all"),
    "corrections_003": ("curated_corrections_002_003", None, "all"),
    "corr_noisy_003": ("curated_final", "noisy_corr_noisy_003", "all"),
    "corr_noisy_004": ("curated_final", "noisy_final", "relabelled"),
    "corr_noisy_007": ("curated_final", "noisy_final", "kept"),
}


# ---------------------------------------------------------------- shipped data

def test_the_seven_members_and_the_stacking_name_shipped_versions(tmp_path):
    assert (SHIPPED_DIR / "LICENSE").read_text().startswith("MIT License")
    for name, (curated, noisy, rule) in RECIPES.items():
        experiment = EXPERIMENTS[name]
        assert (experiment["curated_corrections"], experiment["noisy_corrections"], experiment["noisy_source"]) \
            == (curated, noisy, rule), name
        # Each resolves to the shipped file, never to something in the (empty) data dir.
        assert resolve_corrections(curated, "curated", tmp_path) == SHIPPED_DIR / f"{curated}.json"
        if noisy:
            assert resolve_corrections(noisy, "noisy", tmp_path) == SHIPPED_DIR / f"{noisy}.json"
    for name, experiment in STACKING_EXPERIMENTS.items():
        expected = "auto" if name == "stacking_demo" else "curated_final"
        assert experiment["curated_corrections"] == expected


def test_shipped_noisy_versions_relabel_the_same_clips_the_same_way():
    early = load_corrections(SHIPPED_DIR / "noisy_corr_noisy_003.json")
    final = load_corrections(SHIPPED_DIR / "noisy_final.json")
    relabels = {f: v for f, v in final.items() if v != REMOVE}
    assert REMOVE not in early.values() and early == relabels
    assert len(final) - len(relabels) > 0  # noisy_final adds "remove" entries only


# ---------------------------------------------------------------- finding the file

def test_settings_resolve_to_files(tmp_path):
    assert resolve_corrections(None, "curated", tmp_path) is None
    assert resolve_corrections("auto", "curated", tmp_path) is None      # auto: none in the data dir
    (tmp_path / "corrections.json").write_text("{}")
    (tmp_path / "noisy_corrections.json").write_text("{}")
    assert resolve_corrections("auto", "curated", tmp_path) == tmp_path / "corrections.json"
    assert resolve_corrections("auto", "noisy", tmp_path) == tmp_path / "noisy_corrections.json"
    (tmp_path / "mine.json").write_text("{}")
    assert resolve_corrections("mine", "curated", tmp_path) == tmp_path / "mine.json"
    assert resolve_corrections("mine.json", "noisy", tmp_path) == tmp_path / "mine.json"
    assert resolve_corrections(str(tmp_path / "mine.json"), "noisy", "elsewhere") == tmp_path / "mine.json"
    # A bare name is a shipped version first; "NAME.json" is the data dir's file of that name.
    (tmp_path / "curated_final.json").write_text("{}")
    assert resolve_corrections("curated_final", "curated", tmp_path) == SHIPPED_DIR / "curated_final.json"
    assert resolve_corrections("curated_final.json", "curated", tmp_path) == tmp_path / "curated_final.json"
    assert "noisy_final" in shipped_names() and len(shipped_names()) == 6


def test_missing_or_bad_settings_stop_with_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)curated_corrections='curated_fnal'.*curated_fnal\.json"
                                                r".*curated_final"):
        resolve_corrections("curated_fnal", "curated", tmp_path)
    with pytest.raises(FileNotFoundError, match="noisy_corrections='fixes/noisy.json'"):
        resolve_corrections("fixes/noisy.json", "noisy", tmp_path)
    with pytest.raises(ValueError, match="curated_corrections must be None, 'auto'"):
        resolve_corrections(True, "curated", tmp_path)


def test_loaded_corrections_carry_the_file_hash(tmp_path):
    path = tmp_path / "fix.json"
    path.write_text(json.dumps({"a.wav": "B", "b.wav": "remove", "zz.wav": "C"}))
    corrections = load_experiment_corrections("fix.json", "curated", tmp_path)
    assert corrections.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    record = corrections.record(["a.wav", "b.wav", "c.wav"])
    assert record == {"setting": "fix.json", "name": "fix.json", "path": str(path), "sha256": corrections.sha256,
                      "entries": 3, "matched": 2, "relabel": 1, "remove": 1}
    assert load_experiment_corrections("auto", "curated", tmp_path).record(["a.wav"]) is None


def test_corrections_for_absent_clips_are_ignored_even_with_foreign_labels():
    # The shipped files name Kaggle clips and Kaggle classes: on other data they must not crash.
    df = pd.DataFrame({"fname": ["a.wav", "b.wav"], "labels": ["A", "B"]})
    shipped = load_experiment_corrections("curated_final", "curated", ".")
    assert shipped.apply(df, CLASSES).equals(df)
    assert shipped.record(df["fname"])["matched"] == 0
    mixed = Corrections("curated", entries={**shipped.entries, "a.wav": "C"})
    assert mixed.apply(df, CLASSES)["labels"].tolist() == ["C", "B"]
    assert mixed.record(df["fname"]) is None  # no file: nothing to record
    foreign = Corrections("curated", entries={**shipped.entries, "b.wav": "Not_a_class"})
    with pytest.raises(ValueError, match="Not_a_class"):  # an entry that matches is still checked
        foreign.apply(df, CLASSES)


# ---------------------------------------------------------------- noisy sources on generated data

def _write_set(data_dir, split, labels):
    (data_dir / split).mkdir()
    rng = np.random.default_rng(len(labels))
    rows = []
    for i, label in enumerate(labels):
        fname = f"{split[6]}{i:02d}.wav"
        sf.write(data_dir / split / fname, 0.1 * rng.standard_normal(44100 // 2).astype(np.float32), 44100)
        rows.append((fname, label))
    return pd.DataFrame(rows, columns=["fname", "labels"])


@pytest.fixture(scope="module")
def noisy_data(tmp_path_factory):
    """10 curated clips in 5 folds; 12 noisy clips labelled "A" on the web, of which the noisy
    corrections relabel n00-n03 (to B, C, "B,C", B), remove n04-n08, and name 2 absent clips."""
    data_dir = tmp_path_factory.mktemp("noisy_sources")
    (data_dir / "sample_submission.csv").write_text("fname," + ",".join(CLASSES) + "\n")
    curated = _write_set(data_dir, "train_curated", ["A", "B", "C", "A,B", "C"] * 2)
    curated["fold"] = np.arange(10) % 5
    curated.to_csv(data_dir / "train_folds.csv", index=False)
    _write_set(data_dir, "train_noisy", ["A"] * 12).to_csv(data_dir / "train_noisy.csv", index=False)
    noisy_fix = {"n00.wav": "B", "n01.wav": "C", "n02.wav": "B,C", "n03.wav": "B",
                 **{f"n{i:02d}.wav": "remove" for i in range(4, 9)},
                 "kaggle1.wav": "Bark", "kaggle2.wav": "remove"}
    (data_dir / "noisy_corrections.json").write_text(json.dumps(noisy_fix))
    (data_dir / "corrections.json").write_text(json.dumps({"c00.wav": "remove", "c01.wav": "A", "x.wav": "B"}))
    return data_dir


def _labels(source):
    return {f: ",".join(c for c, on in zip(CLASSES, t) if on) for f, t in zip(source.fnames, source.targets)}


RELABELLED = {"n00.wav": "B", "n01.wav": "C", "n02.wav": "B,C", "n03.wav": "B"}
UNTOUCHED = {f"n{i:02d}.wav": "A" for i in range(9, 12)}
REMOVED_WEB = {f"n{i:02d}.wav": "A" for i in range(4, 9)}


@pytest.mark.parametrize("rule, expected_noisy", [
    ("all", {**{f: "A" for f in RELABELLED}, **REMOVED_WEB, **UNTOUCHED}),   # 12 clips, web labels
    ("relabelled", RELABELLED),                                             # 4 clips, corrected labels
    ("kept", {**RELABELLED, **UNTOUCHED}),                                  # 12 - 5 removed, relabels applied
])
def test_noisy_source_rules(noisy_data, rule, expected_noisy):
    data = load_training_data(noisy_data, noisy_corrections="auto", noisy_source=rule, need_noisy=True,
                              need_corrected=True, workers=1)
    assert _labels(data.noisy) == expected_noisy and len(data.noisy) == len(expected_noisy)
    assert _labels(data.corrected) == RELABELLED      # the corrected-noisy source is the same for every rule
    # Every spectrogram is its own clip's: the same as in the all-clips source.
    everything = load_training_data(noisy_data, noisy_source="all", need_noisy=True, workers=1).noisy
    by_name = dict(zip(everything.fnames, everything.specs))
    assert all(np.array_equal(spec, by_name[f]) for f, spec in zip(data.noisy.fnames, data.noisy.specs))
    assert data.corrections["noisy"]["matched"] == 9 and data.corrections["noisy"]["entries"] == 11


def test_curated_corrections_relabel_remove_and_skip_absent_clips(noisy_data):
    data = load_training_data(noisy_data, curated_corrections="auto", workers=1)
    labels = _labels(data.curated)
    assert "c00.wav" not in labels and labels["c01.wav"] == "A" and len(labels) == 9
    assert len(data.folds) == 9 and data.corrections["curated"]["matched"] == 2
    plain = load_training_data(noisy_data, curated_corrections=None, workers=1)
    assert len(plain.curated) == 10 and _labels(plain.curated)["c01.wav"] == "B"
    assert plain.corrections == {"curated": None, "noisy": None}


def test_noisy_source_rules_on_frames_directly():
    noisy_df = pd.DataFrame({"fname": ["a", "b", "c"], "labels": ["A", "A", "A"]})
    corrections = Corrections("noisy", entries={"a": "B", "b": "remove"})
    for rule, fnames in (("all", ["a", "b", "c"]), ("relabelled", ["a"]), ("kept", ["a", "c"])):
        noisy, corrected = noisy_sources(noisy_df, corrections, rule, CLASSES)
        assert noisy["fname"].tolist() == fnames and corrected["fname"].tolist() == ["a"]
        assert noisy.set_index("fname").loc["a", "labels"] == ("A" if rule == "all" else "B")
    with pytest.raises(ValueError, match="noisy_source must be one of"):
        noisy_sources(noisy_df, corrections, "clean", CLASSES)


def test_missing_noisy_corrections_stop_the_run(noisy_data, tmp_path):
    # user errors (one line, exit 2 from a script), not tracebacks
    with pytest.raises(InputFileNotFound, match="noisy_corrections='elsewhere'"):
        load_training_data(noisy_data, noisy_corrections="elsewhere", need_corrected=True, workers=1)
    with pytest.raises(InputFileNotFound, match="noisy_source='kept'.*noisy_corrections=None"):
        load_training_data(noisy_data, noisy_corrections=None, noisy_source="kept", need_noisy=True, workers=1)
    # Kaggle's file on other data: no clip relabelled, so no corrected-noisy source; said so.
    with pytest.raises(BadInput, match=r"noisy_final\.json: relabels no clip"):
        load_training_data(noisy_data, noisy_corrections="noisy_final", need_corrected=True, workers=1)
    # Web labels only: no corrections needed, none read.
    data = load_training_data(noisy_data, noisy_corrections="elsewhere", need_noisy=True, workers=1)
    assert len(data.noisy) == 12 and data.corrections["noisy"] is None


def test_data_settings_of_experiments_and_old_configs():
    settings = data_settings(EXPERIMENTS["corr_noisy_004"])
    assert settings == {"curated_corrections": "curated_final", "noisy_corrections": "noisy_final",
                        "noisy_source": "relabelled", "need_noisy": True, "need_corrected": True}
    # A config.json from before these settings: `corrections: true/false`.
    assert data_settings(complete_config({"corrections": True, "noisy_prob": 0.2}))["curated_corrections"] == "auto"
    assert data_settings(complete_config({"corrections": False}))["noisy_corrections"] is None


def test_one_reader_of_curated_labels_for_training_stacking_and_scoring(noisy_data):
    # Training and stacking name a setting ("auto"); blend.py / review_labels.py a file path (cli_setting).
    by_setting = read_curated(noisy_data, CLASSES, "auto")
    by_path = read_curated(noisy_data, CLASSES, cli_setting(str(noisy_data / "corrections.json")), need_folds=False)
    assert by_setting.labels == by_path.labels
    assert "c00.wav" not in by_setting.labels and by_setting.removed == {"c00.wav"} and len(by_setting.kept) == 9
    assert by_setting.record()["sha256"] == hashlib.sha256((noisy_data / "corrections.json").read_bytes()).hexdigest()
    keep, y_true = by_setting.targets(["c00.wav", "c01.wav"], CLASSES)
    assert keep.tolist() == [False, True] and y_true.shape == (1, len(CLASSES))


def test_training_records_the_files_and_oof_covers_removed_clips(noisy_data):
    # demo reads the data dir's files ("auto"): corrections.json drops c00 (fold 0), relabels c01.
    d = str(noisy_data)
    train_folds.main(["--experiment", "demo", "--data-dir", d, "--folds", "0", "--epochs", "1", "--workers", "0",
                      "--threads", "1", "--no-progress", "--set", "epoch_size=32", "--set", "batch_size=16",
                      "--set", "noisy_prob=0", "--set", "corr_noisy_prob=0"])
    config = json.loads((noisy_data / "experiments" / "demo" / "config.json").read_text())
    curated = config["corrections"]["curated"]
    assert curated["sha256"] == hashlib.sha256((noisy_data / "corrections.json").read_bytes()).hexdigest()
    assert (curated["name"], curated["matched"], curated["remove"]) == ("corrections.json", 2, 1)
    assert config["corrections"]["noisy"] is None  # no noisy stream sampled

    report = predict_folds.main(["--experiment", "demo", "--data-dir", d, "--no-test", "--threads", "1"])
    oof = read_prediction_set(noisy_data / "predictions" / "demo" / "oof")
    # The removed clip still gets a prediction (stacking on other labels may need it) ...
    assert sorted(oof.fnames) == ["c00.wav", "c05.wav"]
    # ... but the CV score uses the experiment's labels, which leave it out.
    kept = oof.fnames.index("c05.wav")
    assert report["lwlrap"] == pytest.approx(lwlrap(np.array([[1.0, 0, 0]]), oof.probs[[kept]]))
