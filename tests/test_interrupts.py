"""Interruptions at every stage: Ctrl-C (SIGINT) and SIGTERM stop a script with one line saying what was kept and
the command that continues, exit status 130 / 143, and no temporary file or folder left; kill -9 leaves
temporaries that the next run removes (only the repo's own, of dead processes); a fold stopped right after its
epoch's log line resumes at the next epoch.

The real scripts run in a subprocess on a tiny generated dataset. Where the moment matters, a wrapper holds the
script at a chosen point (it prints HELD and waits) and the test signals it there: the test waits for that line,
never for a time.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import train_folds
from src.train import fit
from src.train.resume import LAST_STATE, load_training_state
from src.files import TEMP_MARK, atomic_path, remove_stale_temps
from tests.helpers import demo_dataset, demo_fold0_args, make_experiment, sound, SR, torch_threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A demo dataset with its training feature cache built (fold 0 trained one epoch, then removed)."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("interrupts") / "data", seed=4, n_curated=30, n_noisy=6,
                            n_test=8)
    return root


def train_args(data_dir, *extra, epochs=3):
    return demo_fold0_args(data_dir, *extra, epochs=epochs, epoch_size=32)


def temporaries(folder):
    """Every hidden name anywhere under `folder`: what a writer leaves when it is not cleaned up. Lock files
    (`.NAME.lock`, src/locks.py) are left out: they stay by design, and the kernel releases their lock."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*") if not p.name.endswith(".lock"))


# ----------------------------------------------------------------------------- the epoch a resume continues from

def test_a_fold_stopped_right_after_its_log_line_resumes_at_the_next_epoch(dataset, tmp_path, monkeypatch, capsys):
    """The training state used to be saved after the curves were drawn: a kill in between (the log already
    showing the epoch) made --resume train that epoch again, or the whole fold when it was the first."""
    experiment = dataset / "experiments" / "demo"
    draw = fit.CurvesPlot.epoch_complete

    def stopped_while_plotting(self, state):
        if state.epoch == 0:
            raise KeyboardInterrupt  # Ctrl-C while the curves of epoch 0 are drawn
        draw(self, state)

    monkeypatch.setattr(fit.CurvesPlot, "epoch_complete", stopped_while_plotting)
    try:
        with torch_threads(1), pytest.raises(KeyboardInterrupt):
            train_folds.main(train_args(dataset, "--overwrite", epochs=2))
        out = capsys.readouterr().out
        assert "val - epoch: 0" in out  # the log line was out before the stop
        assert load_training_state(experiment / "fold_0" / LAST_STATE)["epoch"] == 0
        monkeypatch.undo()
        with torch_threads(1):
            train_folds.main(train_args(dataset, "--resume", epochs=2))
        assert "demo fold 0: resuming at epoch 1" in capsys.readouterr().out
        assert json.loads((experiment / "fold_0" / "done.json").read_text())["epochs_run"] == 2
    finally:
        import shutil
        shutil.rmtree(experiment, ignore_errors=True)


# ----------------------------------------------------------------------------- signals at work

HOLD = """\
import importlib, runpy, sys, time
module = importlib.import_module({module!r})
real = getattr(module, {name!r})

def held(*args, **kwargs):
    {before}
    print("HELD", flush=True)
    time.sleep(600)  # the test signals us here; never reached the end of

setattr(module, {name!r}, held)
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def start(script, args, hold=None, before="pass"):
    """Start `script` in a subprocess; with hold=(module, function), it stops when that function is called
    (after running `before`, Python code seeing args/kwargs/real) and prints HELD."""
    if hold is None:
        command = [sys.executable, script, *map(str, args)]
    else:
        code = HOLD.format(module=hold[0], name=hold[1], script=script, before=before)
        command = [sys.executable, "-c", code, *map(str, args)]
    # A session of its own: the signal goes to its whole process group, as Ctrl-C on a terminal does (and
    # SIGTERM from a job scheduler), reaching DataLoader and feature-pool workers too.
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})


def wait_for_line(process, fragment, limit=400):
    """Read the script's stdout until a line holds `fragment` (the process is then at that point)."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if fragment in line:
            return seen
        if len(seen) > limit:
            break
    process.kill()
    raise AssertionError(f"never printed {fragment!r}: {''.join(seen)[-2000:]}\n{process.stderr.read()[-2000:]}")


def signal_and_finish(process, signum):
    os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in out, out  # argus logs the exception that ends training: not this one
    return process.returncode, err


def assert_one_interruption_line(status, err, signum, script, *fragments):
    assert status == 128 + signum, err
    name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert [line for line in lines if "interrupted" in line] == [lines[-1]], err
    assert lines[-1].startswith(f"{script}: interrupted ({name}): "), err
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def continue_command(line):
    """The argv of the 'continue with: python ...' of an interruption line."""
    return shlex.split(line.split("continue with: ", 1)[1])[1:]


def test_sigint_mid_training_keeps_the_finished_epoch_and_names_the_resume(dataset):
    experiment = dataset / "experiments" / "demo"
    try:
        process = start("train_folds.py", train_args(dataset, "--overwrite", "--workers", "1", epochs=3))
        wait_for_line(process, "train - epoch: 1")  # epoch 0 is complete and saved, epoch 1 validating
        status, err = signal_and_finish(process, signal.SIGINT)
        line = assert_one_interruption_line(status, err, signal.SIGINT, "train_folds.py", "--resume",
                                            "last completed epoch")
        assert "--overwrite" not in line  # continuing must not start the fold again
        assert temporaries(experiment) == []
        assert not (experiment / "fold_0" / "done.json").exists()
        assert load_training_state(experiment / "fold_0" / LAST_STATE)["epoch"] in (0, 1)
        args = continue_command(line)
        assert args[0] == "train_folds.py"
        with torch_threads(1):
            train_folds.main(args[1:])
        assert json.loads((experiment / "fold_0" / "done.json").read_text())["epochs_run"] == 3
    finally:
        import shutil
        shutil.rmtree(experiment, ignore_errors=True)


def test_sigterm_during_a_feature_cache_build_leaves_no_temporary(tmp_path, dataset):
    """Held inside the cache's temporary folder (frames.npy written, checksum next), with its spool and
    lock beside it: all three are gone after SIGTERM, and the same command then builds the cache."""
    import shutil
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("features", "experiments"))
    process = start("train_folds.py", train_args(data, epochs=1), hold=("src.audio.cache", "checksum"))
    wait_for_line(process, "HELD")
    features = data / "features"
    assert any(TEMP_MARK in p.name for p in features.iterdir())  # the folder being built
    status, err = signal_and_finish(process, signal.SIGTERM)
    line = assert_one_interruption_line(status, err, signal.SIGTERM, "train_folds.py", "--resume")
    assert list(features.iterdir()) == []  # no temporary folder, spool or lock file
    args = continue_command(line)
    with torch_threads(1):
        train_folds.main(args[1:])
    assert [p.name for p in features.iterdir() if p.name.startswith(".")] == []
    assert (data / "experiments" / "demo" / "fold_0" / "done.json").is_file()


@pytest.fixture(scope="module")
def fake_experiment(tmp_path_factory):
    """Two untrained tiny fold models (tests/helpers.make_experiment) and a clip to tag."""
    root = tmp_path_factory.mktemp("fake")
    make_experiment(root, "tiny")
    import soundfile as sf
    sf.write(root / "a.wav", sound(1.5, SR, seed=0), SR, subtype="PCM_16")
    return root


def test_sigterm_while_tag_writes_its_output(fake_experiment, tmp_path):
    out = tmp_path / "tags.csv"
    out.write_text("earlier results\n")
    args = [fake_experiment / "a.wav", "--experiment", "tiny", "--data-dir", fake_experiment, "--no-progress",
            "--out", out]
    # Held with the temporary CSV written in full, just before it would be renamed onto tags.csv.
    process = start("tag.py", args, hold=("os", "replace"), before="")
    wait_for_line(process, "HELD")
    assert any(TEMP_MARK in p.name for p in tmp_path.iterdir())
    status, err = signal_and_finish(process, signal.SIGTERM)
    line = assert_one_interruption_line(status, err, signal.SIGTERM, "tag.py", "nothing half-written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tags.csv"]
    assert out.read_text() == "earlier results\n"
    import tag
    args = continue_command(line)
    assert args[0] == "tag.py" and tag.main(args[1:]) == 0
    assert out.read_text().startswith("fname,")


def test_sigint_while_export_writes_the_bundle(fake_experiment, tmp_path):
    out = tmp_path / "model.pt"
    process = start("export.py", ["--experiment", "tiny", "--data-dir", fake_experiment, "--out", out],
                    hold=("torch", "save"), before="real(*args, **kwargs)")  # the bundle written, not renamed
    wait_for_line(process, "HELD")
    status, err = signal_and_finish(process, signal.SIGINT)
    assert_one_interruption_line(status, err, signal.SIGINT, "export.py", "python export.py --experiment tiny")
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# ----------------------------------------------------------------------------- temporaries of killed runs

def plant(folder, name):
    path = folder / name
    path.mkdir(parents=True)
    (path / "half.npy").write_bytes(b"half")
    return path


def dead_pid():
    """A pid that no process has (pid_max is at most 2**22 on Linux)."""
    pid = 2 ** 22 + 17
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


def test_temporaries_of_killed_runs_are_removed_by_the_next_write_and_nothing_else(tmp_path):
    from src.files import _HOST
    folder = tmp_path / "predictions"
    stale = plant(folder, f".demo{TEMP_MARK}{dead_pid()}@{_HOST}-k3x9_q")
    stale_file = folder / f".thresholds.json{TEMP_MARK}{dead_pid()}@{_HOST}-a1b2c3.json"
    stale_file.write_text("{")
    keep = [plant(folder, f".demo{TEMP_MARK}{os.getppid()}@{_HOST}-live00"),  # a running process's
            plant(folder, f".demo{TEMP_MARK}{dead_pid()}@elsewhere-k3x9_q"),  # another machine's
            plant(folder, ".demo.fsat-tmp-notes"),  # a user's, with a similar name
            plant(folder, f".demo.tmp-{dead_pid()}"), plant(folder, "demo-old")]
    with atomic_path(folder / "other.json") as tmp:  # any write into the folder: here, the next run's
        tmp.write_text("{}")
    assert not stale.exists() and not stale_file.exists()
    assert all(path.exists() for path in keep)
    assert remove_stale_temps(folder) == []


def test_a_cache_build_killed_with_sigkill_is_cleaned_by_the_next_build(tmp_path):
    """kill -9 runs no clean-up: the temporary cache folder stays, until the next build of the same folder."""
    from src.audio.cache import load_features
    import soundfile as sf
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        sf.write(clips / f"{i}.wav", sound(1.0, SR, seed=i), SR, subtype="PCM_16")
    code = textwrap.dedent(f"""
        import os, signal, sys
        import src.audio.cache as cache
        def killed(array, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        cache.checksum = killed
        cache.load_features(["0.wav", "1.wav"], {str(clips)!r}, {str(tmp_path / 'features')!r}, "x", workers=1,
                            progress=False)
    """)
    killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    features = tmp_path / "features"
    left = [p.name for p in features.iterdir()]
    assert any(TEMP_MARK in name for name in left), left
    user_file = features / ".x-notes.fsat-tmp-mine"
    user_file.write_text("mine")
    load_features(["0.wav", "1.wav"], clips, features, "x", workers=1, progress=False)
    assert sorted(p.name for p in features.iterdir() if p.name.startswith(".")) == [user_file.name]


# ----------------------------------------------------------------------------- every stage, in process

def interrupt_at_publish(monkeypatch, output_name, signum):
    """The rename that would publish `output_name` (the atomic writers' last step, the output written in full
    under its temporary name) is where the signal lands: it raises what src.cli.run's handlers raise."""
    from src.cli import Terminated
    stop = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    for name in ("replace", "rename"):
        real = getattr(os, name)

        def interrupted(src, dst, *args, real=real, **kwargs):
            if Path(dst).name == output_name:
                raise stop()
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, interrupted)


def run_interrupted(script, main, argv, monkeypatch, capsys):
    """src.cli.run(main) as `python script argv...`: (status, its stderr)."""
    from src.cli import run
    monkeypatch.setattr(sys, "argv", [script, *map(str, argv)])
    with pytest.raises(SystemExit) as info:
        run(main, [str(a) for a in argv])
    return info.value.code, capsys.readouterr().err


def test_make_folds_interrupted_keeps_the_old_folds(dataset, tmp_path, monkeypatch, capsys):
    import make_folds
    out = tmp_path / "folds" / "train_folds.csv"
    out.parent.mkdir()
    out.write_text("earlier\n")
    interrupt_at_publish(monkeypatch, "train_folds.csv", signal.SIGINT)
    status, err = run_interrupted("make_folds.py", make_folds.main, ["--data-dir", dataset, "--out", out],
                                  monkeypatch, capsys)
    line = assert_one_interruption_line(status, err, signal.SIGINT, "make_folds.py", "nothing half-written")
    assert out.read_text() == "earlier\n" and temporaries(out.parent) == []
    monkeypatch.undo()
    make_folds.main(continue_command(line)[1:])
    assert out.read_bytes() == (dataset / "train_folds.csv").read_bytes()


def test_blend_interrupted_leaves_no_submission(tmp_path, monkeypatch, capsys):
    import blend
    import numpy as np
    from src.predict.prediction_sets import PredictionSet, write_prediction_set
    from tests.helpers import CLASSES
    data = tmp_path / "data"
    names = ["a.wav", "b.wav"]
    for seed, experiment in enumerate(("one", "two")):
        probs = np.random.default_rng(seed).uniform(0.1, 0.9, (2, len(CLASSES))).astype(np.float32)
        write_prediction_set(data / "predictions" / experiment / "test", PredictionSet(names, CLASSES, probs))
    (data / "sample_submission.csv").write_text(",".join(["fname", *CLASSES]) + "\n"
                                                 + "".join(f"{n}" + ",0" * len(CLASSES) + "\n" for n in names))
    out = tmp_path / "sub" / "submission.csv"
    argv = ["--experiments", "one", "two", "--data-dir", data, "--out", out]
    interrupt_at_publish(monkeypatch, "submission.csv", signal.SIGTERM)
    status, err = run_interrupted("blend.py", blend.main, argv, monkeypatch, capsys)
    line = assert_one_interruption_line(status, err, signal.SIGTERM, "blend.py", "python blend.py --experiments")
    assert [p for p in out.parent.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    blend.main(continue_command(line)[1:])
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".lock")) == ["blend.json", "submission.csv"]


def test_predict_folds_interrupted_keeps_the_previous_predictions(dataset, tmp_path, monkeypatch, capsys):
    """SIGTERM as the new prediction tree is swapped in: the old tree stays whole, the staging folder goes."""
    import predict_folds
    experiment = dataset / "experiments" / "demo"
    out = dataset / "predictions" / "demo"
    try:
        with torch_threads(1):
            train_folds.main(train_args(dataset, "--overwrite", epochs=1))
        argv = ["--experiment", "demo", "--data-dir", dataset, "--threads", "1", "--device", "cpu", "--no-test"]
        (out / "oof").mkdir(parents=True)
        (out / "oof" / "probs.csv").write_text("earlier\n")
        interrupt_at_publish(monkeypatch, "demo", signal.SIGTERM)
        with torch_threads(1):
            status, err = run_interrupted("predict_folds.py", predict_folds.main, argv, monkeypatch, capsys)
        assert status == 143, err
        line = assert_one_interruption_line(status, err, signal.SIGTERM, "predict_folds.py",
                                            "python predict_folds.py --experiment demo")
        assert (out / "oof" / "probs.csv").read_text() == "earlier\n"
        assert temporaries(dataset / "predictions") == []
        monkeypatch.undo()
        with torch_threads(1):
            predict_folds.main(continue_command(line)[1:])
        assert (out / "oof" / "probs.csv").read_text().startswith("fname,")
    finally:
        import shutil
        shutil.rmtree(experiment, ignore_errors=True)
        shutil.rmtree(dataset / "predictions", ignore_errors=True)


def test_review_labels_interrupted_writes_no_sheet(tmp_path, monkeypatch, capsys):
    import numpy as np
    import review_labels
    from src.predict.prediction_sets import PredictionSet, write_prediction_set
    from tests.helpers import CLASSES
    data = tmp_path / "data"
    fnames = [f"c{i}.wav" for i in range(6)]
    (data / "predictions" / "A").mkdir(parents=True)
    (data / "sample_submission.csv").write_text(",".join(["fname", *CLASSES]) + "\n")
    (data / "train_folds.csv").write_text("fname,labels,fold\n" + "".join(
        f"{name},{CLASSES[i % len(CLASSES)]},{i % 2}\n" for i, name in enumerate(fnames)))
    probs = np.random.default_rng(0).uniform(0.05, 0.95, (len(fnames), len(CLASSES))).astype(np.float32)
    write_prediction_set(data / "predictions" / "A" / "oof", PredictionSet(fnames, CLASSES, probs))
    out = tmp_path / "sheet" / "review.csv"
    interrupt_at_publish(monkeypatch, "review.csv", signal.SIGINT)
    status, err = run_interrupted("review_labels.py", review_labels.main,
                                  ["--experiments", "A", "--data-dir", data, "--out", out], monkeypatch, capsys)
    line = assert_one_interruption_line(status, err, signal.SIGINT, "review_labels.py", "--out")
    assert [p for p in out.parent.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    review_labels.main(continue_command(line)[1:])
    assert out.read_text().startswith("fname")


def test_stacking_train_interrupted_in_its_second_fold_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C as fold 1 would be marked done: fold 0 is kept finished, fold 1 keeps its last epoch, and the
    line's command (--resume) finishes the experiment."""
    import numpy as np
    import stacking_train
    from tests.test_stacking import run_args, write_fake_data
    write_fake_data(tmp_path, np.random.default_rng(0))
    argv = run_args(tmp_path, "--folds", "0", "1", "--set", "epochs=2", "--set", "epoch_size=128")
    published = []

    real = os.replace

    def stop_at_second_done(src, dst, *args, **kwargs):
        if Path(dst).name == "done.json":
            published.append(dst)
            if len(published) == 2:
                raise KeyboardInterrupt
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", stop_at_second_done)
    status, err = run_interrupted("stacking_train.py", stacking_train.main, argv, monkeypatch, capsys)
    line = assert_one_interruption_line(status, err, signal.SIGINT, "stacking_train.py", "--resume",
                                        "last completed epoch")
    experiment = tmp_path / "experiments" / "stacking_demo"
    assert (experiment / "fold_0" / "done.json").is_file() and not (experiment / "fold_1" / "done.json").exists()
    assert temporaries(experiment) == []
    monkeypatch.undo()
    stacking_train.main(continue_command(line)[1:])
    out = capsys.readouterr().out
    assert "fold 0: already finished, skipped (--resume)" in out and "resuming at epoch 2" in out
    assert (experiment / "fold_1" / "done.json").is_file()


def test_make_kernel_interrupted_keeps_the_previous_kernel(tmp_path, monkeypatch, capsys):
    import torch
    import make_kernel
    from src.config import AUDIO
    from src.tagging.bundles import random_ensemble_bundle
    from tests.helpers import CLASSES
    bundle = tmp_path / "ens.pt"
    torch.save(random_ensemble_bundle("demo", CLASSES, AUDIO, n_folds=1), bundle)
    out = tmp_path / "kernel" / "kernel.py"
    out.parent.mkdir()
    out.write_text("# the previous kernel\n")
    interrupt_at_publish(monkeypatch, "kernel.py", signal.SIGTERM)
    status, err = run_interrupted("make_kernel.py", make_kernel.main, ["--bundle", bundle, "--out", out],
                                  monkeypatch, capsys)
    line = assert_one_interruption_line(status, err, signal.SIGTERM, "make_kernel.py", "--bundle")
    assert out.read_text() == "# the previous kernel\n" and temporaries(out.parent) == []
    monkeypatch.undo()
    assert make_kernel.main(continue_command(line)[1:]) == 0
    assert out.read_text().startswith("#!/usr/bin/env python")
