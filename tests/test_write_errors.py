"""A full disk or a read-only folder while writing any output: one line `script.py: error: <path>: cannot write:
<cause>; ...` and exit status 2, no traceback; what was written before is intact; no temporary left; the same
command (with --resume where training) succeeds once there is room.

Two ways to fill the disk: for real, a small tmpfs mounted for the test (tests run as root here; skipped with
the reason where mounting is not permitted), and by injection (`disk_full`: every file opened for writing under
a temporary name of the atomic writers, or a feature spool, fails with ENOSPC and no file name, as np.save,
DataFrame.to_csv and torch.save report it), which covers every named output on any machine.
"""
import builtins
import errno
import io
import os
import subprocess
import types
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import export
import make_kernel
import tag
import train_folds
from src.cli import run
from src.predict.prediction_sets import PredictionSet, write_prediction_tree
from src.train.fit import AtomicCheckpoint
from src.train.resume import LAST_STATE, TrainingState, load_training_state
from src.files import TEMP_MARK, atomic_path, torch_save_atomic
from tests.helpers import CLASSES, SR, demo_dataset, demo_fold0_args, make_experiment, sound, tiny_model, \
    torch_threads

NO_SPACE = os.strerror(errno.ENOSPC)


def hidden(folder):
    """Hidden names under `folder`, but lock files (kept by design, src/locks.py)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*") if not p.name.endswith(".lock"))


def is_temporary(file) -> bool:
    name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
    return TEMP_MARK in name or ".spool-" in Path(name).name


@pytest.fixture
def disk_full(monkeypatch):
    """Writes to the atomic writers' temporaries (and feature spools) fail as on a full disk; undo() ends it."""
    return fill_the_disk(monkeypatch)


def fill_the_disk(monkeypatch):
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        if is_temporary(file) and any(flag in mode for flag in "wax+"):
            raise OSError(errno.ENOSPC, NO_SPACE)  # no file name, like a failing write(2) of a library
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)
    return monkeypatch


def run_script(main, argv, capsys):
    """src.cli.run(main, argv) as a script runs it: (exit status, stderr)."""
    with pytest.raises(SystemExit) as info:
        run(main, argv)
    return info.value.code, capsys.readouterr().err


def assert_one_write_error(status, err, path, cause=NO_SPACE):
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"error: {path}: cannot write: {cause}" in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- the writers, by injection

def test_atomic_writes_name_the_final_path_and_keep_the_old_file(tmp_path, disk_full):
    target = tmp_path / "probs.npy"
    target.write_bytes(b"before")
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            np.save(tmp, np.zeros(3))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)  # was None
    assert target.read_bytes() == b"before" and hidden(tmp_path) == []


def test_a_checkpoint_on_a_full_disk(tmp_path, disk_full):
    path = tmp_path / "model-001-0.500000.pth"
    path.write_bytes(b"before")
    state = types.SimpleNamespace(model=tiny_model())
    with pytest.raises(OSError) as info:
        AtomicCheckpoint(tmp_path, monitor="val_lwlrap").save_model(state, path)
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"before" and hidden(tmp_path) == []


def test_the_training_state_on_a_full_disk(tmp_path, disk_full):
    path = tmp_path / LAST_STATE
    path.write_bytes(b"before")
    model = tiny_model()
    saver = TrainingState(path, {}, torch.Generator())
    saver.start(types.SimpleNamespace(model=model))
    with pytest.raises(OSError) as info:
        saver.epoch_complete(types.SimpleNamespace(model=model, epoch=3, stopped=False))
    assert info.value.filename == str(path) and info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"before" and hidden(tmp_path) == []


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(2):
        sf.write(folder / f"{i}.wav", sound(1.0, SR, seed=i), SR, subtype="PCM_16")
    return folder


@pytest.mark.parametrize("failing", ["spool", "cache folder"])
def test_a_feature_cache_on_a_full_disk(tmp_path, clips, disk_full, failing):
    from src.audio import cache
    if failing == "cache folder":  # the spool is written; publishing the folder fails
        disk_full.setattr(cache, "_spooled_log_mels", lambda *args, **kwargs: [np.zeros((128, 10), np.float32)] * 2)
    features = tmp_path / "features"
    with pytest.raises(OSError) as info:
        cache.load_features(["0.wav", "1.wav"], clips, features, "x", workers=1, progress=False)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename.startswith(str(features / "x-"))  # the cache folder (or a file in it)
    assert TEMP_MARK not in info.value.filename and list(features.iterdir()) == []
    disk_full.undo()
    specs = cache.load_features(["0.wav", "1.wav"], clips, features, "x", workers=1, progress=False)
    assert len(specs) == 2 and hidden(features) == []


def test_a_prediction_tree_on_a_full_disk(tmp_path, disk_full):
    out = tmp_path / "predictions" / "demo"
    (out / "oof").mkdir(parents=True)
    (out / "oof" / "probs.csv").write_text("earlier\n")
    pred = PredictionSet(["a.wav"], CLASSES, np.full((1, len(CLASSES)), 0.5, np.float32))
    report = {"per_class_lwlrap": {c: 0.5 for c in CLASSES}}
    with pytest.raises(OSError) as info:
        write_prediction_tree(out, {"oof": pred}, report, title="x")
    assert info.value.filename == str(out / "oof" / "probs.csv")  # not the staging folder's name
    assert (out / "oof" / "probs.csv").read_text() == "earlier\n" and hidden(tmp_path) == []
    disk_full.undo()
    write_prediction_tree(out, {"oof": pred}, report, title="x")
    assert (out / "oof" / "probs.csv").read_text().startswith("fname,")


@pytest.fixture
def experiment(tmp_path):
    make_experiment(tmp_path, "tiny", folds=1)
    sf.write(tmp_path / "a.wav", sound(1.5, SR, seed=0), SR, subtype="PCM_16")
    return tmp_path


@pytest.mark.parametrize("option", ["--out", "--torchscript"])
def test_export_on_a_full_disk(experiment, tmp_path, disk_full, capsys, option):
    out = tmp_path / "out" / "model.pt"
    status, err = run_script(export.main, ["--experiment", "tiny", "--data-dir", str(experiment), option, str(out)],
                             capsys)
    assert_one_write_error(status, err, out)
    assert [p.name for p in out.parent.iterdir() if not p.name.endswith(".lock")] == []  # the lock stays, by design
    disk_full.undo()
    assert export.main(["--experiment", "tiny", "--data-dir", str(experiment), option, str(out)]) == 0


@pytest.fixture
def bundle(tmp_path):
    from src.config import AUDIO
    from src.tagging.bundles import random_ensemble_bundle
    path = tmp_path / "ens.pt"
    torch.save(random_ensemble_bundle("demo", CLASSES, AUDIO, n_folds=1), path)
    return path


def test_make_kernel_on_a_full_disk(tmp_path, bundle, disk_full, capsys):
    out = tmp_path / "kernel.py"
    out.write_text("# the previous kernel\n")
    status, err = run_script(make_kernel.main, ["--bundle", str(bundle), "--out", str(out)], capsys)
    line = assert_one_write_error(status, err, out)
    assert "free some space, then continue with: python " in line
    assert out.read_text() == "# the previous kernel\n" and hidden(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_tag_output_on_a_full_disk(experiment, tmp_path, disk_full, capsys, suffix):
    out = tmp_path / f"tags{suffix}"
    argv = [str(experiment / "a.wav"), "--experiment", "tiny", "--data-dir", str(experiment), "--no-progress",
            "--out", str(out)]
    status, err = run_script(tag.main, argv, capsys)
    assert_one_write_error(status, err, out)
    assert not out.exists() and hidden(tmp_path) == []


def test_a_refused_permission_is_named_too(tmp_path, capsys):
    def main(argv):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x.csv"))

    status, err = run_script(main, [], capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"error: {tmp_path / 'x.csv'}: {os.strerror(errno.EACCES)}; " in lines[0]
    assert "fix its permissions, then continue with: python " in lines[0]


def test_other_os_errors_keep_their_traceback():
    def main():
        raise OSError(errno.EIO, "Input/output error", "disk")

    with pytest.raises(OSError):
        run(main)


# ----------------------------------------------------------------------------- a real full disk (tmpfs)

def mount_tmpfs(mount_point, options):
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); "
                    f"the injected ENOSPC tests cover the same outputs")


@pytest.fixture
def read_only_disk(tmp_path):
    mount_point = tmp_path / "read-only"
    mount_tmpfs(mount_point, "size=1m,ro")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk (unmounted afterwards); fill(left=bytes) leaves that much room."""
    mount_point = tmp_path / "disk"
    mount_tmpfs(mount_point, "size=4m")
    filler = mount_point / f"filler-{uuid.uuid4().hex}"

    def fill(left=0):
        with open(filler, "wb", buffering=0) as handle:  # unbuffered: nothing left to flush at close
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        if left:
            os.truncate(filler, max(0, filler.stat().st_size - left))

    def free():
        filler.unlink(missing_ok=True)

    yield types.SimpleNamespace(path=mount_point, fill=fill, free=free)
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_torch_save_on_a_real_full_disk_names_the_file(small_disk):
    """torch.save to a path says only 'unexpected pos' (a RuntimeError) when the disk fills; through an open
    file its cause, the OSError, is kept, and torch_save_atomic reports that, naming the final path."""
    path = small_disk.path / "bundle.pt"
    torch_save_atomic(lambda handle: torch.save({"w": torch.zeros(10)}, handle), path)
    before = path.read_bytes()
    small_disk.fill(left=16 * 1024)
    with pytest.raises(OSError) as info:
        torch_save_atomic(lambda handle: torch.save({"w": torch.zeros(1_000_000)}, handle), path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == before and hidden(small_disk.path) == []


def test_training_on_a_disk_that_fills_stops_cleanly_and_resumes(small_disk, tmp_path, capsys, monkeypatch):
    """The experiments folder on a small disk that fills after epoch 0: one line naming the file, exit 2, epoch
    0's state intact, no temporaries; with room again, --resume continues at epoch 1."""
    with torch_threads(1):
        data = demo_dataset(tmp_path / "data", seed=4, n_curated=30, n_noisy=6, n_test=8)
    (data / "experiments").symlink_to(small_disk.path, target_is_directory=True)
    import src.train.resume as resume
    save = resume.TrainingState.epoch_complete

    def save_then_fill(self, state):
        save(self, state)
        if state.epoch == 0:
            small_disk.fill()

    monkeypatch.setattr(resume.TrainingState, "epoch_complete", save_then_fill)
    args = demo_fold0_args(data, epochs=2, epoch_size=32)
    with torch_threads(1):
        status, err = run_script(train_folds.main, args, capsys)
    fold = data / "experiments" / "demo" / "fold_0"
    line = [line for line in err.strip().splitlines() if "error:" in line]
    assert status == 2 and len(line) == 1 and "Traceback" not in err, err
    assert f"{fold}/" in line[0] and f"cannot write: {NO_SPACE}" in line[0] and "--resume" in line[0], line[0]
    assert load_training_state(fold / LAST_STATE)["epoch"] == 0
    assert hidden(small_disk.path) == []
    small_disk.free()
    monkeypatch.undo()
    with torch_threads(1):
        train_folds.main(args + ["--resume"])
    assert "demo fold 0: resuming at epoch 1" in capsys.readouterr().out
    assert (fold / "done.json").is_file()


def test_make_kernel_into_a_read_only_folder(read_only_disk, bundle, capsys):
    out = read_only_disk / "kernel.py"
    status, err = run_script(make_kernel.main, ["--bundle", str(bundle), "--out", str(out)], capsys)
    line = assert_one_write_error(status, err, out, os.strerror(errno.EROFS))
    assert "write elsewhere, or continue with: python " in line


def test_blend_on_a_full_disk(tmp_path, monkeypatch, capsys):
    import blend
    from src.predict.prediction_sets import write_prediction_set
    data = tmp_path / "data"
    names = ["a.wav", "b.wav"]
    probs = np.full((2, len(CLASSES)), 0.5, np.float32)
    write_prediction_set(data / "predictions" / "one" / "test", PredictionSet(names, CLASSES, probs))
    (data / "sample_submission.csv").write_text(",".join(["fname", *CLASSES]) + "\n"
                                                 + "".join(n + ",0" * len(CLASSES) + "\n" for n in names))
    out = tmp_path / "sub" / "submission.csv"
    out.parent.mkdir()
    fill_the_disk(monkeypatch)
    status, err = run_script(blend.main, ["--experiments", "one", "--data-dir", str(data), "--out", str(out)], capsys)
    assert_one_write_error(status, err, out)
    assert [p for p in out.parent.iterdir() if not p.name.endswith(".lock")] == []
