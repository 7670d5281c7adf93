import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from src.data import demo_data
from src.errors import ResultsExist
from src.data.demo_data import DEMO_CLASSES, SPLITS, generate_demo_dataset, make_clip, make_plan, write_clip

SMALL = dict(n_curated=40, n_noisy=20, n_test=10)
CSV_FILES = ["train_curated.csv", "train_noisy.csv", "test_labels.csv", "sample_submission.csv",
             "train_noisy_true_labels.csv"]
JSON_FILES = ["DATASET.json", "noisy_corrections.json"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "data", seed=0, progress=False, **SMALL)


def split_labels(value):
    return value.split(",")


def folder_bytes(root):
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the label plan (no audio)

def test_class_list_is_twelve_distinct_names_not_alphabetical():
    assert len(DEMO_CLASSES) == 12 and len(set(DEMO_CLASSES)) == 12
    assert DEMO_CLASSES != sorted(DEMO_CLASSES)  # code that sorts the vocabulary gets caught
    assert all(re.fullmatch(r"[A-Za-z_]+", c) for c in DEMO_CLASSES)  # no commas or quotes


def test_default_plan_statistics():
    plan = make_plan(seed=0)
    by_split = {s: [c for c in plan if c.split == s] for s in SPLITS}
    assert {s: len(v) for s, v in by_split.items()} == demo_data.DEFAULT_COUNTS

    for split, clips in by_split.items():
        share = np.mean([len(c.true_labels) == 2 for c in clips])
        assert 0.1 <= share <= 0.3, (split, share)
        assert all(1 <= len(c.true_labels) <= 2 for c in clips)
        for c in clips:
            assert len(set(c.labels)) == len(c.labels) >= 1 and set(c.labels) <= set(DEMO_CLASSES)
            assert 0.3 <= c.duration <= 20.0

    curated = Counter(label for c in by_split["train_curated"] for label in c.labels)
    assert set(curated) == set(DEMO_CLASSES) and min(curated.values()) >= 15

    durations = np.array([c.duration for c in plan])
    assert 0.8 <= durations.mean() <= 4.0 and durations.max() >= 4.0  # mostly short, some long

    fnames = [c.fname for c in plan]
    assert len(set(fnames)) == len(fnames)
    assert all(re.fullmatch(r"[0-9a-f]{8}\.wav", f) for f in fnames)


def test_noisy_corruption_rate_and_kinds():
    clips = [c for c in make_plan(seed=3) if c.split == "train_noisy"]
    corrupted = [c for c in clips if c.corruption]
    assert abs(len(corrupted) / len(clips) - demo_data.NOISY_CORRUPTION_SHARE) < 0.02
    assert all(c.labels == c.true_labels for c in clips if not c.corruption)
    assert {c.corruption for c in corrupted} == {"swap", "drop", "add"}
    for c in corrupted:
        true, seen = set(c.true_labels), set(c.labels)
        assert seen != true and len(seen) >= 1
        if c.corruption == "swap":
            assert len(seen) == len(true) and len(seen - true) == 1
        elif c.corruption == "drop":
            assert seen < true and len(seen) == len(true) - 1
        else:
            assert seen > true and len(seen) == len(true) + 1
    # Curated and test labels are never corrupted.
    assert all(not c.corruption and c.labels == c.true_labels
               for c in make_plan(seed=3) if c.split != "train_noisy")


def test_plan_is_deterministic_and_validates_arguments():
    assert make_plan(seed=5, **SMALL) == make_plan(seed=5, **SMALL)
    assert make_plan(seed=5, **SMALL) != make_plan(seed=6, **SMALL)
    with pytest.raises(ValueError, match="train_noisy"):
        make_plan(seed=0, n_curated=10, n_noisy=0, n_test=5)
    with pytest.raises(ValueError, match="seed"):
        make_plan(seed=-1)


# ---------------------------------------------------------------- the written dataset

def test_noisy_corrections_are_true_labels_of_a_reviewed_share(small):
    corrections = json.loads((small / "noisy_corrections.json").read_text())
    truth = pd.read_csv(small / "train_noisy_true_labels.csv", keep_default_na=False).set_index("fname")
    assert corrections and set(corrections) < set(truth.index)
    assert all(labels == truth.loc[fname, "labels"] for fname, labels in corrections.items())


def test_layout_and_csv_columns(small):
    assert sorted(p.name for p in small.iterdir()) == sorted(
        [*JSON_FILES, *CSV_FILES, "train_curated", "train_noisy", "test"])
    for split, csv, n in [("train_curated", "train_curated.csv", 40), ("train_noisy", "train_noisy.csv", 20),
                          ("test", "test_labels.csv", 10)]:
        df = pd.read_csv(small / csv, dtype=str, keep_default_na=False)
        assert list(df.columns) == ["fname", "labels"]
        assert len(df) == n and df["fname"].is_unique and list(df["fname"]) == sorted(df["fname"])
        assert sorted(p.name for p in (small / split).iterdir()) == list(df["fname"])
        for value in df["labels"]:
            labels = split_labels(value)
            assert 1 <= len(labels) and set(labels) <= set(DEMO_CLASSES), value
    # A two-label row keeps its labels in one quoted CSV field, as pandas/Kaggle write it.
    text = (small / "train_curated.csv").read_text()
    assert re.search(r'^[0-9a-f]{8}\.wav,"[A-Za-z_]+,[A-Za-z_]+"$', text, re.M)
    # No temporary folders are left beside the dataset.
    assert [p.name for p in small.parent.iterdir()] == [small.name]


def test_sample_submission_header_and_rows(small):
    sub = pd.read_csv(small / "sample_submission.csv")
    assert list(sub.columns) == ["fname"] + DEMO_CLASSES
    truth = pd.read_csv(small / "test_labels.csv")
    assert list(sub["fname"]) == list(truth["fname"])
    assert (sub[DEMO_CLASSES].to_numpy() == 0).all()


def test_wav_format_and_durations(small):
    plan = {c.fname: c for c in make_plan(seed=0, **SMALL)}
    for split in SPLITS:
        for path in (small / split).iterdir():
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (44100, 1, "PCM_16", "WAV")
            assert info.frames == round(plan[path.name].duration * 44100)
            assert 0.3 <= info.duration <= 20.0
            audio, _ = sf.read(path)
            peak_db = 20 * np.log10(np.abs(audio).max())
            assert -31 <= peak_db <= -0.9, (path, peak_db)


def test_noisy_csv_matches_plan_and_truth_file(small):
    noisy = pd.read_csv(small / "train_noisy.csv").set_index("fname")["labels"]
    truth = pd.read_csv(small / "train_noisy_true_labels.csv", keep_default_na=False).set_index("fname")
    differs = noisy != truth["labels"]
    assert differs.sum() == round(0.3 * 20)
    assert (differs == (truth["corruption"] != "")).all()


def test_dataset_json_records_the_parameters(small):
    meta = json.loads((small / "DATASET.json").read_text())
    assert meta["seed"] == 0 and meta["classes"] == DEMO_CLASSES and meta["sample_rate"] == 44100
    assert {s: meta["splits"][s]["clips"] for s in SPLITS} == {
        "train_curated": 40, "train_noisy": 20, "test": 10}


def test_same_seed_gives_identical_bytes_other_seed_differs(small, tmp_path):
    again = generate_demo_dataset(tmp_path / "again", seed=0, progress=False, **SMALL)
    assert folder_bytes(again) == folder_bytes(small)
    other = generate_demo_dataset(tmp_path / "other", seed=1, progress=False, **SMALL)
    assert (other / "train_curated.csv").read_bytes() != (small / "train_curated.csv").read_bytes()
    assert not set(folder_bytes(other).values()) & {v for k, v in folder_bytes(small).items() if k.endswith(".wav")}


def test_a_clip_does_not_depend_on_write_order(small, tmp_path):
    clip = make_plan(seed=0, **SMALL)[45]  # a noisy clip, written alone
    (tmp_path / clip.split).mkdir()
    write_clip(tmp_path, clip)
    assert (tmp_path / clip.split / clip.fname).read_bytes() == (small / clip.split / clip.fname).read_bytes()


def test_refuses_to_overwrite_unless_asked(tmp_path):
    tiny = dict(n_curated=3, n_noisy=2, n_test=2, progress=False)
    out = generate_demo_dataset(tmp_path / "d", seed=0, **tiny)
    before = folder_bytes(out)
    with pytest.raises(FileExistsError, match="not empty"):
        generate_demo_dataset(out, seed=1, **tiny)
    assert folder_bytes(out) == before
    generate_demo_dataset(out, seed=1, overwrite=True, **tiny)
    assert json.loads((out / "DATASET.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # old copy and temp folder are gone

    # A folder that is not a demo dataset is never deleted, even with overwrite.
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="DATASET.json"):
        generate_demo_dataset(other, overwrite=True, **tiny)
    assert (other / "keep.txt").read_text() == "precious"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write(folder, clip):
        calls.append(clip)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(folder, clip)

    real_write = demo_data.write_clip
    monkeypatch.setattr(demo_data, "write_clip", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(tmp_path / "d", n_curated=3, n_noisy=2, n_test=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    args = ["--out", str(tmp_path / "cli"), "--seed", "2", "--n-curated", "4", "--n-noisy", "2",
            "--n-test", "2", "--quiet"]
    demo_data.main(args)
    assert "wrote" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "cli" / "train_curated.csv")) == 4
    with pytest.raises(ResultsExist, match="--overwrite"):
        demo_data.main(args)
    demo_data.main(args + ["--overwrite"])
    with pytest.raises(SystemExit) as exc:
        demo_data.main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for option in ["--out", "--seed", "--n-curated", "--n-noisy", "--n-test", "--overwrite", "--quiet"]:
        assert option in help_text


# ---------------------------------------------------------------- the sounds


def test_module_cli_reports_a_refusal_in_one_line(tmp_path):
    (tmp_path / "mine.txt").write_text("a user's file")
    result = subprocess.run([sys.executable, "-m", "src.data.demo_data", "--out", str(tmp_path), "--quiet"],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [f"demo_data.py: error: {tmp_path}: folder exists and is not "
                                                  f"empty; refusing to overwrite it (pass overwrite=True / "
                                                  f"--overwrite to replace it)"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]

def log_mel(audio):
    mel = librosa.feature.melspectrogram(y=audio, sr=44100, n_fft=2560, hop_length=690, n_mels=128,
                                         fmin=20, fmax=22050)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80)


def test_classes_are_distinguishable_by_nearest_centroid():
    """Mean and spread over time of each log-mel band, loudness removed, nearest class centroid.

    Half the clips of each class make the centroids, the other half are classified;
    chance is 1/12. (The time spread separates steady sounds from events/modulation.)
    """
    rng = np.random.default_rng(0)
    features, classes = [], []
    for k, name in enumerate(DEMO_CLASSES):
        for _ in range(10):
            spec = log_mel(make_clip(name, rng.uniform(0.5, 1.5), rng))
            features.append(np.concatenate([spec.mean(1) - spec.mean(), spec.std(1)]))
            classes.append(k)
    features, classes = np.array(features), np.array(classes)
    train = np.arange(len(classes)) % 2 == 0
    centroids = np.stack([features[train & (classes == k)].mean(0) for k in range(len(DEMO_CLASSES))])
    distances = ((features[~train, None] - centroids[None]) ** 2).sum(-1)
    accuracy = (distances.argmin(1) == classes[~train]).mean()
    assert accuracy > 0.8, accuracy


def test_two_label_clip_contains_both_sounds():
    rng = np.random.default_rng(1)
    band = librosa.mel_frequencies(128, fmin=20, fmax=22050) > 10000
    levels = dict(peak_dbfs=(-6, -6), background_db=(-50, -50))
    alone = log_mel(make_clip("Sine_tone", 1.0, rng, **levels))
    mixed = log_mel(make_clip(["Sine_tone", "High_noise_band"], 1.0, rng, **levels))
    assert mixed[band].mean() > alone[band].mean() + 12  # the hiss is there...
    # ...and the tone (300-900 Hz) keeps its level within the +-6 dB mixing range (plus peak renormalisation).
    low = librosa.mel_frequencies(128, fmin=20, fmax=22050) < 1000
    assert mixed[low].mean(1).max() > alone[low].mean(1).max() - 15


def test_leading_trailing_silence_is_trimmable():
    rng = np.random.default_rng(2)
    for name in ["Sine_tone", "Click_rhythm", "Dripping"]:
        padded = make_clip(name, 2.0, rng, silence_prob=1.0)
        _, (start, end) = librosa.effects.trim(padded, top_db=60)
        assert (end - start) < 0.92 * len(padded), name  # 10-40% of the clip is silence
        plain = make_clip(name, 2.0, rng, silence_prob=0.0)
        _, (start, end) = librosa.effects.trim(plain, top_db=60)
        assert (end - start) > 0.97 * len(plain), name  # background noise is not trimmed away


def test_make_clip_rejects_bad_labels():
    rng = np.random.default_rng(0)
    for labels in (["Not_a_class"], [], ["Sine_tone", "Sine_tone"]):
        with pytest.raises(ValueError, match="labels"):
            make_clip(labels, 1.0, rng)
