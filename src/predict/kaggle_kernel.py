"""Offline Kaggle kernel for Freesound Audio Tagging 2019: an ensemble bundle -> submission.csv.

make_kernel.py writes this program, with the src/ modules it needs embedded as source text (SOURCES)
and the bundle's file name filled in, as one script that runs without internet and without pip. From
the repository it runs as it is (SOURCES empty: src/ is imported from here):

    python -m src.predict.kaggle_kernel --test-dir data/demo/test --bundle ensemble.pt --out submission.csv

  --test-dir   $FSAT_TEST_DIR    default TEST_DIR (Kaggle's competition test folder)
  --bundle     $FSAT_BUNDLE      default the first /kaggle/input/*/BUNDLE_FILE (or /kaggle/input/*/*/...)
  --out        $FSAT_SUBMISSION  default SUBMISSION (/kaggle/working/submission.csv)

Nothing from src/ is imported before `main` has put the embedded sources first on the import path.
"""
import argparse
import glob
import importlib.abc
import importlib.util
import os
import sys
import time
import types
from pathlib import Path

# --- settings: make_kernel.py writes this block; these values run the program from the repository ---
BUNDLE_FILE = "ensemble.pt"  # the bundle's file name, looked for under /kaggle/input/
TEST_DIR = "/kaggle/input/freesound-audio-tagging-2019/test"
SUBMISSION = "/kaggle/working/submission.csv"
SOURCES = {}  # {module name: source text} of the embedded src modules; empty: import them from the repository
PACKAGES = []  # the names in SOURCES that are packages
# --- end of settings ---


class EmbeddedSources(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import `src.*` from SOURCES (before anything on sys.path)."""

    def find_spec(self, name, path=None, target=None):
        if name in SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=name in PACKAGES)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(SOURCES[module.__name__], "<kernel>/" + module.__name__.replace(".", "/") + ".py", "exec"),
             module.__dict__)


def wav_only_soundfile():
    """A stand-in for soundfile when it is missing: WAV through scipy.io.wavfile, anything else a clear error."""
    import numpy as np
    from scipy.io import wavfile

    def read(path, dtype="float32", always_2d=False, **kwargs):
        if Path(path).suffix.lower() != ".wav":
            raise RuntimeError(f"{path}: soundfile is not installed and scipy.io.wavfile reads only WAV files")
        rate, data = wavfile.read(path)
        if data.dtype.kind in "iu":
            info = np.iinfo(data.dtype)
            data = (data.astype(np.float64) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
        data = data.astype(dtype)
        if always_2d and data.ndim == 1:
            data = data[:, None]
        return data, rate

    module = types.ModuleType("soundfile")
    module.read = read
    return module


def check_audio_readers():
    try:
        import soundfile  # noqa: F401
    except Exception as exc:  # not installed, or libsndfile missing
        print(f"soundfile unavailable ({exc}): reading WAV files with scipy.io.wavfile")
        sys.modules["soundfile"] = wav_only_soundfile()
    try:
        import librosa  # noqa: F401
    except Exception as exc:
        sys.exit(f"kernel: librosa is needed for the log-mel front end (Kaggle's Python image has it): {exc}")


def find_bundle(name):
    for pattern in (f"/kaggle/input/*/{name}", f"/kaggle/input/*/*/{name}"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    sys.exit(f"kernel: no /kaggle/input/*/{name}: attach the dataset holding the bundle, or give --bundle")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-dir", default=os.environ.get("FSAT_TEST_DIR", TEST_DIR))
    parser.add_argument("--bundle", default=os.environ.get("FSAT_BUNDLE"))
    parser.add_argument("--out", default=os.environ.get("FSAT_SUBMISSION", SUBMISSION))
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda'")
    parser.add_argument("--batch-size", type=int, default=128, help="tiles per batch")
    parser.add_argument("--amp", choices=("auto", "bf16", "fp16", "none"), default="none",
                        help="first-level precision: 'none' (default) = fp32, as the 2019 kernel made its test "
                             "predictions; 'auto' = the card's on CUDA (bf16 from compute capability 8.0, fp16 "
                             "on 7.x such as a T4, fp32 on a P100), bf16 on a CPU with native bf16; 'bf16' "
                             "(never on a GPU without native bf16), 'fp16' (CUDA)")
    parser.add_argument("--group", type=int, default=64, help="clips decoded and predicted together")
    args, _ = parser.parse_known_args()  # a notebook cell's argv carries the kernel's own arguments
    return args


def test_files(test_dir):
    """(fnames in submission order, class order of sample_submission.csv or None)."""
    import pandas as pd

    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        sys.exit(f"kernel: {test_dir}: no such folder (attach the competition data, or give --test-dir)")
    sample = test_dir.parent / "sample_submission.csv"
    if sample.is_file():
        frame = pd.read_csv(sample, nrows=None)
        fnames, classes = frame["fname"].tolist(), list(frame.columns[1:])
        missing = [f for f in fnames if not (test_dir / f).is_file()]
        if missing:
            sys.exit(f"kernel: {len(missing)} file(s) of {sample} are not in {test_dir}, e.g. {missing[:5]}")
        return fnames, classes
    suffixes = (".wav", ".flac", ".ogg", ".mp3")
    return sorted(p.name for p in test_dir.iterdir() if p.suffix.lower() in suffixes), None


def main():
    args = parse_args()
    check_audio_readers()
    sys.meta_path.insert(0, EmbeddedSources())
    import numpy as np
    import pandas as pd
    import torch
    from src.audio.fast_frontend import log_mel, read_audio  # the front end of the feature cache and tag.py
    from src.predict.ensemble import load_ensemble_bundle

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    bundle = args.bundle or find_bundle(BUNDLE_FILE)
    ensemble = load_ensemble_bundle(bundle, device, batch_size=args.batch_size, amp=args.amp)
    print(ensemble.describe(), flush=True)
    fnames, sample_classes = test_files(args.test_dir)
    if not fnames:
        sys.exit(f"kernel: no audio files in {args.test_dir}")
    if sample_classes is not None and sorted(sample_classes) != sorted(ensemble.classes):
        sys.exit("kernel: the bundle's classes differ from sample_submission.csv's")
    classes = sample_classes or ensemble.classes

    start, probs = time.perf_counter(), []
    for first in range(0, len(fnames), args.group):
        group = fnames[first:first + args.group]
        specs = [log_mel(read_audio(Path(args.test_dir) / f, ensemble.audio_config), ensemble.audio_config)
                 for f in group]
        probs.append(ensemble.predict(specs))
        done = first + len(group)
        print(f"{done}/{len(fnames)} clips, {done / (time.perf_counter() - start):.1f} clips/s "
              f"(prediction alone: {ensemble.throughput()})", flush=True)
    frame = pd.DataFrame(np.concatenate(probs), columns=ensemble.classes)[classes]
    if not np.isfinite(frame.to_numpy()).all():
        sys.exit("kernel: refusing to write NaN or infinity")
    frame.insert(0, "fname", fnames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name("." + out.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.7g")
    os.replace(tmp, out)  # never a half-written submission
    print(f"{len(fnames)} clips x {len(classes)} classes -> {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
