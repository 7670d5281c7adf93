import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

import make_folds


@pytest.fixture
def curated(tmp_path):
    classes = ["Dog", "Cat", "Bird"]
    pd.DataFrame(columns=["fname"] + classes).to_csv(tmp_path / "sample_submission.csv", index=False)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        labels = list(rng.choice(classes, size=rng.integers(1, 3), replace=False))
        rows.append((f"{i:08x}.wav", ",".join(labels)))
    df = pd.DataFrame(rows, columns=["fname", "labels"])
    df.to_csv(tmp_path / "train_curated.csv", index=False)
    (tmp_path / "train_curated").mkdir()
    for fname in df["fname"]:
        (tmp_path / "train_curated" / fname).write_bytes(b"")
    return tmp_path, df


def test_folds_equal_sklearn_kfold_with_seed_42(curated):
    data_dir, df = curated
    make_folds.main(["--data-dir", str(data_dir)])
    out = pd.read_csv(data_dir / "train_folds.csv")
    assert out.columns.tolist() == ["fname", "labels", "fold"]
    assert out["fname"].tolist() == df["fname"].tolist()
    expected = np.zeros(len(df), int)
    for fold, (_, val) in enumerate(KFold(5, shuffle=True, random_state=42).split(df)):
        expected[val] = fold
    assert out["fold"].tolist() == expected.tolist()


def test_stratified_folds_balance_labels(curated):
    data_dir, df = curated
    make_folds.main(["--data-dir", str(data_dir), "--stratified", "--out", str(data_dir / "strat.csv")])
    out = pd.read_csv(data_dir / "strat.csv")
    assert sorted(out["fold"].unique()) == [0, 1, 2, 3, 4]
    for label in ["Dog", "Cat", "Bird"]:
        per_fold = out[out["labels"].str.contains(label)].groupby("fold").size()
        assert per_fold.max() - per_fold.min() <= 2


def test_refuses_unknown_labels_and_missing_files(curated):
    data_dir, df = curated
    df.loc[3, "labels"] = "Dog,Unicorn"
    df.to_csv(data_dir / "train_curated.csv", index=False)
    with pytest.raises(ValueError, match="Unicorn"):
        make_folds.main(["--data-dir", str(data_dir)])
    df.loc[3, "labels"] = "Dog"
    df.to_csv(data_dir / "train_curated.csv", index=False)
    (data_dir / "train_curated" / df["fname"][7]).unlink()
    with pytest.raises(FileNotFoundError, match=df["fname"][7]):
        make_folds.main(["--data-dir", str(data_dir)])
    assert not (data_dir / "train_folds.csv").exists()
