"""Peak memory of tag.py on long recordings: a short file against a long one, in the same run.

    python bench/tag_memory.py --data-dir data/demo --experiment demo            # after `make demo`
    python bench/tag_memory.py --data-dir data/demo --experiment demo --minutes 1 60

Writes generated recordings (noise with tone bursts, 44.1 kHz mono 16-bit, written in 5-second
blocks so the benchmark itself stays small) of each length into a temporary folder, then runs each
through `tag.py` in its own process, in both modes:

  clip      tag.py FILE             files over a minute are read in chunks (src/tagging/chunked.py)
  timeline  tag.py --timeline FILE  streamed windows, segments and the overview picture

and reports every process's peak resident memory (the kernel's ru_maxrss of that child: torch, the
models and everything else included) and its wall time. The shortest file is the reference: with
streaming, the longest file's peak should stay within a few percent of it while its length grows
60-fold; the ratio is printed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from src.cli import run  # noqa: E402
from src.errors import InputFileNotFound, UserError  # noqa: E402

SR = 44100


def write_recording(path, minutes, seed=0):
    """Noise at -40 dBFS with a 1-second tone burst every 5 seconds, streamed to disk in 5-second blocks."""
    rng = np.random.default_rng(seed)
    block = 5 * SR
    t = np.arange(SR) / SR
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as handle:
        for _ in range(int(round(minutes * 60 / 5))):
            audio = rng.normal(0, 0.01, block)
            audio[:SR] += 0.3 * np.sin(2 * np.pi * rng.uniform(200, 4000) * t)
            handle.write(audio.astype(np.float32))


def run_tag(args_list):
    """(peak RSS in MB, seconds, exit status) of one `python tag.py ...` process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "tag.py"), *args_list], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        last = error.strip().splitlines()[-1] if error.strip() else f"exit status {process.returncode}"
        raise UserError(f"tag.py {' '.join(args_list)} failed: {last}")
    return usage.ru_maxrss / 1024, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/demo", help="data root holding experiments/ (default data/demo)")
    parser.add_argument("--experiment", default="demo", help="trained experiment to tag with (default demo)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 60],
                        help="recording lengths in minutes, the first one the reference (default 1 60)")
    parser.add_argument("--modes", nargs="+", choices=("clip", "timeline"), default=["clip", "timeline"])
    args = parser.parse_args(argv)
    if not (Path(args.data_dir) / "experiments" / args.experiment / "config.json").is_file():
        raise InputFileNotFound(f"{args.data_dir}/experiments/{args.experiment}: no trained experiment (run "
                                f"`make demo` first, or give --data-dir and --experiment)")
    model = ["--experiment", args.experiment, "--data-dir", args.data_dir, "--device", "cpu", "--no-progress"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tag_memory-") as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes:g}min.wav"
            write_recording(path, minutes)
            for mode in args.modes:
                extra = ["--timeline", "--out-dir", str(Path(tmp) / "timeline")] if mode == "timeline" else []
                peak, seconds = run_tag([*model, *extra, str(path)])
                rows.append((mode, minutes, path.stat().st_size / 1e6, peak, seconds))
                print(f"{mode:8s} {minutes:6g} min ({rows[-1][2]:7.1f} MB of audio): peak RSS {peak:7.0f} MB, "
                      f"{seconds:6.1f} s", flush=True)
    for mode in args.modes:
        mine = [r for r in rows if r[0] == mode]
        if len(mine) > 1:
            print(f"{mode}: {mine[-1][1]:g} min / {mine[0][1]:g} min: length x{mine[-1][1] / mine[0][1]:g}, "
                  f"peak RSS x{mine[-1][3] / mine[0][3]:.3f}")


if __name__ == "__main__":
    run(main)
