"""bench/early_stopping.py: its replay stops and keeps where argus would, and its table adds up."""
import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from argus.callbacks import EarlyStopping

from src.cli import run
from tests.test_bench_errors import load


def argus_stop(scores, patience, epochs):
    """(epochs trained, stopped by EarlyStopping) for argus's EarlyStopping on a max metric, at most `epochs`."""
    stopping = EarlyStopping(monitor="val_lwlrap", patience=patience, better="max")
    state = SimpleNamespace(metrics={}, stopped=False, logger=logging.getLogger("test"), epoch=0)
    stopping.start(state)
    for epoch, score in enumerate(scores[:epochs]):
        state.epoch, state.metrics = epoch, {"val_lwlrap": score}
        stopping.epoch_complete(state)
        if state.stopped:
            return epoch + 1, True
    return min(len(scores), epochs), False


@pytest.mark.parametrize("seed", range(5))
def test_replay_stops_where_argus_stops_and_keeps_the_first_best(seed):
    replay = load("early_stopping.py").replay
    rng = np.random.default_rng(seed)
    # rounded scores: ties happen, and a tie is not an improvement
    scores = np.round(np.minimum(1, np.linspace(0.2, 0.9, 60) + rng.normal(0, 0.05, 60)), 2).tolist()
    for patience in (1, 3, 6, 15):
        for epochs in (10, 40, 60):
            result = replay(scores, patience, epochs)
            assert (result.trained, result.stopped) == argus_stop(scores, patience, epochs), (patience, epochs)
            assert result.kept == int(np.argmax(scores[:result.trained])) and result.best == max(scores[:result.trained])


def write_run(root, folds, early_stopping=3, epochs=10):
    exp = root / "experiments" / "small"
    for i, scores in enumerate(folds):
        (exp / f"fold_{i}").mkdir(parents=True)
        pd.DataFrame({"time": "2026-12-07", "epoch": range(len(scores)), "lr": 0.006, "train_loss": 0.1,
                      "val_loss": 0.1, "val_lwlrap": scores}).to_csv(exp / f"fold_{i}" / "log.csv", index=False)
    (exp / "config.json").write_text(json.dumps(
        {"name": "small", "seed": 42, "experiment": {"epochs": epochs, "early_stopping": early_stopping}}))
    return root


FOLD_0 = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3]             # best at 2; patience 3 stops after 6 epochs
FOLD_1 = [0.1, 0.5, 0.4, 0.45, 0.6, 0.5, 0.5, 0.5]  # best at 4; stops after 8; patience 2 after 4, keeping 0.5


def test_the_table_of_a_shorter_patience_and_fewer_epochs(tmp_path, capsys):
    bench = load("early_stopping.py")
    write_run(tmp_path, [FOLD_0, FOLD_1])
    bench.main([str(tmp_path), "--patience", "2", "--epochs", "5"])
    rows = {line.split()[0] + line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["asrun"][2:6] == ["100.0%", "2", "of", "2"]
    # patience 2: 5 + 4 of 14 epochs; fold 0 keeps epoch 2, fold 1 drops from 0.6 to 0.5
    assert rows["patience2"][2:6] == ["64.3%", "1", "of", "2"]
    assert rows["patience2"][6:] == ["-0.0500", "(se", "0.0500)"]
    # 5 epochs: 5 + 5 of 14; both folds keep their checkpoint (fold 1's best is at epoch 4)
    assert rows["5epochs"][2:] == ["71.4%", "2", "of", "2", "+0.0000", "(se", "0.0000)"]


def test_it_refuses_what_the_logs_cannot_answer(tmp_path, capsys):
    bench = load("early_stopping.py")
    write_run(tmp_path / "a", [FOLD_0, FOLD_1])
    with pytest.raises(SystemExit) as info:
        run(bench.main, [str(tmp_path / "a"), "--patience", "4"])
    assert info.value.code == 2 and "early_stopping=3" in capsys.readouterr().err

    write_run(tmp_path / "b", [FOLD_0, FOLD_1[:5]])                     # fold 1 interrupted after 5 epochs
    with pytest.raises(SystemExit) as info:
        run(bench.main, [str(tmp_path / "b"), "--patience", "2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "fold_1" in err and "do not reproduce" in err

    (tmp_path / "a" / "experiments" / "small" / "fold_0" / "log.csv").write_bytes(b"")     # emptied by a crash
    with pytest.raises(SystemExit) as info:
        run(bench.main, [str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "fold_0" in err and "not a training log" in err
