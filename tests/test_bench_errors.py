"""bench/ scripts follow the one error contract (issue 24, class 7): each ends with src.cli.run(main), so a
user error (missing data dir or file, bad option or value) is one line `script.py: error: ...` and exit
status 2, found before any heavy work starts; no script raises SystemExit("...") itself."""
import ast
import importlib.util
from pathlib import Path

import pytest

from src.cli import run

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "bench").rglob("*.py") if "__main__" in p.read_text())


def load(script: str):
    """Import bench/<script> by path, under a name of its own (nothing runs: every script guards main)."""
    path = ROOT / "bench" / script
    spec = importlib.util.spec_from_file_location("bench_" + path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ends_with_run_main(tree: ast.Module) -> bool:
    """The module's last statement is `if __name__ == "__main__":` whose last statement calls run(main)
    (or cli.run(main))."""
    last = tree.body[-1]
    if not (isinstance(last, ast.If) and "__main__" in ast.unparse(last.test)):
        return False
    call = last.body[-1].value if isinstance(last.body[-1], ast.Expr) else None
    return (isinstance(call, ast.Call) and ast.unparse(call.func) in ("run", "cli.run")
            and [ast.unparse(a) for a in call.args] == ["main"])


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_bench_script_ends_with_the_error_contract(path):
    source = path.read_text()
    tree = ast.parse(source)
    assert ends_with_run_main(tree), f"{path}: must end with `run(main)` from src.cli"
    assert "from src.cli import run" in source or "from src import cli" in source, path
    exits = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Raise) and node.exc is not None
             and "SystemExit" in ast.unparse(node.exc)]
    assert not exits, f"{path}: raise SystemExit at line(s) {exits}; raise a src.errors type instead"


def test_the_scripts_were_found():
    names = {str(p.relative_to(ROOT / "bench")) for p in SCRIPTS}
    assert {"frontend.py", "small_data.py", "scale.py", "gpu_check.py", "realdev/build.py"} <= names, names


def one_line_error(capsys, module, argv, *fragments):
    with pytest.raises(SystemExit) as info:
        run(module.main, argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code == 2, err
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in err, err
    for fragment in fragments:
        assert str(fragment) in lines[0], lines[0]


def test_missing_or_bad_data_dirs_are_one_line_errors(tmp_path, capsys):
    empty, missing, a_file = tmp_path / "empty", tmp_path / "missing", tmp_path / "file"
    empty.mkdir()
    a_file.write_text("not a folder\n")
    one_line_error(capsys, load("frontend.py"), ["--data-dir", str(empty)], empty, "no train_curated.csv")
    one_line_error(capsys, load("small_data.py"), ["--data-dir", str(missing)], missing, "no such data folder")
    one_line_error(capsys, load("inference.py"), ["--compare-bf16", "--data-dir", str(missing)], missing,
                   "no trained experiment")
    one_line_error(capsys, load("tag_memory.py"), ["--data-dir", str(missing)], missing, "no trained experiment")
    one_line_error(capsys, load("scale.py"), ["--work-dir", str(a_file)], a_file, "not a folder")
    one_line_error(capsys, load("realdev/build.py"), ["--out", str(empty)], empty, "--overwrite")
    # --budget 0: were the check gone, no stage would start either
    gpu_check = load("gpu_check.py")
    one_line_error(capsys, gpu_check, ["--out", str(tmp_path / "out"), "--stages", "nonsense", "--budget", "0"],
                   "unknown stage(s) ['nonsense']")
    one_line_error(capsys, gpu_check, ["--out", str(a_file), "--budget", "0"], a_file, "not a folder")


def test_a_damaged_csv_in_the_data_dir_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "train_curated.csv").write_bytes(b"fname,labels\na\xe9.wav,Bark\n")
    one_line_error(capsys, load("frontend.py"), ["--data-dir", str(tmp_path)], "train_curated.csv", "not UTF-8")


@pytest.mark.parametrize("script", ["ensemble_cost.py", "kernel_time.py", "train_throughput.py", "inference.py"])
def test_a_bad_device_is_a_one_line_error_before_any_work(script, capsys):
    one_line_error(capsys, load(script), ["--device", "nonsense"], "--device 'nonsense'")


def test_impossible_sizes_are_one_line_errors(capsys):
    one_line_error(capsys, load("ensemble_cost.py"), ["--clips", "0"], "must be positive")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_an_unknown_option_is_refused_with_status_2(path, capsys):
    module = load(str(path.relative_to(ROOT / "bench")))
    with pytest.raises(SystemExit) as info:
        run(module.main, ["--no-such-option"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and ": error: " in err.splitlines()[-1] and "Traceback" not in err, err
