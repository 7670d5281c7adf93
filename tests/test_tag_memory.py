"""bench/tag_memory.py runs end to end (tiny recordings, a tiny model), so the benchmark cannot rot."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import make_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_tag_memory_bench_reports_each_length_and_mode(tmp_path):
    make_experiment(tmp_path, "tiny")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tag_memory.py"), "--data-dir", str(tmp_path),
                           "--experiment", "tiny", "--minutes", "0.05", "0.1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for mode in ("clip", "timeline"):
        rows = [line for line in lines if line.startswith(mode) and "peak RSS" in line and "min (" in line]
        assert len(rows) == 2, done.stdout
        peaks = [float(row.split("peak RSS")[1].split("MB")[0]) for row in rows]
        assert all(peak > 50 for peak in peaks)  # a python process with torch: tens of MB at least
        assert any(line.startswith(f"{mode}: 0.1 min / 0.05 min: length x2") for line in lines)


def test_tag_memory_bench_without_a_model_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tag_memory.py"), "--data-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "tag_memory.py: error:" in done.stderr
