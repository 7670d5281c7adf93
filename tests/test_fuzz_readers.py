"""Seeded, bounded fuzzing of every reader of user files (issue 24, class 6).

Each reader gets a fixed number of damaged variants of a valid file (random bytes, a UTF-8 BOM,
CRLF line ends, quoted newlines, huge fields, missing / extra / repeated columns, truncations,
random header bytes, wrong JSON types). Every case must either parse or raise the repo's user
error (`src.errors.UserError`, which `AudioReadError` and `FeatureCacheError` are); anything
else is a bug the scripts would report with a traceback. The counts are printed (`pytest -s`).
"""
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import score
from src.audio.frontend import read_audio
from src.data.labels import load_corrections, read_csv_columns, read_train_csv
from src.data.layout import read_folds, read_sample_submission
from src.errors import UserError
from src.predict.prediction_sets import read_prediction_set
from src.tagging.bundles import make_bundle
from src.tagging.loading import load_bundle
from src.train.checkpoints import load_checkpoint
from tests.helpers import CLASSES, make_experiment, sound, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CASES = 60  # per CSV / JSON reader
BINARY_CASES = 24  # per audio format and per torch file (each case decodes or loads a file)


def fuzz(reader, variants, label=None):
    """Call `reader(bytes)` on every variant: (parsed, refused) counts, printed under `label`; any other
    exception fails the test naming the case."""
    parsed = refused = 0
    for i, (what, data) in enumerate(variants):
        try:
            reader(data)
        except UserError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 (the point of the test)
            raise AssertionError(f"case {i} ({what}, {len(data)} bytes, starts {data[:60]!r}) raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        else:
            parsed += 1
    print(f"{label or reader.__name__}: {parsed + refused} cases, {parsed} parsed, {refused} refused")
    return parsed, refused


# ----------------------------------------------------------------------------- CSV mutations

def csv_text(header, rows) -> str:
    return "\n".join([",".join(header)] + [",".join(row) for row in rows]) + "\n"


def csv_variants(valid: str, rng: np.random.Generator, n=CASES):
    """`n` damaged versions of the CSV text `valid`, cycling through the kinds of damage."""
    lines = valid.splitlines()
    header = lines[0].split(",")

    def random_bytes():
        return rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()

    def huge_field():
        row = lines[1].split(",")
        row[int(rng.integers(len(row)))] = "x" * int(rng.choice([70_000, 200_000]))
        return "\n".join([lines[0], ",".join(row)] + lines[2:]).encode()

    def huge_header():
        return ("fname," + "B" * 200_000 + "\n" + "\n".join(lines[1:])).encode()

    def quoted_newline():
        row = lines[1].split(",")
        j = int(rng.integers(len(row)))
        row[j] = '"' + row[j][:1] + "\n" + row[j][1:] + '"'
        return "\n".join([lines[0], ",".join(row)] + lines[2:]).encode()

    def drop_column():
        j = int(rng.integers(len(header)))
        return "\n".join(",".join(c for k, c in enumerate(line.split(",")) if k != j) for line in lines).encode()

    def extra_column():
        return "\n".join(line + ("," + ("extra" if k == 0 else str(rng.random()))) for k, line in enumerate(lines)).encode()

    def duplicate_column():
        j = int(rng.integers(len(header)))
        return "\n".join(line + "," + line.split(",")[j] for line in lines).encode()

    def truncate():
        data = valid.encode()
        return data[:int(rng.integers(0, len(data)))]

    def flip_bytes():
        data = bytearray(valid.encode())
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(len(data)))] = int(rng.integers(0, 256))
        return bytes(data)

    def bad_cells():
        row = lines[1].split(",")
        row[int(rng.integers(len(row)))] = str(rng.choice(["", "nan", "NaN", "inf", "-1", "1e999", "x", '"', "1.5"]))
        return "\n".join([lines[0], ",".join(row)] + lines[2:]).encode()

    kinds = {
        "random bytes": random_bytes,
        "UTF-8 BOM": lambda: b"\xef\xbb\xbf" + valid.encode(),
        "CRLF": lambda: valid.replace("\n", "\r\n").encode(),
        "quoted newline": quoted_newline,
        "huge field": huge_field,
        "huge header cell": huge_header,
        "missing column": drop_column,
        "extra column": extra_column,
        "duplicate column": duplicate_column,
        "truncated": truncate,
        "flipped bytes": flip_bytes,
        "bad cells": bad_cells,
        "empty": lambda: b"",
        "header only": lambda: (lines[0] + "\n").encode(),
    }
    names = list(kinds)
    return [(names[i % len(names)], kinds[names[i % len(names)]]()) for i in range(n)]


def file_reader(tmp_path, name, read, label=None):
    """A reader of bytes: write them to tmp_path/name, then `read(path)`."""
    def reader(data):
        path = tmp_path / name
        path.write_bytes(data)
        return read(path)
    reader.__name__ = label or read.__name__
    return reader


TRAIN = csv_text(["fname", "labels"], [["a.wav", "Bark"], ["b.wav", '"Bark,Hum"'], ["c.wav", "Rain"]])
FOLDS = csv_text(["fname", "labels", "fold"], [["a.wav", "Bark", "0"], ["b.wav", '"Bark,Hum"', "1"],
                                               ["c.wav", "Rain", "0"]])
SUBMISSION = csv_text(["fname", *CLASSES[:3]], [["a.wav", "0.1", "0.9", "0.5"], ["b.wav", "0.2", "0.3", "1"],
                                                ["c.wav", "0", "0.25", "0.75"]])


def test_fuzz_csv_readers(tmp_path):
    rng = np.random.default_rng(2024)
    counts = {}
    readers = [
        (TRAIN, file_reader(tmp_path, "train.csv", read_train_csv)),
        (TRAIN, file_reader(tmp_path, "any.csv", lambda p: read_csv_columns(p, ("fname", "labels")),
                                  "read_csv_columns")),
        (SUBMISSION, file_reader(tmp_path, "sample_submission.csv", read_sample_submission)),
        (FOLDS, file_reader(tmp_path, "train_folds.csv", lambda p: read_folds(p.parent), "read_folds")),
        (SUBMISSION, file_reader(tmp_path, "submission.csv",
                                 lambda p: score.read_submission(p, CLASSES[:3], "the fuzz test"),
                                 "score.read_submission")),
    ]
    for valid, reader in readers:
        counts[reader.__name__] = fuzz(reader, csv_variants(valid, rng))
    # The valid files parse (the fuzzing would be pointless if everything were refused).
    assert all(parsed > 0 for parsed, _ in counts.values()), counts
    assert all(refused > 0 for _, refused in counts.values()), counts


def test_fuzz_prediction_set_reader(tmp_path):
    """probs.csv damaged, and tiles.npy / offsets.npy truncated or replaced (stacking_train.py and blend.py
    read these)."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "oof"
    folder.mkdir()
    tiles = rng.uniform(0, 1, (7, 3)).astype(np.float32)
    offsets = np.array([0, 2, 5, 7], np.int64)
    good = {}
    for name, array in (("tiles.npy", tiles), ("offsets.npy", offsets)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        good[name] = buffer.getvalue()

    def read_probs(data):
        for name, content in good.items():
            (folder / name).write_bytes(content)
        (folder / "probs.csv").write_bytes(data)
        return read_prediction_set(folder)

    parsed, refused = fuzz(read_probs, csv_variants(SUBMISSION, rng), "read_prediction_set (probs.csv)")
    assert parsed and refused

    (folder / "probs.csv").write_text(SUBMISSION)
    variants = []
    for i in range(BINARY_CASES):
        name = ["tiles.npy", "offsets.npy"][i % 2]
        data = good[name]
        damaged = [data[:int(rng.integers(0, len(data)))],
                   rng.integers(0, 256, len(data), dtype=np.uint8).tobytes(),
                   data[:128] + rng.integers(0, 256, len(data) - 128, dtype=np.uint8).tobytes(), b""][i % 4]
        variants.append((f"{name} damaged", name.encode() + b"\0" + damaged))

    def read_arrays(data):
        name, _, content = data.partition(b"\0")
        for other, good_content in good.items():
            (folder / other).write_bytes(good_content)
        (folder / name.decode()).write_bytes(content)
        return read_prediction_set(folder)

    fuzz(read_arrays, variants, "read_prediction_set (tiles.npy, offsets.npy)")


# ----------------------------------------------------------------------------- corrections JSON

def test_fuzz_corrections_reader(tmp_path):
    rng = np.random.default_rng(11)
    shapes = [[], ["a.wav", "Bark"], 3, "remove", None, True, 1.5, {"a.wav": 1}, {"a.wav": None},
              {"a.wav": ["Bark"]}, {"a.wav": {"labels": "Bark"}}, {"a.wav": ""}, {"a.wav": " , "},
              {"a.wav": "Bark", "b.wav": "remove"}, {}, {"a.wav": "Bark,Hum"}, {"": "Bark"}]
    valid = json.dumps({"a.wav": "Bark", "b.wav": "remove", "c.wav": "Hum,Rain"}).encode()
    variants = [("shape", json.dumps(value).encode()) for value in shapes]
    while len(variants) < CASES:
        kind = len(variants) % 5
        if kind == 0:
            variants.append(("truncated", valid[:int(rng.integers(0, len(valid)))]))
        elif kind == 1:
            variants.append(("random bytes", rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()))
        elif kind == 2:
            variants.append(("BOM", b"\xef\xbb\xbf" + valid))
        elif kind == 3:
            variants.append(("deep nesting", b"[" * int(rng.integers(1000, 200_000))))
        else:
            data = bytearray(valid)
            data[int(rng.integers(len(data)))] = int(rng.integers(0, 256))
            variants.append(("flipped byte", bytes(data)))
    parsed, refused = fuzz(file_reader(tmp_path, "corrections.json", load_corrections), variants)
    assert parsed and refused
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + valid)  # a BOM is how some editors save UTF-8
    assert load_corrections(tmp_path / "bom.json") == json.loads(valid)


def test_fuzz_thresholds_reader(tmp_path):
    """thresholds.json (score.py --thresholds): wrong shapes and types, truncations."""
    from src.thresholds import read_thresholds

    rng = np.random.default_rng(17)
    classes = CLASSES[:3]
    valid = {"classes": classes, "thresholds": [0.5, 0.25, 0.75]}
    shapes = [[], 3, None, {}, {"classes": classes}, {"thresholds": [0.5]}, {**valid, "thresholds": "0.5"},
              {**valid, "thresholds": [0.5, None, 0.1]}, {**valid, "thresholds": [0.5, "x", 0.1]},
              {**valid, "thresholds": [0.5, {}, 0.1]}, {**valid, "classes": 5}, {**valid, "classes": [[1], 2, 3]},
              {**valid, "thresholds": [0.5, 0.2]}, {**valid, "thresholds": [0.5, 1e400, 0.1]}, valid]
    variants = [("shape", json.dumps(value).encode()) for value in shapes]
    data = json.dumps(valid).encode()
    while len(variants) < CASES // 2:
        variants.append(("truncated", data[:int(rng.integers(0, len(data)))]))
    parsed, refused = fuzz(file_reader(tmp_path, "thresholds.json", lambda p: read_thresholds(p, classes),
                                       "read_thresholds"), variants)
    assert parsed and refused


# ----------------------------------------------------------------------------- audio

def encoded(fmt, subtype, seconds=0.3) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, sound(seconds), 44100, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_fuzz_audio_reader(tmp_path, fmt, subtype):
    rng = np.random.default_rng(len(fmt))
    valid = encoded(fmt, subtype)
    variants = []
    for i in range(BINARY_CASES):
        kind = i % 4
        if kind == 0:
            variants.append(("truncated", valid[:int(rng.integers(0, len(valid)))]))
        elif kind == 1:  # random bytes in the first 64 (the header)
            data = bytearray(valid)
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(min(64, len(data))))] = int(rng.integers(0, 256))
            variants.append(("random header bytes", bytes(data)))
        elif kind == 2:
            variants.append(("random bytes", rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()))
        else:  # a valid header, then garbage
            cut = int(rng.integers(16, 200))
            variants.append(("header then garbage",
                             valid[:cut] + rng.integers(0, 256, len(valid) - cut, dtype=np.uint8).tobytes()))
    parsed, refused = fuzz(file_reader(tmp_path, f"clip.{fmt.lower()}", read_audio), variants, f"read_audio ({fmt})")
    assert refused


# ----------------------------------------------------------------------------- checkpoints and bundles

def torch_variants(valid: bytes, rng, n=BINARY_CASES):
    variants = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            variants.append(("truncated", valid[:int(rng.integers(0, len(valid)))]))
        elif kind == 1:
            variants.append(("random bytes", rng.integers(0, 256, int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()))
        elif kind == 2:  # bytes changed anywhere (the zip directory, the pickle, the tensors)
            data = bytearray(valid)
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(len(data)))] = int(rng.integers(0, 256))
            variants.append(("flipped bytes", bytes(data)))
        else:
            variants.append(("empty", b""))
    return variants


def test_fuzz_checkpoint_reader(tmp_path):
    path = tmp_path / "model-001-0.5.pth"
    tiny_model().save(path)
    parsed, refused = fuzz(file_reader(tmp_path, "damaged.pth", load_checkpoint),
                           torch_variants(path.read_bytes(), np.random.default_rng(3)))
    assert refused


def test_fuzz_bundle_reader(tmp_path):
    make_experiment(tmp_path, "tiny", folds=1)
    path = tmp_path / "bundle.pt"
    torch.save(make_bundle(tmp_path, "tiny"), path)
    parsed, refused = fuzz(file_reader(tmp_path, "damaged.pt", lambda p: load_bundle(p, "cpu"), "load_bundle"),
                           torch_variants(path.read_bytes(), np.random.default_rng(5)))
    assert refused


def test_fuzz_bundle_contents():
    """A bundle torch reads whose dicts are damaged (a key missing, a value of the wrong type, weights
    that do not fit the network) is refused as a damaged bundle, not a KeyError deep in loading."""
    import tempfile
    from pathlib import Path

    from src.predict.ensemble import ensemble_from_bundle

    with tempfile.TemporaryDirectory() as tmp:
        make_experiment(tmp, "tiny", folds=1)
        bundle = make_bundle(Path(tmp), "tiny")
    rng = np.random.default_rng(9)
    part_keys = list(bundle["first_level"][0])
    variants = []
    for i in range(CASES // 2):
        damaged = {**bundle, "first_level": [dict(bundle["first_level"][0])]}
        part = damaged["first_level"][0]
        key = part_keys[i % len(part_keys)]
        if i % 3 == 0:
            del part[key]
        elif i % 3 == 1:
            part[key] = [None, "x", 1.5, {}, -3][int(rng.integers(5))]
        else:
            state = dict(part["state_dicts"][0])
            name = list(state)[int(rng.integers(len(state)))]
            state[name] = torch.zeros(3, 3)
            part["state_dicts"] = [state]
        variants.append((f"{key} damaged", damaged))
    parsed = refused = 0
    for what, damaged in variants:
        try:
            ensemble_from_bundle(damaged, "cpu", source="bundle.pt")
            parsed += 1
        except UserError as exc:
            assert "bundle.pt" in str(exc)
            refused += 1
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"{what}: {type(exc).__name__}: {exc}") from exc
    print(f"ensemble_from_bundle (damaged contents): {len(variants)} cases, {parsed} parsed, {refused} refused")
    assert refused


def test_bom_crlf_and_quoted_headers_parse_like_plain_files(tmp_path):
    """What the fuzzing found: the raw-header check of read_sample_submission / score.py split the first
    line on ',' itself, so a sample submission saved with a BOM (Excel's UTF-8) or quoted header cells was
    refused although pandas read it."""
    plain = tmp_path / "plain.csv"
    plain.write_text(SUBMISSION)
    expected = read_sample_submission(plain)
    lines = SUBMISSION.splitlines()
    quoted = ",".join(f'"{cell}"' for cell in lines[0].split(",")) + "\n" + "\n".join(lines[1:]) + "\n"
    for name, data in (("bom.csv", b"\xef\xbb\xbf" + SUBMISSION.encode()),
                       ("crlf.csv", SUBMISSION.replace("\n", "\r\n").encode()),
                       ("quoted.csv", quoted.encode())):
        (tmp_path / name).write_bytes(data)
        assert read_sample_submission(tmp_path / name) == expected, name
        fnames, probs = score.read_submission(tmp_path / name, CLASSES[:3], "test")
        assert fnames == expected[0] and probs.shape == (3, 3), name


def test_fuzz_feature_cache_reader(tmp_path):
    """Each file of a feature-cache folder truncated, replaced by random bytes or (index.json) given
    wrong JSON types: refused as a FeatureCacheError (a user error), or read as it was built."""
    from src.audio.cache import read_feature_cache, write_feature_cache
    from src.config import AUDIO

    rng = np.random.default_rng(13)
    folder = tmp_path / "cache"
    specs = [rng.uniform(-80, 0, (AUDIO.n_mels, n)).astype(np.float32) for n in (3, 5, 2)]
    write_feature_cache(folder, ["a.wav", "b.wav", "c.wav"], specs, AUDIO)
    good = {name: (folder / name).read_bytes() for name in ("frames.npy", "offsets.npy", "index.json")}
    index = json.loads(good["index.json"])
    variants = []
    for i in range(CASES):
        name = list(good)[i % 3]
        data = good[name]
        kind = (i // 3) % 4
        if kind == 0:
            damaged = data[:int(rng.integers(0, len(data)))]
        elif kind == 1:
            damaged = rng.integers(0, 256, int(rng.integers(0, 2 * len(data))), dtype=np.uint8).tobytes()
        elif kind == 2 and name == "index.json":  # a key of the wrong JSON type
            key = list(index)[int(rng.integers(len(index)))]
            damaged = json.dumps({**index, key: [None, "x", 1.5, [], {}, -1][int(rng.integers(6))]}).encode()
        else:  # bytes changed anywhere
            damaged = bytearray(data)
            for _ in range(int(rng.integers(1, 6))):
                damaged[int(rng.integers(len(damaged)))] = int(rng.integers(0, 256))
            damaged = bytes(damaged)
        variants.append((f"{name} damaged", name.encode() + b"\0" + damaged))
    for key in index:  # every key of index.json with every wrong JSON type
        for wrong in (None, "x", 1.5, [], {}, -1, [1, "a"]):
            variants.append((f"index.json {key}={wrong!r}", b"index.json\0" + json.dumps({**index, key: wrong}).encode()))

    def read_cache(data):
        name, _, content = data.partition(b"\0")
        for other, good_content in good.items():
            (folder / other).write_bytes(good_content)
        (folder / name.decode()).write_bytes(content)
        features = read_feature_cache(folder, fnames=["a.wav", "b.wav", "c.wav"], config=AUDIO)
        # what passes the checks is what was built (the checksums guard the bytes)
        assert all(np.array_equal(s, t) for s, t in zip(features.specs, specs)), "a damaged cache was read"

    parsed, refused = fuzz(read_cache, variants, "read_feature_cache")
    assert refused
