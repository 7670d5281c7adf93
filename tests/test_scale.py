"""bench/scale.py: the synthetic 2019-sized set follows its documented figures, and the whole benchmark runs
end to end at a tiny scale (so it cannot rot)."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tests.helpers import ROOT

SCRIPT = ROOT / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_scale_plan_has_the_2019_counts_hours_and_lengths(scale):
    sets = scale.plan(1.0)
    for split, (clips, hours, low, high) in scale.DATA_2019.items():
        fnames, seconds, labels = sets[split]
        assert len(fnames) == len(set(fnames)) == len(seconds) == len(labels) == clips
        assert seconds.sum() / 3600 == pytest.approx(hours, rel=0.01)
        assert low <= seconds.min() and seconds.max() <= high
    noisy = sets["train_noisy"][1]
    assert (noisy == 15.0).mean() == pytest.approx(scale.NOISY_FULL_SHARE, abs=0.001)  # the vast majority 15 s
    assert sets["train_curated"][1].mean() == pytest.approx(10.5 * 3600 / 4970, rel=0.01)
    labels = [label.split(",") for label in sets["train_curated"][2]]
    assert all(len(k) in (1, 2) for k in labels) and len({c for k in labels for c in k}) == scale.N_CLASSES


def test_scaled_plans_keep_the_mean_lengths(scale):
    for factor in (0.01, 0.1, 0.25):
        for split, (fnames, seconds, _) in scale.plan(factor).items():
            assert len(fnames) == scale.scaled_count(split, factor) == round(scale.DATA_2019[split][0] * factor)
            assert seconds.mean() == pytest.approx(scale.mean_seconds(split), rel=0.03)


def test_growth_flags_a_stage_worse_than_linear(scale):
    def run(s):
        row = {"seconds": 1 + 100 * s, "cpu_s": 1 + 100 * s, "peak_anon_gb": 0.2 + s, "disk_gb": s}
        return {"stages": {"linear": dict(row), "quadratic": {**row, "cpu_s": 1 + 1000 * s * s},
                           "memory": {**row, "peak_anon_gb": 0.2 + 10 * s * s},
                           "train_epoch": {**row, "seconds": 60.0, "cpu_s": 50.0}}}
    results = {s: run(s) for s in (0.05, 0.1, 0.25)}
    table = scale.growth(results)
    assert table["linear"]["seconds"]["marginal"] == pytest.approx(1.0)
    assert table["linear"]["seconds"]["at_1"] == pytest.approx(101.0)       # extended linearly
    assert table["linear"]["peak_anon_gb"]["at_1"] == pytest.approx(1.2)
    assert table["train_epoch"]["seconds"]["at_1"] == 60.0                   # the same epoch at every scale
    assert table["quadratic"]["cpu_s"]["k"] > 1.15 and table["quadratic"]["cpu_s"]["marginal"] > 2
    assert scale.verdict(table["linear"]) == [] and scale.verdict(table["train_epoch"]) == []
    assert scale.verdict(table["quadratic"]) == ["CPU seconds"]
    assert scale.verdict(table["memory"]) == ["memory"]


def test_benchmark_runs_end_to_end_at_a_tiny_scale(tmp_path, scale):
    out = tmp_path / "scale.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--scales", "0.001", "--epoch-size", "256",
                             "--work-dir", str(tmp_path / "work"), "--keep", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())["scales"]["0.001"]
    assert list(figures["stages"]) == list(scale.STAGES)
    for stage, row in figures["stages"].items():
        assert row["seconds"] > 0 and row["cpu_s"] >= 0, stage
        assert 0 < row["peak_anon_gb"] <= row["peak_rss_gb"], stage
        assert stage in result.stdout
    assert figures["stages"]["generate"]["disk_gb"] > 0 and figures["stages"]["cache_noisy"]["disk_gb"] > 0

    # the generated set: the documented counts, the planned lengths, Kaggle's layout
    data = tmp_path / "work" / "scale-0.001"
    sets = scale.plan(0.001)
    for split, (fnames, seconds, labels) in sets.items():
        assert len(fnames) == scale.scaled_count(split, 0.001) == max(scale.MIN_CLIPS[split],
                                                                      round(scale.DATA_2019[split][0] * 0.001))
        if split == "test":
            frame = pd.read_csv(data / "sample_submission.csv")
            assert list(frame.columns) == ["fname"] + scale.class_names()
        else:
            frame = pd.read_csv(data / f"{split}.csv")
            assert frame["labels"].tolist() == labels
        assert frame["fname"].tolist() == fnames
        for fname, length in zip(fnames, seconds):
            info = sf.info(data / split / fname)
            assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
            assert info.frames == int(round(length * 44100))
    folds = pd.read_csv(data / "train_folds.csv")
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert len(list((data / "features").iterdir())) == 3
    blended = pd.read_csv(data / "predictions" / "blend" / "submission.csv")
    assert blended["fname"].tolist() == sets["test"][0] and np.isfinite(blended.iloc[:, 1:].to_numpy()).all()


def test_bad_scale_is_a_one_line_user_error(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--scales", "2", "--work-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("scale.py: error: --scales must be in (0, 1]")


PREDICT_TWICE = """
import sys, numpy as np
sys.path.insert(0, {root!r})
from src.runtime import fix_malloc_mmap_threshold
if {fix}:
    assert fix_malloc_mmap_threshold()
from src.predict.predictor import Predictor
spec = __import__("importlib.util").util.spec_from_file_location("s", {script!r})
scale = __import__("importlib.util").util.module_from_spec(spec); spec.loader.exec_module(scale)
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon")) * 1024
rng = np.random.default_rng(0)
specs = [rng.standard_normal((128, int(n)), dtype=np.float32) for n in rng.integers(300, 2000, 100)]
predictor = Predictor([scale.StandInModel(80)] * 5, 256, 64, 128)
predictor.predict(specs)
first = anon()
for _ in range(3):
    predictor.predict(specs)
print(anon() - first)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc, /proc")
def test_prediction_memory_does_not_grow_with_the_clips_predicted():
    """predict_folds.py fixes glibc's mmap threshold: repeated prediction then keeps its memory flat (before,
    it grew in proportion to the clips predicted: ~7.5 GB projected for the 2019 test set x 5 folds)."""
    code = PREDICT_TWICE.format(root=str(ROOT), script=str(SCRIPT), fix=True)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 50e6
