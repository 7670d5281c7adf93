import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

import make_folds
from src.errors import BadInput, BadSetting


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


# ----------------------------------------------------------------------------- grouped folds

CLASSES = ["Dog", "Cat", "Bird", "Horn", "Rain", "Bell"]


def grouped_set(tmp_path, n_groups=60, seed=1):
    """A data dir whose clips come in groups of 1-12 (a source's clips share its labels, now and then a
    second label per clip): the class mix differs from group to group, as with real recordings."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        size = int(rng.choice([1, 2, 3, 5, 8, 12], p=[0.3, 0.2, 0.2, 0.15, 0.1, 0.05]))
        main = str(rng.choice(CLASSES, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]))
        for k in range(size):
            labels = [main]
            if rng.random() < 0.3:
                labels.append(str(rng.choice([c for c in CLASSES if c != main])))
            rows.append((f"src{g:03d}_{k:02d}.wav", ",".join(labels), f"speaker {g}"))
    df = pd.DataFrame(rows, columns=["fname", "labels", "source"])
    pd.DataFrame(columns=["fname"] + CLASSES).to_csv(tmp_path / "sample_submission.csv", index=False)
    df.to_csv(tmp_path / "train_curated.csv", index=False)
    (tmp_path / "train_curated").mkdir()
    for fname in df["fname"]:
        (tmp_path / "train_curated" / fname).write_bytes(b"")
    return tmp_path, df


def test_grouped_folds_keep_every_group_in_one_fold_and_record_the_column(tmp_path, capsys):
    data_dir, df = grouped_set(tmp_path)
    make_folds.main(["--data-dir", str(data_dir), "--groups", "source"])
    out = pd.read_csv(data_dir / "train_folds.csv")
    assert out.columns.tolist() == ["fname", "labels", "source", "fold"]
    assert out["fname"].tolist() == df["fname"].tolist()
    assert (out.groupby("source")["fold"].nunique() == 1).all()
    assert sorted(out["fold"].unique()) == [0, 1, 2, 3, 4]
    printed = capsys.readouterr().out
    assert "grouped by 'source'" in printed and f"{df['source'].nunique()} groups" in printed
    # Deterministic: the same call gives the same folds; another seed other ones.
    make_folds.main(["--data-dir", str(data_dir), "--groups", "source", "--out", str(data_dir / "again.csv")])
    assert pd.read_csv(data_dir / "again.csv")["fold"].tolist() == out["fold"].tolist()
    make_folds.main(["--data-dir", str(data_dir), "--groups", "source", "--seed", "7",
                     "--out", str(data_dir / "seed7.csv")])
    assert pd.read_csv(data_dir / "seed7.csv")["fold"].tolist() != out["fold"].tolist()


def test_grouped_folds_balance_labels_better_than_random_group_folds(tmp_path):
    from src.data.folds import fold_per_group, label_imbalance
    from src.data.labels import targets_matrix

    _, df = grouped_set(tmp_path, n_groups=80)
    targets = targets_matrix(df["labels"].tolist(), CLASSES)
    ours = label_imbalance(targets, fold_per_group(targets, df["source"], 5, seed=42), 5)
    # Random group folds: each group to a random fold (a fold count per group, as a naive split would do).
    names = sorted(df["source"].unique())
    random_worst = []
    for seed in range(20):
        fold_of = dict(zip(names, np.random.default_rng(seed).integers(0, 5, len(names))))
        random_worst.append(label_imbalance(targets, df["source"].map(fold_of), 5).max())
    assert ours.max() < min(random_worst), (ours.max(), sorted(random_worst)[:3])
    # and than sklearn's GroupKFold, which balances fold sizes only
    from sklearn.model_selection import GroupKFold
    sizes_only = np.zeros(len(df), int)
    for fold, (_, val) in enumerate(GroupKFold(5).split(df, groups=df["source"])):
        sizes_only[val] = fold
    assert ours.max() < label_imbalance(targets, sizes_only, 5).max()


def test_group_pattern_takes_the_capture_group_or_the_whole_match(tmp_path):
    data_dir, df = grouped_set(tmp_path, n_groups=20)
    make_folds.main(["--data-dir", str(data_dir), "--group-pattern", r"^src(\d+)_"])
    out = pd.read_csv(data_dir / "train_folds.csv", dtype=str)
    assert out.columns.tolist() == ["fname", "labels", "source", "group", "fold"]
    assert out["group"].tolist() == [f[3:6] for f in df["fname"]]
    assert (out.groupby("group")["fold"].nunique() == 1).all()
    make_folds.main(["--data-dir", str(data_dir), "--group-pattern", r"^src\d+", "--out", str(data_dir / "w.csv")])
    assert pd.read_csv(data_dir / "w.csv")["group"].tolist() == [f[:6] for f in df["fname"]]
    # a 'group' column of the user's own is not overwritten
    df.rename(columns={"source": "group"}).to_csv(data_dir / "train_curated.csv", index=False)
    with pytest.raises(BadInput, match="already has a 'group' column"):
        make_folds.main(["--data-dir", str(data_dir), "--group-pattern", r"^src(\d+)_", "--out", str(data_dir / "x.csv")])


def test_group_pattern_refuses_an_fname_it_does_not_match(tmp_path):
    data_dir, df = grouped_set(tmp_path, n_groups=20)
    df.loc[4, "fname"] = "odd.wav"
    df.to_csv(data_dir / "train_curated.csv", index=False)
    (data_dir / "train_curated" / "odd.wav").write_bytes(b"")
    with pytest.raises(BadInput, match="gives no group for 1 fname.*line 6 'odd.wav'"):
        make_folds.main(["--data-dir", str(data_dir), "--group-pattern", r"^src(\d+)_"])
    with pytest.raises(BadSetting, match="not a valid regular expression"):
        make_folds.main(["--data-dir", str(data_dir), "--group-pattern", r"src(\d+"])
    assert not (data_dir / "train_folds.csv").exists()


def test_too_few_groups_refused(tmp_path):
    data_dir, df = grouped_set(tmp_path, n_groups=4)
    with pytest.raises(BadSetting, match="4 group.* for 5 folds"):
        make_folds.main(["--data-dir", str(data_dir), "--groups", "source"])
    with pytest.raises(BadInput, match="no column 'speaker'"):
        make_folds.main(["--data-dir", str(data_dir), "--groups", "speaker"])
    assert not (data_dir / "train_folds.csv").exists()
    make_folds.main(["--data-dir", str(data_dir), "--groups", "source", "--n-folds", "4"])
    assert sorted(pd.read_csv(data_dir / "train_folds.csv")["fold"].unique()) == [0, 1, 2, 3]


def test_readers_of_train_folds_take_the_group_column(tmp_path):
    from src.data.corrections import read_curated
    from src.data.layout import read_folds

    data_dir, df = grouped_set(tmp_path, n_groups=20)
    make_folds.main(["--data-dir", str(data_dir), "--groups", "source"])
    folds = read_folds(data_dir)
    assert folds["source"].tolist() == df["source"].tolist()
    curated = read_curated(data_dir, CLASSES, None, need_folds=True)
    assert curated.kept["fname"].tolist() == df["fname"].tolist()
    assert curated.kept["fold"].tolist() == folds["fold"].tolist()
