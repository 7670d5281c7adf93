"""Progress reports (src/progress.py): a bar on a terminal; in logs and pipes one line per stage or epoch."""
import io
import os
import re
import subprocess
import sys

import soundfile as sf

from src.progress import StageLine, progress
from tests.helpers import ROOT, SR, demo_dataset, demo_fold0_args, make_experiment, sound, torch_threads

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run_piped(*command):
    """(status, stderr) of a script run with stderr into a pipe; bytes kept as they are (text mode would turn
    tqdm's carriage returns into newlines)."""
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=ENV, capture_output=True, timeout=600)
    return done.returncode, done.stderr.decode()


def assert_no_bars(stderr):
    # tqdm redraws with \r and prints "NN%|###|" and rates (it/s, file/s, batch/s)
    assert "\r" not in stderr and "%|" not in stderr and not re.search(r"(it|file|batch|clip)/s", stderr), stderr


def test_a_terminal_gets_a_bar_anything_else_one_line(monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress(range(3), desc="terminal", unit="clip")
    assert not isinstance(bar, StageLine)
    assert list(bar) == [0, 1, 2]
    assert "\r" in terminal.getvalue() and "terminal" in terminal.getvalue()
    monkeypatch.undo()

    assert list(progress(range(3), desc="stage", unit="clip")) == [0, 1, 2]
    bar = progress(total=4, desc="by hand", unit="batch", leave=False)  # tqdm-only options are accepted
    bar.update(1)
    bar.update(3)
    bar.close()
    bar.close()  # once only
    err = capsys.readouterr().err
    assert_no_bars(err)
    lines = err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"stage: 3/3 clip in \d+\.\d s", lines[0]), lines
    assert re.fullmatch(r"by hand: 4/4 batch in \d+\.\d s", lines[1]), lines

    assert list(progress(range(3), desc="quiet", enabled=False)) == [0, 1, 2]  # --no-progress: nothing at all
    monkeypatch.setattr(sys, "stderr", Terminal())
    progress(total=2, desc="quiet", enabled=False).close()
    assert sys.stderr.getvalue() == ""
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


def test_tagging_into_a_pipe_prints_one_line_per_stage(tmp_path):
    make_experiment(tmp_path, "tiny", folds=1)
    clips = tmp_path / "clips"
    clips.mkdir()
    for seed in range(3):
        sf.write(clips / f"{seed}.wav", sound(1.0, seed=seed), SR, subtype="PCM_16")
    command = ["tag.py", str(clips), "--experiment", "tiny", "--data-dir", str(tmp_path), "--device", "cpu",
               "--amp", "none"]
    status, stderr = run_piped(*command)
    assert status == 0, stderr
    assert_no_bars(stderr)
    assert len(re.findall(r"^tagging: 3/3 file in \d+\.\d s$", stderr, re.M)) == 1, stderr
    status, stderr = run_piped(*command, "--no-progress")
    assert status == 0 and "tagging" not in stderr, stderr


def test_training_into_a_pipe_prints_one_line_per_epoch(tmp_path):
    with torch_threads(1):
        root = demo_dataset(tmp_path / "data", seed=4, n_curated=30, n_noisy=6, n_test=8)
    args = [a for a in demo_fold0_args(root, epochs=2, epoch_size=32) if a != "--no-progress"]
    status, stderr = run_piped("train_folds.py", *args)
    assert status == 0, stderr[-3000:]
    assert_no_bars(stderr)
    epochs = re.findall(r"^demo fold 0 epoch (\d+): 2/2 batch in \d+\.\d s$", stderr, re.M)
    assert epochs == ["0", "1"], stderr  # 32 clips in batches of 16: two batches per epoch
    assert re.search(r"^train_curated: 30/30 clip in \d+\.\d s$", stderr, re.M), stderr  # the feature cache


def test_prediction_counts_clips_done(monkeypatch, capsys):
    """Predictor(progress=...): on a terminal a bar of clips done (tiles of several clips share batches, a
    clip counts once its last tile is predicted); elsewhere one line at the end; None: silent."""
    import numpy as np

    from src.predict.predictor import Predictor, _tile_batches
    from tests.helpers import tiny_model

    rng = np.random.default_rng(0)
    specs = [rng.normal(size=(128, frames)).astype(np.float32) for frames in (40, 300, 90, 500, 20)]
    counts = [finished for _, finished in _tile_batches(specs, 64, 32, 4)]
    assert sum(counts) == len(specs) and counts[0] == 1  # batch 1: clip 0's one tile + 3 of clip 1's
    predictor = Predictor(tiny_model(), tile_size=64, step=32, batch_size=4)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    # redraw on every update: at tqdm's default 0.1 s refresh a fast run may clear its bar unseen
    from tqdm import tqdm
    monkeypatch.setattr("src.progress.tqdm", lambda *a, **k: tqdm(*a, mininterval=0, miniters=1, **k))
    predictor.predict(specs, progress="oof")
    monkeypatch.undo()
    assert "\r" in terminal.getvalue() and "5/5" in terminal.getvalue()
    predictor.predict(specs, progress="test")
    predictor.predict(specs)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"test: 5/5 clip in \d+\.\d s", lines[0]), lines


def test_stage_line_counts_items_a_consumer_took_even_if_it_stops_early(capsys):
    # zip(names, bar) stops at the shorter list and never resumes the bar after its last item: the line
    # must still say every item was done (the feature cache consumes its clips this way)
    from src.progress import StageLine

    names = ["a", "b", "c"]
    pairs = list(zip(names, StageLine(iter(range(3)), total=3, desc="clips", unit="clip")))
    assert len(pairs) == 3
    import gc
    gc.collect()  # the abandoned generator closes
    assert re.fullmatch(r"clips: 3/3 clip in \d+\.\d s\n", capsys.readouterr().err)
