"""Build a second real-recordings dev set from other Debian packages than bench/realdev uses.

    python bench/realdev2/build.py                     # -> data/realdev2/
    python bench/realdev2/build.py --out DIR --cache DIR --overwrite

Same recipe and layout as bench/realdev/build.py (whose functions it imports:
package fetching, clip cutting, the per-source split, the CSVs and
DATASET.json), on recordings the first set never sees, so that the `small`
experiment's settings can be checked on a set they were not chosen on. Needs
`apt-get` (run `apt-get update` once first); the pinned packages are fetched
with `apt-get download` into the cache folder and unpacked there with `dpkg -x`.
See bench/realdev2/README.md for the composition.
"""
import argparse
import hashlib
import json
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.realdev import build as realdev  # noqa: E402
from bench.realdev.build import Recording, hydrogen_recordings, median_f0, sex_of_f0  # noqa: E402
from src.cli import run  # noqa: E402
from src.errors import ResultsExist  # noqa: E402

# Pinned versions: a different version may ship different files.
PACKAGES = {
    "hydrogen-data": "1.2.0~beta1+dfsg-1",
    "hydrogen-drumkits-effects": "2017.09.19~dfsg-1",
    "ktuberling-data": "4:22.12.3-1",
    "gcompris-qt-data": "3.1-2",
}
# Independence from the first set: none of its packages, none of its reserved ones.
assert not set(PACKAGES) & set(realdev.PACKAGES)
assert not any(p.startswith(realdev.RESERVED) for p in PACKAGES)

# Hydrogen's own acoustic kit (the TR808 emulation kit is synthesised: left out). Its Kick is left out:
# the five velocity layers are one sample at five gains, so Bass_drum would have a single source.
GM_ROCK_KIT = [(r"\bhat\b", "Hi-hat")]
# belofilms' acoustic-guitar chord strums, 4 takes of each chord plain, slid up and slid down.
STRUM_KIT = [(r".", "Strum")]
# GCompris resources (inside Qt .rcc files) whose names say what they are: (rcc file, resource name) -> class.
GCOMPRIS_SOUNDS = {
    ("explore_farm_animals", "animals/dog.ogg"): "Bark",
    ("memory-sound", "LRBark_1_LA_cut.ogg"): "Bark",
    ("memory-sound", "LRBark_3_LA_cut.ogg"): "Bark",
    ("melody", "xylofon_son1.wav"): "Marimba_and_xylophone",
    ("melody", "xylofon_son2.wav"): "Marimba_and_xylophone",
    ("melody", "xylofon_son3.wav"): "Marimba_and_xylophone",
    ("melody", "xylofon_son4.wav"): "Marimba_and_xylophone",
    ("instruments", "guitar.ogg"): "Acoustic_guitar",
    ("memory-sound", "guitar_melody.ogg"): "Acoustic_guitar",
    ("memory-sound", "guitar_son1.ogg"): "Acoustic_guitar",
    ("memory-sound", "guitar_son2.ogg"): "Acoustic_guitar",
    ("memory-sound", "guitar_son3.ogg"): "Acoustic_guitar",
    ("memory-sound", "guitar_son4.ogg"): "Acoustic_guitar",
}
# KTuberling's spoken words: a voice is one language's theme (the themes were recorded at different
# times, by other people in some languages: Catalan's base words are a man's, its Egypt theme a woman's);
# its sex is read from the median f0 of its first VOICE_FILES files, as the first set does.
VOICE_FILES = 6
# A median at pyin's floor (60 Hz) is no voice's pitch (the English base words: a DC offset, and ~61 Hz
# even after a 90 Hz high-pass, an octave error or creak); such voices are left out rather than called male.
PITCH_FLOOR = 70.0


def read_rcc(path: Path) -> dict:
    """{resource path: bytes} of a Qt resource file (.rcc, format versions 1-3; zlib or stored)."""
    data = path.read_bytes()
    if data[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file")
    version, tree, payload, names = struct.unpack_from(">IIII", data, 4)
    node_size = 22 if version >= 2 else 14

    def name_at(offset):
        length, = struct.unpack_from(">H", data, names + offset)
        return data[names + offset + 6: names + offset + 6 + 2 * length].decode("utf-16-be")

    found = {}

    def walk(node, prefix):
        at = tree + node * node_size
        name_offset, flags = struct.unpack_from(">IH", data, at)
        name = name_at(name_offset) if node else ""
        if flags & 2:   # directory: its children are consecutive nodes
            count, first = struct.unpack_from(">II", data, at + 6)
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if node else "")
            return
        offset, = struct.unpack_from(">I", data, at + 10)
        length, = struct.unpack_from(">I", data, payload + offset)
        blob = data[payload + offset + 4: payload + offset + 4 + length]
        if flags & 4:
            raise ValueError(f"{path}: {prefix}{name} is zstd-compressed")
        found[prefix + name] = zlib.decompress(blob[4:]) if flags & 1 else blob   # qCompress: size, then zlib

    walk(0, "")
    return found


def gcompris_recordings(root: Path, extracted: Path) -> list:
    """The named GCompris sounds, written out of their .rcc files into `extracted` (once)."""
    found = []
    for rcc in sorted({r for r, _ in GCOMPRIS_SOUNDS}):
        resources = None
        for (r, name), label in sorted(GCOMPRIS_SOUNDS.items()):
            if r != rcc:
                continue
            path = extracted / rcc / name
            if not path.is_file():
                resources = resources or read_rcc(root / f"usr/share/gcompris-qt/rcc/{rcc}.rcc")
                blob = next(b for key, b in resources.items() if key.endswith(f"/resource/{name}"))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(blob)
                tmp.rename(path)
            found.append(Recording(label, f"gcompris/{rcc}/{name}", f"gcompris/{rcc}/{name}", path))
    return found


def strum_recordings(root: Path) -> list:
    """belofilms' strums; a source is one chord with its slides and takes: the file stem without
    _UP/_DOWN/_NN (spelt Down once, and one file ends _02wav.flac)."""
    found = hydrogen_recordings(root, ["belofilms_GuitarStrums"], STRUM_KIT)
    for r in found:
        r.source = "hydrogen:belofilms_GuitarStrums/" + re.sub(r"(_(up|down))?_\d+(wav)?$", "", r.path.stem, flags=re.I)
    return found


def ktuberling_voices(root: Path) -> tuple:
    """KTuberling's spoken words, labelled by voice (language + theme); a source is one word file.
    Byte-identical files (shared between language variants) are kept once."""
    sounds, voices = root / "usr/share/ktuberling/sounds", {}
    for lang in sorted(p for p in sounds.iterdir() if p.is_dir()):
        for f in sorted(lang.glob("*.ogg")):
            theme = f.stem.split("_")[0] if "_" in f.stem else "base"
            voices.setdefault(f"ktuberling/{lang.name}/{theme}", []).append(f)
    found, decided, seen = [], {}, set()
    for voice, files in voices.items():
        f0 = median_f0(files[:VOICE_FILES])
        label = sex_of_f0(f0) if f0 >= PITCH_FLOOR else None
        decided[voice] = label
        for f in files if label else []:
            digest = hashlib.sha1(f.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            name = f"ktuberling/{f.parent.name}/{f.name}"
            found.append(Recording(label, name, name, f))
    return found, decided


def realdev2_recordings(roots: dict) -> tuple:
    """This set's recordings and the label decided for each voice (what bench/realdev's build() takes)."""
    recordings = (hydrogen_recordings(roots["hydrogen-data"], ["GMRockKit"], GM_ROCK_KIT)
                  + strum_recordings(roots["hydrogen-drumkits-effects"])
                  + gcompris_recordings(roots["gcompris-qt-data"], roots["gcompris-qt-data"].parent / "gcompris-rcc"))
    voices, voice_labels = ktuberling_voices(roots["ktuberling-data"])
    return recordings + voices, voice_labels


def copies_across_split(out: Path, seconds: float = 0.3, threshold: float = 0.99) -> list:
    """(test clip, training clip) pairs whose first `seconds` are the same waveform up to a gain (normalised
    dot product above `threshold`): what a source split by file names misses when a package ships one
    sample at several gains as velocity layers."""
    def onset(path):
        audio = sf.read(path)[0][:int(seconds * realdev.SAMPLE_RATE)]
        return audio / (np.linalg.norm(audio) or 1.0)

    train = [(p, onset(p)) for split in ("train_curated", "train_noisy") for p in sorted((out / split).glob("*.wav"))]
    pairs = []
    for path in sorted((out / "test").glob("*.wav")):
        clip = onset(path)
        for other, start in train:
            n = min(len(clip), len(start))
            if float(np.dot(clip[:n], start[:n])) > threshold:
                pairs.append((path.name, f"{other.parent.name}/{other.name}"))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "realdev2", help="the dev set folder to write")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "realdev2_cache",
                        help="downloaded .deb files and their unpacked trees")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        raise ResultsExist(f"{args.out} exists: pass --overwrite to rebuild it (its experiments/ would be lost)")
    meta = realdev.build(args.out, args.cache, PACKAGES, realdev2_recordings, "bench/realdev2/build.py")
    copies = copies_across_split(args.out)
    if copies:   # a fault of the recipe above, not of the user's input: keep the traceback
        raise RuntimeError(f"{args.out}: test clips that are copies of training clips: {copies}")
    print(json.dumps({k: meta[k] for k in ("total_clips", "noisy_wrong_labels", "voice_labels")}, indent=1))
    for name, counts in meta["clips"].items():
        print(name, counts)


if __name__ == "__main__":
    run(main)
