"""The error contract of the scripts: a user error is one line `script.py: error: ...` and exit 2, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from src.cli import run

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=180)


def assert_one_line_error(result, script, *fragments):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(run_script("make_folds.py", "--data-dir", missing), "make_folds.py",
                          str(missing / "train_curated.csv"))


def test_bad_csvs(tmp_path):
    (tmp_path / "train_curated.csv").write_text("fname,labels\n../test/x.wav,Bark\n")
    assert_one_line_error(run_script("make_folds.py", "--data-dir", tmp_path), "make_folds.py",
                          "train_curated.csv", "'../test/x.wav'", "line 2")
    labels = tmp_path / "labels.csv"
    labels.write_text("fname,labels\na.wav,Bark\nb.wav,Hum\n")
    submission = tmp_path / "sub.csv"
    submission.write_text("fname,Bark,Hum,Meow\na.wav,0.9,0.1,0.5\nb.wav,0.2,0.8,0.5\n")
    assert_one_line_error(run_script("score.py", submission, labels), "score.py", "extra column(s) ['Meow']")
    submission.write_bytes("fname,Bark,Hum\na.wav,0.9,0.1\nb\xe9.wav,0.2,0.8\n".encode("latin-1"))
    assert_one_line_error(run_script("score.py", submission, labels), "score.py", "sub.csv: not UTF-8")


def test_missing_model(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert_one_line_error(run_script("tag.py", broken, "--model", tmp_path / "absent.pt"), "tag.py", "absent.pt")


def test_spectrogram_missing_and_corrupt_files(tmp_path):
    """Unreadable inputs are a user error (exit 2, one line naming each); the readable file is still done."""
    import numpy as np
    import soundfile as sf

    good, missing, corrupt = tmp_path / "good.wav", tmp_path / "absent.wav", tmp_path / "corrupt.wav"
    sf.write(good, 0.3 * np.sin(np.arange(44100) / 10.0), 44100, subtype="PCM_16")
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)))
    out = tmp_path / "out"
    assert_one_line_error(run_script("spectrogram.py", missing, "--out-dir", out, "--no-png"), "spectrogram.py",
                          "1 of 1 file(s)", str(missing))
    result = run_script("spectrogram.py", good, corrupt, missing, "--out-dir", out, "--no-png")
    assert_one_line_error(result, "spectrogram.py", "2 of 3 file(s)", f"{corrupt}: cannot decode audio",
                          f"{missing}: no such file")
    assert "good.wav: log-mel 128x" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["good.npy"]


def test_run_keeps_tracebacks_of_bugs_and_passes_statuses(capsys):
    def buggy():
        return [][1]

    with pytest.raises(IndexError):
        run(buggy)
    for returned, status in ((None, 0), (3, 3), (0.5, 0)):
        with pytest.raises(SystemExit) as info:
            run(lambda: returned)
        assert info.value.code == status

    def old_style():
        raise SystemExit("stacking_train.py: error: two\n  lines")

    with pytest.raises(SystemExit) as info:
        run(old_style)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and err.strip().endswith("error: two lines")


SCRIPTS = sorted(p.name for p in ROOT.glob("*.py") if "run(main" in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_ends_in_the_shared_runner(script):
    """A script-level function named `run` would shadow src.cli.run and crash every invocation."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{script[:-3]}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # scripts only act under `if __name__ == "__main__"`
    assert module.run is run, f"{script}: `run` is not src.cli.run"


def test_blend_reports_a_missing_experiment(tmp_path):
    (tmp_path / "sample_submission.csv").write_text("fname,Bark,Hum\na.wav,0,0\n")
    assert_one_line_error(run_script("blend.py", "--experiments", "nothing_here", "--data-dir", tmp_path),
                          "blend.py", "nothing_here")


# Programs kept in src/: the offline Kaggle kernel runs on its own (without src.cli), so it exits itself.
STANDALONE_PROGRAMS = ("cli.py", "kaggle_kernel.py")


def test_no_exit_is_raised_inside_src():
    """Library code raises src.errors.UserError subclasses (or plain exceptions for bugs); only src.cli.run,
    the scripts' runner, turns them into an exit status (and the kernel program, which runs alone)."""
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in sorted((ROOT / "src").rglob("*.py")) if path.name not in STANDALONE_PROGRAMS
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if "raise SystemExit" in line or "sys.exit(" in line]
    assert offenders == []
