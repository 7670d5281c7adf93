"""bench/tag_memory.py runs end to end (tiny recordings, a tiny model), so the benchmark cannot rot."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import make_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_tag_memory_bench_reports_each_length_of_the_modes_asked_for(tmp_path):
    """The timeline mode only (two tag.py processes, not four; --modes picks): its rows and ratio, no others."""
    make_experiment(tmp_path, "tiny")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tag_memory.py"), "--data-dir", str(tmp_path),
                           "--experiment", "tiny", "--minutes", "0.05", "0.1", "--modes", "timeline"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not any(line.startswith("clip") for line in lines), done.stdout
    rows = [line for line in lines if line.startswith("timeline") and "peak RSS" in line and "min (" in line]
    assert len(rows) == 2, done.stdout
    peaks = [float(row.split("peak RSS")[1].split("MB")[0]) for row in rows]
    assert all(peak > 50 for peak in peaks)  # a python process with torch: tens of MB at least
    assert any(line.startswith("timeline: 0.1 min / 0.05 min: length x2") for line in lines)


def test_tag_memory_bench_without_a_model_is_a_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "tag_memory.py"), "--data-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "tag_memory.py: error:" in done.stderr
