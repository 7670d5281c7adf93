"""make_dataset.py: a user's recordings (class folders or a CSV) into the Kaggle layout the repo reads."""
import hashlib
import os
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import make_dataset
import make_folds
from src.cli import run
from src.data.labels import check_files, check_labels, parse_labels, read_train_csv
from src.data.layout import read_classes, read_folds, read_test_fnames
from src.errors import BadInput, ResultsExist
from tests.helpers import sound

SR = 16000


def write_audio(path, seed, seconds=0.2):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, sound(seconds, sr=SR, seed=seed), SR, format="FLAC" if path.suffix == ".flac" else "WAV")
    return path


def class_folders(root, classes=(("Dog", 6), ("Cat", 5), ("Bird song", 4)), speakers=3):
    """root/<class>/spkK_takeN.{wav,flac}: every file different, K = N % speakers."""
    seed = 0
    for name, n in classes:
        for i in range(n):
            seed += 1
            write_audio(root / name / f"spk{i % speakers}_take{i}.{'wav' if i % 2 else 'flac'}", seed)
    return root


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def originals(root):
    """sha256 of the bytes -> class folder, of every file under root/<class>/."""
    return {sha(p): p.parent.name for p in root.glob("*/*")}


def make(*args):
    make_dataset.main([str(a) for a in args] + ["--no-progress"])


def test_class_folders_round_trip_to_csvs_the_repo_reads(tmp_path):
    src = class_folders(tmp_path / "rec")
    (src / "notes.txt").write_text("not audio")
    out = tmp_path / "data"
    make(src, "--out", out)
    df = read_train_csv(out / "train_curated.csv")
    assert df.columns.tolist() == ["fname", "labels", "source"]
    assert len(df) == 15
    by_bytes = originals(src)
    assert [by_bytes[sha(out / "train_curated" / f)] for f in df["fname"]] == df["labels"].tolist()
    assert sorted(df["source"]) == sorted(p.relative_to(src).as_posix() for p in src.glob("*/*.*") if p.suffix != ".txt")
    assert read_classes(out) == ["Bird song", "Cat", "Dog"]
    assert read_test_fnames(out) == []
    check_labels(df, read_classes(out))
    check_files(df, out / "train_curated")
    # hard links by default: the same inode as the original
    first = out / "train_curated" / df["fname"][0]
    assert first.stat().st_nlink == 2
    # the fnames are stable: the same input gives the same names
    make(src, "--out", tmp_path / "again", "--copy")
    again = read_train_csv(tmp_path / "again" / "train_curated.csv")
    assert again["fname"].tolist() == df["fname"].tolist()
    assert (tmp_path / "again" / "train_curated" / df["fname"][0]).stat().st_nlink == 1   # --copy: a copy
    # and the folds keep a source whole
    make_folds.main(["--data-dir", str(out), "--groups", "source", "--n-folds", "3"])
    folds = read_folds(out)
    assert (folds.groupby("source")["fold"].nunique() == 1).all()


def test_csv_input_with_multi_label_rows_and_sources(tmp_path):
    rec = tmp_path / "rec"
    a, b, c = (write_audio(rec / name, seed) for seed, name in enumerate(["a.wav", "sub/b.flac", "c.wav"], 1))
    d = write_audio(tmp_path / "elsewhere" / "d.wav", 9)
    e = write_audio(rec / "e.wav", 10)
    listing = rec / "list.csv"
    pd.DataFrame({"path": ["a.wav", "sub/b.flac", "c.wav", str(d), "e.wav"],
                  # 'Cafe' + a combining accent (NFD, as macOS spells names) is the same class as NFC 'Café'
                  "labels": ["Dog,Cat", "Cat", "Bird, Dog", "Dog", "Cafe\u0301,Caf\u00e9"],
                  "source": ["session1", "session1", "", "session2", "s3"]}).to_csv(listing, index=False)
    out = tmp_path / "data"
    make(listing, "--out", out)
    df = read_train_csv(out / "train_curated.csv").set_index("fname")
    got = {sha(out / "train_curated" / f): (sorted(parse_labels(row.labels)), row.source) for f, row in df.iterrows()}
    assert got == {sha(a): (["Cat", "Dog"], "session1"), sha(b): (["Cat"], "session1"),
                   sha(c): (["Bird", "Dog"], "c.wav"),   # an empty source cell: the file is its own source
                   sha(d): (["Dog"], "session2"), sha(e): (["Caf\u00e9"], "s3")}
    assert read_classes(out) == ["Bird", "Caf\u00e9", "Cat", "Dog"]


def test_test_share_holds_out_whole_sources(tmp_path):
    src = class_folders(tmp_path / "rec", classes=(("Dog", 12), ("Cat", 12), ("Bird", 9)), speakers=6)
    out = tmp_path / "data"
    make(src, "--out", out, "--test-share", "0.25", "--source-pattern", r"/(spk\d+)_")
    train = read_train_csv(out / "train_curated.csv")
    test = read_train_csv(out / "test_labels.csv")
    assert set(train["source"]).isdisjoint(test["source"])
    assert set(train["source"]) | set(test["source"]) == {f"spk{k}" for k in range(6)}
    assert read_test_fnames(out) == test["fname"].tolist()       # sample_submission lists the test clips
    assert sorted(p.name for p in (out / "test").iterdir()) == sorted(test["fname"])
    by_bytes = originals(src)
    assert [by_bytes[sha(out / "test" / f)] for f in test["fname"]] == test["labels"].tolist()
    assert 0.1 < len(test) / (len(test) + len(train)) < 0.4
    assert set(test["labels"]) == {"Dog", "Cat", "Bird"}          # label-aware: every class tested
    check_files(test, out / "test")


def test_problems_stop_the_import_naming_each_file_and_leave_nothing(tmp_path, capsys, monkeypatch):
    src = class_folders(tmp_path / "rec")
    corrupt = src / "Dog" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 8)
    empty = src / "Cat" / "empty.flac"
    empty.write_bytes(b"")
    silent = src / "Cat" / "silent.wav"
    sf.write(silent, np.zeros(800, np.float32), SR)
    (src / "Owl").mkdir()
    twin = src / "Dog" / "twin.wav"
    twin.write_bytes((src / "Cat" / "spk1_take1.wav").read_bytes())
    out = tmp_path / "data"
    # the script's own entry point (src.cli.run), in this process: a subprocess would spend seconds on imports
    monkeypatch.setattr(sys, "argv", ["make_dataset.py"])
    with pytest.raises(SystemExit) as exit_:
        run(make_dataset.main, [str(src), "--out", str(out), "--no-progress"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("make_dataset.py: error: ") and "5 problem(s)" in lines[-1]
    problems = dict(line.split(": ", 1) for line in lines[:-1])
    assert problems[str(corrupt)].startswith("cannot decode audio")
    assert problems[str(empty)] == "empty file (0 bytes)"
    assert problems[str(silent)] == "silent: every sample is 0"
    assert problems[f"{src / 'Owl'}/"].startswith("empty class")
    assert problems[str(twin)].startswith(f"identical bytes to {src / 'Cat' / 'spk1_take1.wav'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]   # no output, no temporary folder


def test_skip_bad_imports_the_rest_and_lists_what_it_skipped(tmp_path, capsys):
    src = class_folders(tmp_path / "rec")
    corrupt = src / "Dog" / "corrupt.wav"
    corrupt.write_bytes(b"not audio at all")
    (src / "Owl").mkdir()
    out = tmp_path / "data"
    make(src, "--out", out, "--skip-bad")
    printed = capsys.readouterr().out
    assert "Skipped 2 problem(s)" in printed and str(corrupt) in printed and "Owl" in printed
    df = read_train_csv(out / "train_curated.csv")
    assert len(df) == 15 and read_classes(out) == ["Bird song", "Cat", "Dog"]


def test_duplicates_and_bad_class_names_in_a_csv(tmp_path, capsys):
    rec = tmp_path / "rec"
    write_audio(rec / "a.wav", 1)
    write_audio(rec / "b.wav", 2)
    listing = rec / "list.csv"
    listing.write_text('path,labels\na.wav,Dog\n./a.wav,Cat\nb.wav,"Dog,Cat"\nmissing.wav,Dog\n')
    with pytest.raises(BadInput, match="2 problem"):
        make(listing, "--out", tmp_path / "data")
    err = capsys.readouterr().err
    assert f"{rec / './a.wav'} (list.csv line 3): the same file as {rec / 'a.wav'} (list.csv line 2)" in err
    assert f"{rec / 'missing.wav'} (list.csv line 5): no such file" in err
    # a class folder whose name holds a comma cannot be a label
    src = class_folders(tmp_path / "folders", classes=(("Dog", 2), ("Cat,Kitten", 2)))
    with pytest.raises(BadInput, match="1 problem"):
        make(src, "--out", tmp_path / "data")
    assert "class name 'Cat,Kitten' holds a comma" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_existing_out_needs_overwrite(tmp_path):
    src = class_folders(tmp_path / "rec", classes=(("Dog", 2), ("Cat", 2)))
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ResultsExist, match="--overwrite"):
        make(src, "--out", out)
    make(src, "--out", out, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["sample_submission.csv", "train_curated", "train_curated.csv"]
    with pytest.raises(Exception, match="overlaps the input"):
        make(src, "--out", src / "data")
    assert sorted(os.listdir(tmp_path)) == ["data", "rec"]


def test_hold_out_keeps_the_only_source_of_a_class_in_training():
    from src.data.holdout import hold_out_sources

    labels = ["Dog"] * 8 + ["Cat"] * 8 + ["Owl"] * 3
    sources = [f"d{i // 2}" for i in range(8)] + [f"c{i // 2}" for i in range(8)] + ["owl"] * 3
    for share in (0.25, 0.6):   # at 0.6 the balance alone would send Owl's only source to the test side
        test = hold_out_sources(labels, sources, ["Cat", "Dog", "Owl"], share, seed=0)
        assert not test[16:].any()                                     # Owl: one source, stays in training
        expected = {0.25: [2], 0.6: [4, 6]}[share]                     # 1 of 4 sources / 2 or 3 of 4
        assert test[:8].sum() in expected and test[8:16].sum() in expected
        held = {s for s, t in zip(sources, test) if t}
        assert held.isdisjoint(s for s, t in zip(sources, test) if not t)


def test_two_names_that_map_to_one_fname_are_refused(tmp_path, capsys, monkeypatch):
    import src.data.recordings as recordings

    src = class_folders(tmp_path / "rec", classes=(("Dog", 9), ("Cat", 9)))
    monkeypatch.setattr(recordings, "FNAME_HASH_CHARS", 1)   # 16 names for 18 files: collisions for sure
    with pytest.raises(BadInput, match="problem"):
        make(src, "--out", tmp_path / "data")
    assert "maps to the fname" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
