"""Write an offline Kaggle kernel: one self-contained script that turns the competition's test/ folder
into submission.csv with an ensemble bundle (export.py --ensemble).

    python export.py --ensemble ensemble_2019 --out ensemble.pt
    python make_kernel.py --bundle ensemble.pt --out kernel.py

The kernel is src/predict/kaggle_kernel.py (a module of the repo, tested like the
rest) with its settings block written: it embeds the parts of src/ it needs as source text (the audio front
end, the networks, the Predictor and src/predict/ensemble.py, found by
following their `src.` imports) and imports them from memory: no pip install,
no internet, no copy of this repo. It needs torch, numpy, pandas and librosa
(all in Kaggle's Python image); audio is read with soundfile, or, where that
is missing, WAV files with scipy.io.wavfile (any other format then stops with
a message naming the file).

Paths default to Kaggle's layout and can be overridden on its command line or
by environment variables (for a local run):

    --test-dir    $FSAT_TEST_DIR    /kaggle/input/freesound-audio-tagging-2019/test
    --bundle      $FSAT_BUNDLE      /kaggle/input/*/<bundle file name> (the first found)
    --out         $FSAT_SUBMISSION  /kaggle/working/submission.csv

Rows follow sample_submission.csv beside the test folder when there is one
(else the sorted audio files of the folder); columns are fname and the classes.
README, "Check the reproduction on Kaggle's private leaderboard", gives the steps.
"""
import argparse
import ast
import hashlib
from pathlib import Path

from src.cli import run
from src.errors import BadSetting
from src.predict.ensemble import check_bundle_models, read_ensemble_bundle
from src.files import atomic_path

ROOT = Path(__file__).resolve().parent

# The kernel's entry points; everything they import from src/ comes along.
ROOT_MODULES = ("src.predict.ensemble", "src.audio.fast_frontend")


def module_path(name: str) -> Path:
    """src/a/b.py for 'src.a.b', or src/a/b/__init__.py for a package."""
    base = ROOT.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def module_level(statements):
    """The statements run on import: the module body and its if/try blocks, not function bodies (whose
    imports, like the Predictor module's argus-only checkpoint loading, the kernel never runs)."""
    for node in statements:
        yield node
        for block in ("body", "orelse", "finalbody"):
            if isinstance(node, (ast.If, ast.Try)) and getattr(node, block, None):
                yield from module_level(getattr(node, block))
        for handler in getattr(node, "handlers", []) if isinstance(node, ast.Try) else []:
            yield from module_level(handler.body)


def src_imports(name: str) -> set:
    """The `src.` modules a module imports on import (absolute or relative), and the packages above them."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in module_level(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            # `from src.x import y` where y is itself a module
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if module_path(f"{base}.{alias.name}").is_file())
    modules = {m for m in found if m == "src" or m.startswith("src.")}
    return {".".join(m.split(".")[:i]) for m in modules for i in range(1, m.count(".") + 2)}


def module_closure(roots=ROOT_MODULES) -> dict:
    """{module name: source text} of the roots and every src module they import, transitively."""
    todo, sources = list(roots), {}
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        path = module_path(name)
        if not path.is_file():
            raise BadSetting(f"{name}: no module at {path}")
        sources[name] = path.read_text()
        todo.extend(src_imports(name) - set(sources))
    return dict(sorted(sources.items()))


KERNEL_PROGRAM = ROOT / "src" / "predict" / "kaggle_kernel.py"  # the kernel's program, a module of the repo
SETTINGS_START = "# --- settings: make_kernel.py writes this block"
SETTINGS_END = "# --- end of settings ---"


def kernel_settings(bundle_file, test_dir, out, sources: dict) -> str:
    """The settings block of a written kernel: the bundle's file name, default paths and embedded sources."""
    packages = sorted(n for n in sources if module_path(n).name == "__init__.py")
    body = "{\n" + "".join(f"    {name!r}: {text!r},\n" for name, text in sources.items()) + "}"
    return (f"{SETTINGS_START} (generated) ---\nBUNDLE_FILE = {bundle_file!r}\nTEST_DIR = {test_dir!r}\n"
            f"SUBMISSION = {out!r}\nSOURCES = {body}\nPACKAGES = {packages!r}\n{SETTINGS_END}\n")


def make_kernel(bundle_path, test_dir="/kaggle/input/freesound-audio-tagging-2019/test",
                out="/kaggle/working/submission.csv") -> str:
    """The kernel's source text for the ensemble bundle at `bundle_path`: src/predict/kaggle_kernel.py with
    its settings block written (a header names the bundle and its sha256)."""
    bundle_path = Path(bundle_path)
    bundle = read_ensemble_bundle(bundle_path)  # refuses anything but an ensemble bundle
    # Build its models once here (on the CPU, seconds): a damaged bundle is refused now, naming the
    # file, rather than shipped in a kernel that would only fail on Kaggle.
    check_bundle_models(bundle, bundle_path)
    sha256 = hashlib.sha256(bundle_path.read_bytes()).hexdigest()
    program = KERNEL_PROGRAM.read_text()
    start, end = program.index(SETTINGS_START), program.index(SETTINGS_END) + len(SETTINGS_END) + 1
    settings = kernel_settings(bundle_path.name, test_dir, out, module_closure())
    header = (f"#!/usr/bin/env python\n# Offline Kaggle kernel, ensemble {bundle['name']!r}: generated by "
              f"make_kernel.py from {bundle_path.name} (sha256 {sha256}); do not edit (regenerate it).\n")
    return header + program[:start] + settings + program[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="ensemble bundle written by export.py --ensemble")
    parser.add_argument("--out", default="kernel.py", help="kernel script to write (default kernel.py)")
    args = parser.parse_args(argv)
    text = make_kernel(args.bundle)
    with atomic_path(args.out, suffix=".py") as tmp:
        Path(tmp).write_text(text)
    print(f"kernel -> {args.out} ({len(text) / 1e3:.0f} kB, {len(module_closure())} embedded modules); "
          f"it looks for {Path(args.bundle).name} under /kaggle/input/")
    return 0


if __name__ == "__main__":
    run(main)
