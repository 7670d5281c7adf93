import json

import numpy as np
import pandas as pd
import pytest

from src.config import AUDIO, AudioConfig, resolve_data_dir
from src.data.layout import read_classes
from src.data.labels import (apply_corrections, check_files, check_labels, labels_to_target, load_corrections,
                        parse_labels, read_train_csv)


def test_audio_config_hash_is_stable_and_sensitive():
    assert AUDIO.short_hash() == AudioConfig().short_hash()
    assert len(AUDIO.short_hash()) == 10
    assert AudioConfig(hop_length=512).short_hash() != AUDIO.short_hash()
    with pytest.raises(Exception):
        AUDIO.n_mels = 64  # frozen
    assert AUDIO.n_fft == 128 * 20 and AUDIO.hop_length == 345 * 2


def test_data_dir_precedence(monkeypatch):
    monkeypatch.delenv("FSAT_DATA_DIR", raising=False)
    assert str(resolve_data_dir()) == "data"
    monkeypatch.setenv("FSAT_DATA_DIR", "/somewhere")
    assert str(resolve_data_dir()) == "/somewhere"
    assert str(resolve_data_dir("cli")) == "cli"


def test_classes_from_sample_submission_keep_kaggle_order(tmp_path):
    pd.DataFrame(columns=["fname", "Zebra", "Apple", "Mango"]).to_csv(tmp_path / "sample_submission.csv", index=False)
    assert read_classes(tmp_path) == ["Zebra", "Apple", "Mango"]


def test_classes_fall_back_to_sorted_train_labels(tmp_path):
    pd.DataFrame({"fname": ["a.wav", "b.wav"], "labels": ["Zebra,Apple", "Mango"]}).to_csv(
        tmp_path / "train_curated.csv", index=False)
    pd.DataFrame({"fname": ["c.wav"], "labels": ["Kiwi"]}).to_csv(tmp_path / "train_noisy.csv", index=False)
    assert read_classes(tmp_path) == ["Apple", "Kiwi", "Mango", "Zebra"]
    with pytest.raises(FileNotFoundError, match="No class list"):
        read_classes(tmp_path / "nowhere")


def test_parse_and_targets():
    assert parse_labels("Bark, Walk_and_footsteps") == ["Bark", "Walk_and_footsteps"]
    assert parse_labels("") == [] and parse_labels(float("nan")) == []
    target = labels_to_target(["C", "A"], ["A", "B", "C"])
    assert target.dtype == np.float32 and target.tolist() == [1, 0, 1]


def test_read_train_csv_names_missing_columns_and_empty_labels(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"fname": ["a.wav"], "label": ["A"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"t.csv: missing column\(s\) \['labels'\]"):
        read_train_csv(path)
    pd.DataFrame({"fname": ["a.wav", "b.wav"], "labels": ["A", ""]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="without labels.*b.wav"):
        read_train_csv(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_train_csv(tmp_path / "nope.csv")


def test_unknown_labels_and_missing_files_are_listed(tmp_path):
    df = pd.DataFrame({"fname": ["a.wav", "b.wav"], "labels": ["A,Bogus", "B"]})
    with pytest.raises(ValueError, match="'Bogus' in 1 file.*a.wav"):
        check_labels(df, ["A", "B"], source="train.csv")
    (tmp_path / "a.wav").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"1 file\(s\).*b.wav"):
        check_files(df, tmp_path)


def test_corrections_relabel_and_remove(tmp_path):
    df = pd.DataFrame({"fname": ["a.wav", "b.wav", "c.wav"], "labels": ["A", "B", "A,B"]})
    path = tmp_path / "corr.json"
    path.write_text(json.dumps({"a.wav": "B", "c.wav": "remove", "zzz.wav": "A"}))
    corrected = apply_corrections(df, load_corrections(path), classes=["A", "B"])
    assert corrected.to_dict("list") == {"fname": ["a.wav", "b.wav"], "labels": ["B", "B"]}
    assert df["labels"].tolist() == ["A", "B", "A,B"]  # input untouched
    with pytest.raises(ValueError, match="(?s)label corrections.*'C'"):
        apply_corrections(df, {"a.wav": "C"}, classes=["A", "B"])
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="corr.json"):
        load_corrections(path)
    assert load_corrections(None) == {}
