"""Build a real-recordings dev set in Kaggle's layout from recordings shipped in Debian packages.

    python bench/realdev/build.py                      # -> data/realdev/
    python bench/realdev/build.py --out DIR --cache DIR

Needs `apt-get` (run `apt-get update` once first): the pinned package versions
below are fetched with `apt-get download` into the cache folder and unpacked
there with `dpkg -x`; nothing is installed on the system. Every clip is a real
recording (drum-kit and hand-percussion samples, recorded instrument notes,
volunteers' spoken letters and syllables), labelled with the FSD 2019 class that fits; no
text-to-speech, no synthesised sound. See bench/realdev/README.md for the
composition.

Splits are made per *source* (a drum of a kit with all its velocity layers, one
instrument note of a GUS patch, one voice file): a source goes whole to the
test set or to the training side, so test clips never come from a file a
training clip came from. The train and test CSVs name every clip's source
(column `source`), so `make_folds.py --groups source` keeps a source in one fold;
sources.csv also names the recording (sample file) each clip was cut from. Deterministic: sorted file lists, seeded choices,
pinned package versions; the same build gives byte-identical WAV files.
"""
import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from src.audio.frontend import decode_audio  # noqa: E402

SAMPLE_RATE = 44100
MIN_SECONDS, MAX_SECONDS, PIECE_SECONDS, MAX_PIECES = 0.3, 7.0, 5.0, 3
SEED = 2019
TEST_SHARE = 0.25           # share of each class's sources that go to the test set
NOISY_SHARE = 0.3           # share of the training-side clips that go to the noisy set
NOISY_WRONG_SHARE = 0.3     # share of the noisy clips whose label is replaced by another class
CAPS = {"train_curated": 40, "train_noisy": 12, "test": 12}   # clips per class

# Pinned versions: a different version may ship different files.
PACKAGES = {
    "hydrogen-drumkits": "2017.09.19~dfsg-1",
    "freepats": "20060219-4",
    "klettres-data": "4:22.12.3-1",
}
# Kept for an independent check of the system; never used here.
RESERVED = ("fluid-soundfont-gm", "timgm6mb-soundfont", "avldrums.lv2-soundfont", "asterisk-core-sounds-",
            "minetest-data", "bucklespring-data", "tuxpaint-stamps-default", "openarena-data")

# The 80 classes of Freesound Audio Tagging 2019 (sample_submission.csv columns).
FSD2019_CLASSES = [
    "Accelerating_and_revving_and_vroom", "Accordion", "Acoustic_guitar", "Applause", "Bark", "Bass_drum",
    "Bass_guitar", "Bathtub_(filling_or_washing)", "Bicycle_bell", "Burping_and_eructation", "Bus", "Buzz",
    "Car_passing_by", "Cheering", "Chewing_and_mastication", "Child_speech_and_kid_speaking", "Chink_and_clink",
    "Chirp_and_tweet", "Church_bell", "Clapping", "Computer_keyboard", "Crackle", "Cricket", "Crowd",
    "Cupboard_open_or_close", "Cutlery_and_silverware", "Dishes_and_pots_and_pans", "Drawer_open_or_close", "Drip",
    "Electric_guitar", "Fart", "Female_singing", "Female_speech_and_woman_speaking", "Fill_(with_liquid)",
    "Finger_snapping", "Frying_(food)", "Gasp", "Glockenspiel", "Gong", "Gurgling", "Harmonica", "Hi-hat", "Hiss",
    "Keys_jangling", "Knock", "Male_singing", "Male_speech_and_man_speaking", "Marimba_and_xylophone",
    "Mechanical_fan", "Meow", "Microwave_oven", "Motorcycle", "Printer", "Purr", "Race_car_and_auto_racing",
    "Raindrop", "Run", "Scissors", "Screaming", "Shatter", "Sigh", "Sink_(filling_or_washing)", "Skateboard", "Slam",
    "Sneeze", "Squeak", "Stream", "Strum", "Tap", "Tick-tock", "Toilet_flush", "Traffic_noise_and_roadway_noise",
    "Trickle_and_dribble", "Walk_and_footsteps", "Water_tap_and_faucet", "Waves_and_surf", "Whispering", "Writing",
    "Yell", "Zipper_(clothing)",
]

# Hydrogen kits of recorded acoustic drums and hand percussion (the electronic kits are left out).
ACOUSTIC_KITS = ["BJA_Pacific", "ColomboAcousticDrumkit", "ForzeeStereo", "Gimme A Hand 1.0", "Millo-Drums_v.1",
                 "Millo_MultiLayered2", "Millo_MultiLayered3", "The Black Pearl 1.0"]
KIT_INSTRUMENTS = [  # (pattern on the instrument name, class); first match wins
    (r"kick|bass ?drum", "Bass_drum"),
    (r"hi.?hat|\bhh\b|\bhat\b", "Hi-hat"),
    (r"hand ?clap", "Clapping"),
    (r"finger ?snap", "Finger_snapping"),
    (r"waterglass", "Chink_and_clink"),
]
# Recorded-instrument GUS patches of freepats (the synth patches are left out).
PATCHES = {
    "009_Glockenspiel": "Glockenspiel", "013_Xylophone": "Marimba_and_xylophone",
    "021_Accordion": "Accordion", "023_Tango_Accordion": "Accordion",
    "024_Nylon_Guitar": "Acoustic_guitar", "025_Steel_Guitar": "Acoustic_guitar",
    "026_Jazz_Guitar": "Electric_guitar", "027_Clean_Electric_Guitar": "Electric_guitar",
    "028_Muted_Electric_Guitar": "Electric_guitar", "029_Overdriven_Guitar": "Electric_guitar",
    "030_Distortion_Guitar": "Electric_guitar",
    "032_Acoustic_Bass": "Bass_guitar", "033_Finger_Bass": "Bass_guitar", "034_Pick_Bass": "Bass_guitar",
    "035_Fretless_Bass": "Bass_guitar", "036_Slap_Bass_1": "Bass_guitar", "037_Slap_Bass_2": "Bass_guitar",
}
# A voice's sex from its median fundamental frequency (Hz): below MALE_F0 male, FEMALE_F0 range female,
# anything between or above (children, pitched-up voices) is left out.
MALE_F0, FEMALE_F0 = 160.0, (175.0, 255.0)


@dataclass
class Recording:
    label: str
    source: str      # split unit: every clip of one source lands in the same split
    name: str        # unique name of this recording (package-relative path[#sample])
    path: Path
    pat_sample: int = -1


def fetch_packages(cache: Path) -> dict:
    """apt-get download + dpkg -x each pinned package into cache/root/PACKAGE; returns their roots."""
    debs, roots = cache / "debs", {}
    debs.mkdir(parents=True, exist_ok=True)
    for package, version in PACKAGES.items():
        assert not package.startswith(RESERVED), package
        root = cache / "root" / package
        if not (root / ".unpacked").is_file():
            found = sorted(debs.glob(f"{package}_*.deb"))
            if not found:
                subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs, check=True)
                found = sorted(debs.glob(f"{package}_*.deb"))
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            subprocess.run(["dpkg", "-x", str(found[-1]), str(root)], check=True)
            (root / ".unpacked").write_text(found[-1].name + "\n")
        roots[package] = root
    return roots


def hydrogen_recordings(root: Path) -> list:
    kits, found = root / "usr/share/hydrogen/data/drumkits", []
    for kit in ACOUSTIC_KITS:
        # newer kits put their tags in a namespace: match any
        for instrument in ET.parse(kits / kit / "drumkit.xml").getroot().findall(".//{*}instrument"):
            name = (instrument.findtext("{*}name") or "").strip()
            label = next((c for pattern, c in KIT_INSTRUMENTS if re.search(pattern, name, re.I)), None)
            if label is None or name.lower().startswith(("tom", "snare")):
                continue
            files = sorted({f.text.strip() for f in instrument.findall(".//{*}filename") if f.text})
            for filename in files:
                found.append(Recording(label, f"hydrogen:{kit}/{name}", f"hydrogen/{kit}/{filename}",
                                       kits / kit / filename))
    # A class with fewer than 3 drums (finger snaps: one kit) splits by sample file: each layer is its own take.
    for label in {r.label for r in found}:
        if len({r.source for r in found if r.label == label}) < 3:
            for r in found:
                if r.label == label:
                    r.source = r.name
    return found


def read_pat_samples(path: Path) -> list:
    """(audio float32, sample_rate) of every sample of a Gravis Ultrasound patch (.pat)."""
    data = path.read_bytes()
    if not data.startswith(b"GF1PATCH110"):
        raise ValueError(f"{path}: not a GF1PATCH110 file")
    count, offset, samples = data[198], 239, []
    for _ in range(count):
        length, = struct.unpack_from("<I", data, offset + 8)
        rate, = struct.unpack_from("<H", data, offset + 20)
        modes = data[offset + 55]
        raw = data[offset + 96: offset + 96 + length]
        offset += 96 + length
        if modes & 1:   # 16 bit
            audio = np.frombuffer(raw, "<u2" if modes & 2 else "<i2").astype(np.float32)
            audio = (audio - 32768 if modes & 2 else audio) / 32768
        else:
            audio = np.frombuffer(raw, np.uint8 if modes & 2 else np.int8).astype(np.float32)
            audio = (audio - 128 if modes & 2 else audio) / 128
        samples.append((audio, rate))
    return samples


def freepats_recordings(root: Path) -> list:
    found = []
    for stem, label in PATCHES.items():
        path = root / "usr/share/midi/freepats/Tone_000" / f"{stem}.pat"
        for i in range(len(read_pat_samples(path))):
            found.append(Recording(label, f"freepats:{stem}#{i}", f"freepats/{stem}.pat#{i}", path, i))
    return found


def median_f0(paths) -> float:
    f0s = []
    for path in paths:
        audio = decode_audio(path, 16000)
        f0, voiced, _ = librosa.pyin(audio, fmin=60, fmax=500, sr=16000, frame_length=1024)
        f0s.append(f0[voiced & np.isfinite(f0)])
    f0 = np.concatenate(f0s)
    return float(np.median(f0)) if len(f0) else float("nan")


def speech_label(paths) -> str:
    """Male / female speech from the voice's median f0 over its first 6 files; None when unclear."""
    f0 = median_f0(paths[:6])
    if f0 < MALE_F0:
        return "Male_speech_and_man_speaking"
    if FEMALE_F0[0] <= f0 <= FEMALE_F0[1]:
        return "Female_speech_and_woman_speaking"
    return None


def voice_recordings(klettres: Path) -> tuple:
    """KLettres' spoken letters and syllables, one native speaker per language."""
    found, voices = [], {}
    for lang in sorted(p for p in (klettres / "usr/share/klettres").iterdir() if (p / "alpha").is_dir()):
        voices[f"klettres/{lang.name}"] = sorted(lang.glob("alpha/*.ogg")) + sorted(lang.glob("syllab/*.ogg"))
    decided = {}
    for voice, files in voices.items():
        label = speech_label(files) if files else None
        decided[voice] = label
        for f in files if label else []:
            found.append(Recording(label, f"{voice}/{f.name}", f"{voice}/{f.relative_to(f.parents[1])}", f))
    return found, decided


def load(rec: Recording) -> np.ndarray:
    if rec.pat_sample >= 0:
        audio, rate = read_pat_samples(rec.path)[rec.pat_sample]
        return librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return decode_audio(rec.path, SAMPLE_RATE)


def clips_of(audio: np.ndarray) -> list:
    """Trimmed recording as clips of 0.3-7 s: long ones cut into up to 3 pieces of 5 s; a short hit keeps
    0.3 s from its onset (its own tail, zero-padded past the end of the file)."""
    _, (start, end) = librosa.effects.trim(audio, top_db=50)
    if end - start < 0.05 * SAMPLE_RATE:
        return []
    audio = audio[start:max(end, start + int(MIN_SECONDS * SAMPLE_RATE))]
    audio = np.pad(audio, (0, max(0, int(MIN_SECONDS * SAMPLE_RATE) - len(audio))))
    if len(audio) > MAX_SECONDS * SAMPLE_RATE:
        piece = int(PIECE_SECONDS * SAMPLE_RATE)
        return [audio[i:i + piece] for i in range(0, len(audio) - piece + 1, piece)][:MAX_PIECES]
    return [audio]


def split_sources(recordings: list, rng: np.random.Generator) -> dict:
    """Per class: sources shuffled, TEST_SHARE of them (at least one) to test, the rest to training."""
    split = {}
    for label in sorted({r.label for r in recordings}):
        sources = sorted({r.source for r in recordings if r.label == label})
        if len(sources) < 2:
            raise ValueError(f"{label}: needs at least two sources for disjoint train and test")
        order = rng.permutation(len(sources))
        n_test = max(1, int(round(TEST_SHARE * len(sources))))
        for rank, i in enumerate(order):
            split[sources[i]] = "test" if rank < n_test else "train"
    return split


def fname_of(split: str, name: str, piece: int) -> str:
    return hashlib.sha1(f"{split}:{name}:{piece}".encode()).hexdigest()[:8] + ".wav"


def build(out: Path, cache: Path) -> dict:
    roots = fetch_packages(cache)
    rng = np.random.default_rng(SEED)
    recordings = hydrogen_recordings(roots["hydrogen-drumkits"]) + freepats_recordings(roots["freepats"])
    voices, voice_labels = voice_recordings(roots["klettres-data"])
    recordings += voices
    recordings.sort(key=lambda r: (r.name, r.source))
    # A kit may map one sample file to two instruments (closed and pedal hi-hat): one recording, one source.
    recordings = [r for i, r in enumerate(recordings) if i == 0 or r.name != recordings[i - 1].name]
    recordings.sort(key=lambda r: (r.label, r.name))
    source_split = split_sources(recordings, rng)
    dev_classes = sorted({r.label for r in recordings})
    assert set(dev_classes) <= set(FSD2019_CLASSES)

    rows = {"train_curated": [], "train_noisy": [], "test": []}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for split in rows:
        (tmp / split).mkdir(parents=True)
    for label in dev_classes:
        side = {s: [r for r in recordings if r.label == label and source_split[r.source] == s]
                for s in ("train", "test")}
        for s in side:   # a seeded order; each split takes clips in this order up to its cap
            side[s] = [side[s][i] for i in rng.permutation(len(side[s]))]
        plan = {"test": side["test"], "train": side["train"]}
        counts = {"train_curated": 0, "train_noisy": 0, "test": 0}
        for s, recs in plan.items():
            for rec in recs:
                if s == "test":
                    target = "test"
                else:   # alternate curated / noisy so both get clips from across the sources
                    want_noisy = counts["train_noisy"] < NOISY_SHARE * (counts["train_curated"] + counts["train_noisy"] + 1)
                    target = "train_noisy" if want_noisy and counts["train_noisy"] < CAPS["train_noisy"] else "train_curated"
                    if counts[target] >= CAPS[target]:
                        target = "train_noisy" if target == "train_curated" else "train_curated"
                if counts[target] >= CAPS[target]:
                    continue
                for piece, audio in enumerate(clips_of(load(rec))):
                    if counts[target] >= CAPS[target]:
                        break
                    fname = fname_of(target, rec.name, piece)
                    audio = np.clip(audio, -1.0, 1.0)
                    sf.write(tmp / target / fname, audio, SAMPLE_RATE, subtype="PCM_16")
                    rows[target].append({"fname": fname, "labels": label, "source": rec.source,
                                         "recording": rec.name, "seconds": round(len(audio) / SAMPLE_RATE, 3)})
                    counts[target] += 1

    noisy = pd.DataFrame(rows["train_noisy"]).sort_values("fname", ignore_index=True)
    noisy["true_labels"] = noisy["labels"]
    wrong = rng.random(len(noisy)) < NOISY_WRONG_SHARE
    for i in np.flatnonzero(wrong):
        others = [c for c in dev_classes if c != noisy.at[i, "true_labels"]]
        noisy.at[i, "labels"] = others[rng.integers(len(others))]
    curated = pd.DataFrame(rows["train_curated"]).sort_values("fname", ignore_index=True)
    test = pd.DataFrame(rows["test"]).sort_values("fname", ignore_index=True)
    assert not set(test["source"]) & (set(curated["source"]) | set(noisy["source"]))

    # The CSVs carry each clip's source, so `make_folds.py --groups source` keeps a source in one fold
    # (the readers take fname and labels and ignore further columns).
    curated[["fname", "labels", "source"]].to_csv(tmp / "train_curated.csv", index=False)
    noisy[["fname", "labels", "source"]].to_csv(tmp / "train_noisy.csv", index=False)
    noisy[["fname", "labels", "true_labels"]].to_csv(tmp / "train_noisy_true_labels.csv", index=False)
    test[["fname", "labels", "source"]].to_csv(tmp / "test_labels.csv", index=False)
    submission = pd.DataFrame(0, index=range(len(test)), columns=FSD2019_CLASSES)
    submission.insert(0, "fname", test["fname"])
    submission.to_csv(tmp / "sample_submission.csv", index=False)
    pd.concat([df.assign(split=name) for name, df in
               (("train_curated", curated), ("train_noisy", noisy), ("test", test))])[
        ["split", "fname", "labels", "source", "recording", "seconds"]].to_csv(tmp / "sources.csv", index=False)
    meta = {
        "builder": "bench/realdev/build.py", "seed": SEED, "packages": PACKAGES,
        "sample_rate": SAMPLE_RATE, "subtype": "PCM_16", "dev_classes": dev_classes,
        "voice_labels": voice_labels,
        "clips": {name: df["labels" if name != "train_noisy" else "true_labels"].value_counts().sort_index().to_dict()
                  for name, df in (("train_curated", curated), ("train_noisy", noisy), ("test", test))},
        "noisy_wrong_labels": int(wrong.sum()),
        "total_clips": {"train_curated": len(curated), "train_noisy": len(noisy), "test": len(test)},
    }
    (tmp / "DATASET.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "realdev")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "realdev_cache",
                        help="downloaded .deb files and their unpacked trees")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists: pass --overwrite to rebuild it (its experiments/ would be lost)")
    meta = build(args.out, args.cache)
    print(json.dumps({k: meta[k] for k in ("total_clips", "noisy_wrong_labels", "voice_labels")}, indent=1))
    for name, counts in meta["clips"].items():
        print(name, counts)


if __name__ == "__main__":
    main()
