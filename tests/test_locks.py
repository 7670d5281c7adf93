"""One writer at a time (src/locks.py): a second run on the same output stops at once, naming the output and
the pid of the run that holds it; a lock dies with its holder; two runs started at once leave one whole tree."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import blend
import export
import predict_folds
import stacking_train
import train_folds
from src.errors import Busy, UserError
from src.locks import exclusive_lock, lock_file_beside
from tests.helpers import demo_dataset, demo_fold0_args, torch_threads, tree_bytes

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys\nfrom src.locks import exclusive_lock\n"
        "with exclusive_lock(sys.argv[1], 'the test output'):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n")


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the lock on tmp_path/.out.lock until its stdin closes (or it is killed)."""
    lock = tmp_path / ".out.lock"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield lock, process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_held_lock_refuses_a_second_process_naming_the_output_and_the_holders_pid(holder):
    lock, process = holder
    with pytest.raises(Busy, match=rf"my output: another process \(pid {process.pid}\) is writing it now "
                                   rf"\(lock {lock}\)"):
        with exclusive_lock(lock, "my output"):
            pass
    assert isinstance(Busy("x"), UserError)  # one line and exit status 2 (src/cli.py)


def test_the_lock_dies_with_its_holder_so_no_stale_lock_remains(holder):
    lock, process = holder
    process.send_signal(signal.SIGKILL)  # no cleanup code runs in the holder
    process.wait()
    assert lock.is_file()  # the file stays, but holds no lock: the next run takes it
    with exclusive_lock(lock, "my output"):
        assert lock.read_text().strip() == str(os.getpid())


def test_the_lock_is_released_at_the_end_of_the_block_even_on_error(tmp_path):
    lock = tmp_path / ".out.lock"
    with pytest.raises(RuntimeError):
        with exclusive_lock(lock, "my output"):
            raise RuntimeError("bug")
    with exclusive_lock(lock, "my output"):
        pass


def test_lock_files_are_hidden_beside_the_output_not_inside_it(tmp_path):
    assert lock_file_beside(tmp_path / "predictions" / "demo") == tmp_path / "predictions" / ".demo.lock"
    assert lock_file_beside(tmp_path / "submission.csv") == tmp_path / ".submission.csv.lock"


# ----------------------------------------------------------------------------- each script refuses while held

def _refused_while_held(lock, run_main, output):
    """Hold `lock` as another run would, run the script's main: Busy naming `output`, nothing written."""
    with exclusive_lock(lock, "held by the test"):
        with pytest.raises(Busy, match=re.escape(output) + rf".*: another process \(pid {os.getpid()}\) is writing"):
            run_main()


def test_stacking_train_refuses_while_another_run_holds_its_experiment(tmp_path):
    exp_dir = tmp_path / "experiments" / "stacking_demo"
    _refused_while_held(lock_file_beside(exp_dir), lambda: stacking_train.main(
        ["--experiment", "stacking_demo", "--data-dir", str(tmp_path)]), f"stacking experiment {exp_dir}")
    assert not exp_dir.exists()


def test_stacking_train_refuses_while_another_run_writes_its_predictions(tmp_path):
    out = tmp_path / "predictions" / "stacking_demo"
    _refused_while_held(lock_file_beside(out), lambda: stacking_train.main(
        ["--experiment", "stacking_demo", "--data-dir", str(tmp_path)]), f"predictions {out}")
    assert not (tmp_path / "experiments" / "stacking_demo").exists()


def test_blend_refuses_while_another_blend_writes_the_same_submission(tmp_path):
    out = tmp_path / "sub.csv"
    _refused_while_held(lock_file_beside(out), lambda: blend.main(
        ["--experiments", "a", "b", "--data-dir", str(tmp_path), "--out", str(out)]), f"submission {out}")
    assert not out.exists() and not (tmp_path / "blend.json").exists()


def test_a_refused_run_ends_with_one_line_and_status_2(tmp_path):
    out = tmp_path / "sub.csv"
    with exclusive_lock(lock_file_beside(out), "held by the test"):
        done = subprocess.run([sys.executable, "blend.py", "--experiments", "a", "--data-dir", str(tmp_path),
                               "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"blend.py: error: submission {out} (and its blend.json): another process "
                           f"(pid {os.getpid()}) is writing it now (lock {lock_file_beside(out)}); wait for it "
                           f"to finish, then run again\n")


@pytest.mark.parametrize("which", ["--out", "--torchscript"])
def test_export_refuses_while_another_export_writes_the_same_file(tmp_path, which):
    out = tmp_path / "model.pt"
    _refused_while_held(lock_file_beside(out), lambda: export.main(
        ["--experiment", "demo", "--data-dir", str(tmp_path), which, str(out)]), f"export {out}")
    assert not out.exists()


# ----------------------------------------------------------------------------- predict_folds, for real

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Fold 0 of the demo experiment, one tiny epoch, and the predictions of a lone run."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("locks") / "data", seed=4, n_curated=30, n_noisy=6, n_test=8)
        train_folds.main(demo_fold0_args(root, epochs=1, epoch_size=32))
        predict_folds.main(PREDICT + ["--data-dir", str(root)])
        yield root


PREDICT = ["--experiment", "demo", "--step", "32", "--threads", "1", "--device", "cpu", "--no-progress"]


def test_predict_folds_refuses_while_another_run_holds_the_experiments_predictions(trained):
    out = trained / "predictions" / "demo"
    before = tree_bytes(out)
    _refused_while_held(lock_file_beside(out), lambda: predict_folds.main(PREDICT + ["--data-dir", str(trained)]),
                        f"predictions {out}")
    assert tree_bytes(out) == before


def test_two_predict_folds_started_at_once_leave_the_tree_of_a_lone_run(trained):
    out = trained / "predictions" / "demo"
    lone = tree_bytes(out)
    command = [sys.executable, "predict_folds.py", *PREDICT, "--data-dir", str(trained)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    for status, stderr in results:
        # Both succeed one after the other, or one is refused while the other holds the lock: in one line.
        assert status == 0 or (status == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr and
                               f"predict_folds.py: error: predictions {out}: another process (pid " in stderr
                               ), stderr
    assert any(status == 0 for status, _ in results)
    assert tree_bytes(out) == lone
    # Nothing else beside the tree: no staging folder left behind, only the (hidden) lock file.
    assert sorted(p.name for p in out.parent.iterdir()) == [".demo.lock", "demo"]
