"""bench/small_data.py hands its training settings on to train_folds.py (the scripts it runs are recorded, not
run: what is checked is the command line)."""
from tests.test_bench_errors import load


def test_small_data_passes_its_seed_and_settings_to_train_folds(tmp_path, capsys, monkeypatch):
    """bench/small_data.py --seed S trains with seed S (the way to compare settings over several seeds); the
    scripts it runs are recorded instead of run, and the CV lwlrap (and its class average) it prints are the ones predict_folds wrote."""
    (tmp_path / "train_folds.csv").write_text("fname,labels,fold\na.wav,Bark,0\n")
    (tmp_path / "sample_submission.csv").write_text("fname,Bark,Meow\n")      # no test clips: no baseline
    module = load("small_data.py")
    calls = []

    def fake_run(script, *args):
        calls.append([script, *args])
        if script == "predict_folds.py":
            out = tmp_path / "predictions" / "small"
            out.mkdir(parents=True)
            (out / "val_lwlrap.json").write_text('{"lwlrap": 0.8125, "class_mean_lwlrap": 0.6875}')

    monkeypatch.setattr(module, "run", fake_run)
    module.main(["--data-dir", str(tmp_path), "--seed", "7", "--set", "epoch_size=64"])
    train = next(c for c in calls if c[0] == "train_folds.py")
    assert train[train.index("--seed") + 1] == "7" and train[train.index("--set") + 1] == "epoch_size=64", train
    assert [c[0] for c in calls] == ["train_folds.py", "predict_folds.py"]
    table = capsys.readouterr().out.splitlines()[-1]                    # the row of small, no test clips
    assert table.split()[-6:-4] == ["0.8125", "0.6875"], table         # CV lwlrap, then class-averaged
    calls.clear()
    (tmp_path / "predictions" / "small" / "val_lwlrap.json").unlink()
    (tmp_path / "predictions" / "small").rmdir()
    module.main(["--data-dir", str(tmp_path)])
    train = calls[0]
    assert train[train.index("--seed") + 1] == "42", train                # train_folds.py's own default
