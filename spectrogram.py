"""Turn audio files into log-mel arrays (.npy) and pictures (.png).

    python spectrogram.py clip.wav other.flac --out-dir logmels/

Uses the repo's front end exactly as training does: decode (any WAV/FLAC/OGG,
any rate or channel count), mono 44.1 kHz, trim silence, 128-band log-mel.
A file that is missing or cannot be decoded does not stop the others; they are
named at the end in one line `spectrogram.py: error: ...`, exit status 2.
"""
import argparse
from pathlib import Path

import numpy as np

from src.audio.fast_frontend import audio_to_log_mel
from src.audio.frontend import AudioReadError
from src.cli import run
from src.plots import plot_log_mel
from src.files import atomic_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="audio files")
    parser.add_argument("--out-dir", default=".", help="where <name>.npy and <name>.png go (default: here)")
    parser.add_argument("--no-png", action="store_true", help="write only the .npy arrays")
    args = parser.parse_args(argv)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in map(Path, args.paths):
        try:
            spec = audio_to_log_mel(path)
        except AudioReadError as exc:  # its message names the file
            failed.append(str(exc))
            continue
        with atomic_path(out_dir / f"{path.stem}.npy") as tmp:
            np.save(tmp, spec)
        if not args.no_png:
            plot_log_mel(spec, out_dir / f"{path.stem}.png", title=path.name)
        print(f"{path}: log-mel {spec.shape[0]}x{spec.shape[1]} -> {out_dir / path.stem}.npy")
    if failed:
        raise AudioReadError(f"{len(failed)} of {len(args.paths)} file(s) could not be read: " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    run(main)
