"""The offline Kaggle kernel's program (src/predict/kaggle_kernel.py) as a module, and make_kernel.py, which
writes it with its settings block filled in. (The kernel = blend = tag.py equality: tests/test_ensemble.py.)"""
import importlib
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import make_kernel
from src.predict import kaggle_kernel
from tests.helpers import CLASSES, SR, sound


@pytest.fixture
def bundle(tmp_path):
    """A demo ensemble bundle with random tiny networks, one fold each (no training)."""
    from src.config import AUDIO
    from src.tagging.bundles import random_ensemble_bundle
    path = tmp_path / "ens.pt"
    torch.save(random_ensemble_bundle("demo", CLASSES, AUDIO, n_folds=1), path)
    return path


@pytest.fixture
def test_dir(tmp_path):
    folder = tmp_path / "comp" / "test"
    folder.mkdir(parents=True)
    for seed, name in enumerate(["b.wav", "a.wav", "c.wav"]):
        sf.write(folder / name, sound(0.8 + 0.4 * seed, seed=seed), SR, subtype="PCM_16")
    return folder


def test_written_kernel_is_the_program_with_its_settings(bundle, tmp_path):
    program = make_kernel.KERNEL_PROGRAM.read_text()
    text = make_kernel.make_kernel(bundle, test_dir="/t", out="/o.csv")
    compile(text, "kernel.py", "exec")
    before, after = program.split(make_kernel.SETTINGS_START)
    assert text.endswith(after.split(make_kernel.SETTINGS_END, 1)[1])  # the program after the block, as it is
    assert before in text  # ... and before it
    namespace = {}
    exec(compile(text.split(make_kernel.SETTINGS_START, 1)[1].split(make_kernel.SETTINGS_END)[0].split("\n", 1)[1],
                 "settings", "exec"), namespace)
    assert namespace["BUNDLE_FILE"] == "ens.pt" and namespace["TEST_DIR"] == "/t"
    assert namespace["SUBMISSION"] == "/o.csv"
    assert set(namespace["SOURCES"]) == set(make_kernel.module_closure())
    assert "src" in namespace["PACKAGES"] and "src.predict.ensemble" not in namespace["PACKAGES"]
    assert "sha256" in text.splitlines()[1] and "ens.pt" in text.splitlines()[1]


def test_embedded_sources_import_before_the_repository(monkeypatch):
    monkeypatch.setattr(kaggle_kernel, "SOURCES", {"fsat_fake": "", "fsat_fake.mod": "VALUE = 3\n"})
    monkeypatch.setattr(kaggle_kernel, "PACKAGES", ["fsat_fake"])
    finder = kaggle_kernel.EmbeddedSources()
    monkeypatch.setattr(sys, "meta_path", [finder] + sys.meta_path)
    for name in ("fsat_fake", "fsat_fake.mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    mod = importlib.import_module("fsat_fake.mod")  # a module only the embedded sources hold
    assert mod.VALUE == 3 and finder.find_spec("json") is None  # anything else: the usual import


def test_wav_reader_without_soundfile_matches_soundfile(tmp_path):
    audio = sound(0.5, seed=3, channels=2)
    sf.write(tmp_path / "x.wav", audio, SR, subtype="PCM_16")
    expected, rate = sf.read(tmp_path / "x.wav", dtype="float32", always_2d=True)
    got, got_rate = kaggle_kernel.wav_only_soundfile().read(tmp_path / "x.wav", dtype="float32", always_2d=True)
    assert got_rate == rate and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(RuntimeError, match="reads only WAV"):
        kaggle_kernel.wav_only_soundfile().read(tmp_path / "x.flac")


def test_test_files_follow_sample_submission(test_dir):
    assert kaggle_kernel.test_files(test_dir) == (["a.wav", "b.wav", "c.wav"], None)  # sorted without one
    pd.DataFrame({"fname": ["c.wav", "a.wav", "b.wav"], **{c: 0.0 for c in CLASSES}}).to_csv(
        test_dir.parent / "sample_submission.csv", index=False)
    assert kaggle_kernel.test_files(test_dir) == (["c.wav", "a.wav", "b.wav"], CLASSES)
    (test_dir / "a.wav").unlink()
    with pytest.raises(SystemExit, match="1 file"):
        kaggle_kernel.test_files(test_dir)
    with pytest.raises(SystemExit, match="no such folder"):
        kaggle_kernel.test_files(test_dir / "absent")


def test_the_program_from_the_repository_writes_the_ensembles_probabilities(bundle, test_dir, tmp_path,
                                                                               monkeypatch):
    from src.audio.fast_frontend import log_mel, read_audio
    from src.predict.ensemble import load_ensemble_bundle
    out = tmp_path / "submission.csv"
    monkeypatch.setattr(sys, "argv", ["kernel", "--test-dir", str(test_dir), "--bundle", str(bundle), "--out",
                                      str(out), "--device", "cpu", "--group", "2"])
    kaggle_kernel.main()
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["fname"] + CLASSES and frame["fname"].tolist() == ["a.wav", "b.wav", "c.wav"]
    ensemble = load_ensemble_bundle(bundle, "cpu")
    expected = ensemble.predict([log_mel(read_audio(test_dir / f)) for f in frame["fname"]])
    np.testing.assert_allclose(frame[CLASSES].to_numpy(), expected, atol=1e-6)
