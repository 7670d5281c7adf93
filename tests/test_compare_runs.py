"""bench/compare_runs.py: the differences it prints are the ones of the runs' own files (generated runs)."""
import json

import numpy as np
import pandas as pd
import pytest

from src.metrics import class_mean_lwlrap, lwlrap, oof_report
from tests.test_bench_errors import load, one_line_error

CLASSES = ["Bark", "Meow", "Strum"]
# 9 test clips: 4 Bark, 4 Strum, 1 Meow (the rare class)
TEST_LABELS = ["Bark"] * 4 + ["Strum"] * 4 + ["Meow"]


def make_run(folder, seed, rare_rank_first=True, with_class_mean=True):
    """A data folder with sample_submission/test labels, and predict_folds-like outputs of one run."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    names = [f"t{i}.wav" for i in range(len(TEST_LABELS))]
    pd.DataFrame({"fname": names, **{c: 0.0 for c in CLASSES}}).to_csv(folder / "sample_submission.csv", index=False)
    pd.DataFrame({"fname": names, "labels": TEST_LABELS}).to_csv(folder / "test_labels.csv", index=False)
    y = np.eye(3)[[CLASSES.index(label) for label in TEST_LABELS]]
    probs = 0.5 * y + 0.4 * rng.random(y.shape)
    if not rare_rank_first:                     # the Meow clip's true label falls to last place
        probs[-1] = [0.6, 0.1, 0.7]
    out = folder / "predictions" / "small"
    (out / "test").mkdir(parents=True)
    pd.DataFrame(probs, columns=CLASSES).assign(fname=names).to_csv(out / "test" / "probs.csv", index=False)
    oof_y = np.eye(3)[rng.integers(0, 3, 30)]
    oof_s = oof_y * rng.random() + rng.random(oof_y.shape)
    report = oof_report(oof_y, oof_s, CLASSES, {f: 0.8 + 0.01 * f + 0.001 * seed for f in range(5)})
    if not with_class_mean:
        del report["class_mean_lwlrap"]
    (out / "val_lwlrap.json").write_text(json.dumps(report))
    return y, probs, report


def test_compare_runs_reports_the_runs_differences(tmp_path, capsys):
    module = load("compare_runs.py")
    before = [make_run(tmp_path / f"b{s}", s) for s in range(3)]
    now = [make_run(tmp_path / f"n{s}", 10 + s, rare_rank_first=False, with_class_mean=s != 0) for s in range(3)]
    module.main(["--before", *(str(tmp_path / f"b{s}") for s in range(3)),
                 "--now", *(str(tmp_path / f"n{s}") for s in range(3)), "--draws", "200"])
    out = capsys.readouterr().out
    y = before[0][0]
    test = {k: np.array([lwlrap(y, p) for _, p, _ in runs]) for k, runs in (("before", before), ("now", now))}
    diff = test["now"].mean() - test["before"].mean()
    assert f"runs unpaired: {diff:+.4f};" in out, out
    # every "now" run ranks the rare clip last and every "before" run first: no relabelling is lower
    assert "5.0% of 20 relabellings" in out, out
    folds = np.array([n["fold_lwlrap"][f] - b["fold_lwlrap"][f] for (_, _, b), (_, _, n) in zip(before, now)
                      for f in b["fold_lwlrap"]])
    assert f"paired by run and fold: {folds.mean():+.4f}" in out and "15 folds" in out, out
    assert "runs paired by their place in the lists" in out, out      # no recorded seeds here
    # the class average, recorded or (older reports) derived from the per-class scores, and on the test clips
    cv_avg = np.mean([r["class_mean_lwlrap"] for _, _, r in before])
    assert f"{cv_avg:.4f} (" in out.split("before mean")[1].splitlines()[0]
    now_avg = np.mean([class_mean_lwlrap(y, p) for _, p, _ in now])
    assert f"{now_avg:.4f} (" in out.split("now mean")[1].splitlines()[0]
    now_cv_avg = np.mean([np.mean([v for c, v in r["per_class_lwlrap"].items() if r["class_weight"][c] > 0])
                          for _, _, r in now])                  # run n0's report has no class_mean_lwlrap
    assert f"{now_cv_avg:.4f} (" in out.split("now mean")[1].splitlines()[0]
    meow = next(line for line in out.splitlines() if line.startswith("Meow"))
    assert meow.split()[-3:] == ["1", "1.000", "0.333"], meow     # 1 test clip; ranked first, then last of 3


def record_seed(folder, seed):
    (folder / "experiments" / "small").mkdir(parents=True)
    (folder / "experiments" / "small" / "config.json").write_text(json.dumps({"seed": seed}))


def test_runs_are_paired_by_their_recorded_seed_whatever_the_order(tmp_path, capsys):
    module = load("compare_runs.py")
    reports = {}
    for arm, seeds, offset in (("b", [5, 7, 42], 0), ("n", [42, 7], 100)):
        for seed in seeds:
            folder = tmp_path / f"{arm}{seed}"
            reports[arm, seed] = make_run(folder, seed + offset)[2]
            record_seed(folder, seed)
    module.main(["--before", *(str(tmp_path / f"b{s}") for s in (5, 7, 42)),
                 "--now", *(str(tmp_path / f"n{s}") for s in (42, 7)), "--draws", "50"])
    out = capsys.readouterr().out
    folds = np.array([reports["n", s]["fold_lwlrap"][f] - reports["b", s]["fold_lwlrap"][f]
                      for s in (7, 42) for f in reports["b", s]["fold_lwlrap"]])
    se = folds.std(ddof=1) / np.sqrt(len(folds))
    # by place in the lists, b5 would meet n42 and b7 n7: another mean and standard error
    assert f"paired by seed and fold: {folds.mean():+.4f} (standard error {se:.4f}, 10 folds)" in out, out
    assert f"no partner: {tmp_path / 'b5'} (seed 5)" in out, out
    assert "place in the lists" not in out
    row = next(line for line in out.splitlines() if line.startswith("now") and "n42" in line)
    assert row.split()[2] == "42", row


def test_compare_runs_errors_name_the_folder(tmp_path, capsys):
    module = load("compare_runs.py")
    make_run(tmp_path / "a", 0)
    make_run(tmp_path / "b", 1)
    (tmp_path / "b" / "predictions" / "small" / "test" / "probs.csv").unlink()
    one_line_error(capsys, module, ["--before", str(tmp_path / "a"), "--now", str(tmp_path / "b")],
                   tmp_path / "b", "no test predictions")
    one_line_error(capsys, module, ["--before", str(tmp_path / "a"), "--now", str(tmp_path / "c")],
                   tmp_path / "c", "no such data folder")
    report = tmp_path / "a" / "predictions" / "small" / "val_lwlrap.json"
    report.write_text(json.dumps({"lwlrap": 0.9}))
    one_line_error(capsys, module, ["--before", str(tmp_path / "a"), "--now", str(tmp_path / "a")],
                   report, "'fold_lwlrap'")


@pytest.mark.parametrize("k", [2, 3])
def test_permutation_p_counts_every_split(k):
    module = load("compare_runs.py")
    before, now = np.array([0.9, 0.8, 0.85]), np.array([0.7, 0.75, 0.72])[:k]
    p, splits = module.permutation_p(before, now, np.random.default_rng(0))
    assert splits == {2: 10, 3: 20}[k]
    assert p == pytest.approx(1 / splits)          # only the observed split puts the lowest values in "now"
