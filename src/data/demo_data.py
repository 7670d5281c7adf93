"""A small procedural audio-tagging dataset in Kaggle's Freesound 2019 layout.

The real competition data cannot ship with the repo, so this module writes a
stand-in with the same files and the same traps:

    <out>/train_curated/*.wav   <out>/train_curated.csv    fname,labels ("A" or "A,B")
    <out>/train_noisy/*.wav     <out>/train_noisy.csv      ~30% of rows with wrong labels
    <out>/test/*.wav            <out>/sample_submission.csv fname + class columns
    <out>/test_labels.csv       true test labels (for scoring; Kaggle kept these hidden)
    <out>/train_noisy_true_labels.csv  true noisy labels + the corruption applied
    <out>/noisy_corrections.json  a simulated hand review: true labels of ~40% of the noisy clips
    <out>/DATASET.json          generation parameters (provenance)

Each of the 12 classes is a procedural sound (tones, chords, noise bands,
click rhythms, chirps, AM/FM tones, ...) whose parameters vary from clip to
clip, so the task is learnable but not trivial. About 20% of clips mix two
classes; durations run from 0.3 s to 20 s (mostly around a second); loudness,
background noise and leading/trailing silence vary. The class columns of
`sample_submission.csv` follow `DEMO_CLASSES` (generation order, deliberately
not alphabetical), so code that sorts the class list by mistake gets caught.

Everything is a pure function of the seed: the label plan comes from one
generator per split, and each clip's audio from its own generator keyed by
(seed, split, index), so the bytes do not depend on the order of writing.
The dataset is written into a hidden temporary folder beside the target and
renamed into place at the end: an interrupted run leaves no half-dataset.

API: `generate_demo_dataset(out_dir, seed, ...)` writes it all; `make_plan`
gives the labels/durations/file names without audio; `make_clip(labels,
duration, rng)` synthesises one clip; `DEMO_CLASSES` is the class order.

    python -m src.data.demo_data --out data/demo --seed 0 [--overwrite]
"""
import argparse
import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft
import soundfile as sf

from src.cli import run
from src.errors import BadSetting, ResultsExist
from src.progress import progress as progress_bar

SAMPLE_RATE = 44100
MIN_SECONDS, MAX_SECONDS = 0.3, 20.0
SPLITS = ("train_curated", "train_noisy", "test")
DEFAULT_COUNTS = {"train_curated": 300, "train_noisy": 300, "test": 120}
NOISY_REVIEWED_SHARE = 0.4     # noisy clips with a (simulated) hand-corrected label
MULTI_LABEL_SHARE = 0.2        # clips that mix two classes (every split)
NOISY_CORRUPTION_SHARE = 0.3   # noisy clips whose CSV labels differ from the truth
GENERATOR_VERSION = 1          # bump when the sounds or the plan change

# Durations: mostly short clips (lognormal, median 0.8 s) plus a few long ones
# (log-uniform 3-20 s) so sliding-window prediction gets exercised. The mean
# is about 1.3 s (Kaggle's curated clips average ~7.6 s): it keeps the default
# 720 clips near 80 MB of 16-bit audio and feature extraction fast.
SHORT_MEDIAN_SECONDS, SHORT_SIGMA = 0.8, 0.65
LONG_SHARE, LONG_RANGE = 0.04, (3.0, 20.0)

# Level ranges, in dB relative to the clip's peak (background) or to full scale (peak).
PEAK_DBFS_RANGE = (-30.0, -1.0)
BACKGROUND_DB = {"train_curated": (-55.0, -35.0), "test": (-55.0, -35.0),
                 "train_noisy": (-45.0, -25.0)}  # web clips: a noisier domain
SILENCE_PROB = 0.12            # clips (>= 1 s) given leading and/or trailing silence
SILENCE_DB = -90.0             # level of that "silence": far below librosa's trim threshold
_TABLE_SIZE = 16384            # wavetable length of the harmonic tones


# ----------------------------------------------------------------------------
# Sound synthesis. Every synth takes (n_samples, sample_rate, rng) and returns a
# float64 signal of that length; its level is normalised later by `make_clip`.
# ----------------------------------------------------------------------------

def _loguniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _time(n, sr):
    return np.arange(n) / sr


def _band_noise(n, sr, rng, low, high, tilt_db_per_octave=0.0):
    """White noise kept between `low` and `high` Hz (FFT mask), optionally tilted (pink = -3)."""
    m = scipy.fft.next_fast_len(n, real=True)  # an FFT of a length with a large prime factor is slow
    spectrum = np.fft.rfft(rng.standard_normal(m))
    freqs = np.fft.rfftfreq(m, 1.0 / sr)
    gain = ((freqs >= low) & (freqs <= high)).astype(float)
    if tilt_db_per_octave:
        gain *= (np.maximum(freqs, 1.0) / low) ** (tilt_db_per_octave / (20 * np.log10(2)))
    return np.fft.irfft(spectrum * gain, m)[:n]


def _fade(x, sr, seconds):
    """Raised-cosine fade in and out, so clip edges do not click."""
    k = min(int(seconds * sr), len(x) // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        x = x.copy()
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def _event_times(n, sr, rng, period, jitter=0.0, poisson=False):
    """Onset sample indices: regular (with relative jitter) or Poisson, first one near the start."""
    duration = n / sr
    t = rng.uniform(0, min(period, 0.1, duration / 3))  # at least one event in every clip
    times = []
    while t < duration:
        times.append(t)
        step = rng.exponential(period) if poisson else period * (1 + jitter * rng.standard_normal())
        t += max(step, 0.02)
    return (np.array(times) * sr).astype(int)


def _place_events(n, onsets, event):
    out = np.zeros(n)
    for start in onsets:
        stop = min(n, start + len(event))
        out[start:stop] += event[:stop - start]
    return out


def _exp_sweep(n_sweep, sr, f0, f1):
    """Exponential sine sweep from f0 to f1 Hz over n_sweep samples."""
    t = _time(n_sweep, sr)
    length = n_sweep / sr
    k = np.log(f1 / f0)
    phase = 2 * np.pi * f0 * length / k * (np.exp(k * t / length) - 1)
    return _fade(np.sin(phase), sr, 0.005)


def _harmonic_tone(n, sr, rng, f0, amplitudes, random_phases=True):
    """Steady tone with harmonics 1..len(amplitudes) of f0, read from a one-period wavetable.

    Much faster than summing one sine per harmonic; with 16384 table points and
    linear interpolation the error stays below -60 dB for the harmonics used here.
    The table is one inverse FFT: bin h holds harmonic h (sin = cos shifted by -pi/2).
    """
    phases = rng.uniform(0, 2 * np.pi, len(amplitudes)) if random_phases else np.zeros(len(amplitudes))
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, complex)
    spectrum[1:len(amplitudes) + 1] = amplitudes * np.exp(1j * (phases - np.pi / 2)) * _TABLE_SIZE / 2
    table = np.fft.irfft(spectrum, _TABLE_SIZE)
    position = (f0 * _time(n, sr) + rng.random()) % 1.0 * _TABLE_SIZE
    return np.interp(position, np.arange(_TABLE_SIZE + 1), np.append(table, table[0]))


def _repeated_sweeps(n, sr, rng, f0, f1):
    """Sweeps of 0.25-0.8 s (shortened for short clips) separated by short gaps."""
    sweep = min(rng.uniform(0.25, 0.8), 0.9 * n / sr)
    gap = rng.uniform(0.02, 0.2)
    one = _exp_sweep(max(int(sweep * sr), 16), sr, f0, f1)
    onsets = np.arange(rng.integers(0, int(0.05 * sr) + 1), n, int((sweep + gap) * sr))
    return _place_events(n, onsets, one)


def sine_tone(n, sr, rng):
    """Steady pure tone, 300-900 Hz."""
    f = _loguniform(rng, 300, 900)
    return np.sin(2 * np.pi * f * _time(n, sr) + rng.uniform(0, 2 * np.pi))


def major_chord(n, sr, rng):
    """Re-struck major triad of harmonic tones (root 180-400 Hz), plucked envelope."""
    root = _loguniform(rng, 180, 400)
    amplitudes = 1 / np.arange(1, 9) ** rng.uniform(1.2, 2.0)
    x = sum(_harmonic_tone(n, sr, rng, root * ratio, amplitudes) for ratio in (1.0, 2 ** (4 / 12), 2 ** (7 / 12)))
    onsets = _event_times(n, sr, rng, period=rng.uniform(0.5, 1.5), jitter=0.05)
    last = onsets[np.maximum(np.searchsorted(onsets, np.arange(n), side="right") - 1, 0)]
    envelope = np.exp(-np.maximum(np.arange(n) - last, 0) / sr / rng.uniform(0.25, 0.7))
    envelope[:onsets[0]] = 0
    return x * envelope


def pink_noise_band(n, sr, rng):
    """Steady pink noise limited to a 1.3-2.3 octave band starting at 300-800 Hz."""
    low = _loguniform(rng, 300, 800)
    return _band_noise(n, sr, rng, low, low * 2 ** rng.uniform(1.3, 2.3), tilt_db_per_octave=-3)


def click_rhythm(n, sr, rng):
    """Regular train of short broadband clicks, 2-8 per second."""
    length = int(rng.uniform(0.003, 0.008) * sr)
    click = rng.standard_normal(length) * np.exp(-np.arange(length) / (rng.uniform(0.001, 0.003) * sr))
    return _place_events(n, _event_times(n, sr, rng, period=1 / rng.uniform(2, 8), jitter=0.01), click)


def chirp_up(n, sr, rng):
    """Repeated upward sweeps from 150-400 Hz to 4-8x that."""
    f0 = _loguniform(rng, 150, 400)
    return _repeated_sweeps(n, sr, rng, f0, f0 * rng.uniform(4, 8))


def am_tone(n, sr, rng):
    """1.4-2.6 kHz tone, amplitude-modulated at 4-16 Hz (50-90% deep tremolo)."""
    t = _time(n, sr)
    carrier = _loguniform(rng, 1400, 2600)
    depth = rng.uniform(0.5, 0.9)
    modulator = 1 + depth * np.sin(2 * np.pi * rng.uniform(4, 16) * t + rng.uniform(0, 2 * np.pi))
    return modulator * np.sin(2 * np.pi * carrier * t)


def fm_tone(n, sr, rng):
    """2.5-5 kHz tone whose pitch wobbles by 10-30% at 2-8 Hz (siren-like)."""
    t = _time(n, sr)
    carrier = _loguniform(rng, 2500, 5000)
    rate, deviation = rng.uniform(2, 8), carrier * rng.uniform(0.1, 0.3)
    phase = 2 * np.pi * carrier * t + deviation / rate * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    return np.sin(phase)


def low_hum(n, sr, rng):
    """Mains-like hum: 45-65 Hz fundamental with 10 decaying harmonics."""
    amplitudes = rng.uniform(0.3, 1.0, 10) / np.arange(1, 11) ** 0.7
    return _harmonic_tone(n, sr, rng, rng.uniform(45, 65), amplitudes)


def high_noise_band(n, sr, rng):
    """Hiss: white noise between 7-10 kHz and 14-19 kHz with a slow level drift."""
    noise = _band_noise(n, sr, rng, rng.uniform(7000, 10000), rng.uniform(14000, 19000))
    drift = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * _time(n, sr) + rng.uniform(0, 2 * np.pi))
    return noise * drift


def chirp_down(n, sr, rng):
    """Repeated downward sweeps from 10-15 kHz to 1/1.6-1/2.2 of that."""
    f0 = _loguniform(rng, 10000, 15000)
    return _repeated_sweeps(n, sr, rng, f0, f0 / rng.uniform(1.6, 2.2))


def square_wave(n, sr, rng):
    """Band-limited square wave (odd harmonics up to 12 kHz), 90-220 Hz."""
    f0 = _loguniform(rng, 90, 220)
    harmonics = np.arange(1, int(12000 / f0) + 1)
    amplitudes = np.where(harmonics % 2 == 1, 1.0 / harmonics, 0.0)
    return _harmonic_tone(n, sr, rng, f0, amplitudes, random_phases=False)


def dripping(n, sr, rng):
    """Water drops: short decaying sine blips rising in pitch, 1.5-5 per second at random times."""
    onsets = _event_times(n, sr, rng, period=1 / rng.uniform(1.5, 5), poisson=True)
    out = np.zeros(n)
    for start in onsets:  # every drop has its own pitch
        f0 = rng.uniform(450, 1000)
        drop = _exp_sweep(int(rng.uniform(0.02, 0.05) * sr), sr, f0, f0 * rng.uniform(1.5, 2.5))
        drop *= np.exp(-np.arange(len(drop)) / (rng.uniform(0.008, 0.02) * sr))
        out += _place_events(n, [start], drop)
    return out


# Generation order = the official class order of sample_submission.csv (not alphabetical).
_SYNTHS = {
    "Sine_tone": sine_tone,
    "Major_chord": major_chord,
    "Pink_noise_band": pink_noise_band,
    "Click_rhythm": click_rhythm,
    "Chirp_up": chirp_up,
    "AM_tone": am_tone,
    "FM_tone": fm_tone,
    "Low_hum": low_hum,
    "High_noise_band": high_noise_band,
    "Chirp_down": chirp_down,
    "Square_wave": square_wave,
    "Dripping": dripping,
}
DEMO_CLASSES = list(_SYNTHS)


def make_clip(labels, duration, rng, sample_rate=SAMPLE_RATE, background_db=(-55.0, -35.0),
              peak_dbfs=PEAK_DBFS_RANGE, silence_prob=SILENCE_PROB) -> np.ndarray:
    """One clip (float32, peak in `peak_dbfs`) holding the sounds of `labels`.

    labels: a class name or a list of them (their sounds are summed at random
        relative levels of +-6 dB RMS).
    duration: seconds. background_db: range of the background noise RMS
        relative to the peak of the sound. silence_prob: chance that a clip of
        at least 1 s gets leading and/or trailing near-silence (10-40% of it).
    """
    labels = [labels] if isinstance(labels, str) else list(labels)
    unknown = [label for label in labels if label not in _SYNTHS]
    if not labels or unknown or len(set(labels)) != len(labels):
        raise ValueError(f"make_clip: labels must be distinct names from DEMO_CLASSES, got {labels}")
    n = int(round(duration * sample_rate))
    if n < 16:
        raise ValueError(f"make_clip: duration {duration} s is too short")

    # Leading/trailing silence, so that trimming matters.
    lead = trail = 0
    if duration >= 1.0 and rng.random() < silence_prob:
        pad = int(rng.uniform(0.1, 0.4) * n)
        lead = int(pad * rng.choice([0.0, rng.uniform(0.2, 0.8), 1.0]))
        trail = pad - lead
    body_n = n - lead - trail

    body = np.zeros(body_n)
    for i, label in enumerate(labels):
        sound = _SYNTHS[label](body_n, sample_rate, rng)
        sound /= np.sqrt(np.mean(sound ** 2)) + 1e-12
        body += sound * 10 ** ((0.0 if i == 0 else rng.uniform(-6, 6)) / 20)
    body = _fade(body, sample_rate, 0.005)
    body /= np.abs(body).max() + 1e-12

    # Background noise (slightly pink) under the sound, near-silence in the pads.
    clip = np.zeros(n)
    background = _band_noise(n, sample_rate, rng, 20, 20000, tilt_db_per_octave=-1.5)
    background /= np.sqrt(np.mean(background ** 2)) + 1e-12
    level = np.full(n, 10 ** (SILENCE_DB / 20))
    level[lead:lead + body_n] = 10 ** (rng.uniform(*background_db) / 20)
    clip[lead:lead + body_n] = body
    clip += background * level

    clip *= 10 ** (rng.uniform(*peak_dbfs) / 20) / np.abs(clip).max()
    return clip.astype(np.float32)


# ----------------------------------------------------------------------------
# The label plan: which file gets which labels, duration and corruption.
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClipPlan:
    split: str            # 'train_curated', 'train_noisy' or 'test'
    index: int            # position within the split (keys the clip's random stream)
    fname: str            # 8 hex chars + '.wav'
    true_labels: tuple    # what the audio contains
    labels: tuple         # what the CSV says (differs for corrupted noisy clips)
    corruption: str       # '', 'swap', 'drop' or 'add'
    duration: float       # seconds
    seed: int             # dataset seed

    def rng(self) -> np.random.Generator:
        """This clip's own random stream: independent of the other clips and of write order."""
        return _generator(self.seed, SPLITS.index(self.split), 1, self.index)


def _generator(seed, *key) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def _draw_durations(rng, n):
    durations = rng.lognormal(np.log(SHORT_MEDIAN_SECONDS), SHORT_SIGMA, n)
    long = rng.random(n) < LONG_SHARE
    durations[long] = np.exp(rng.uniform(*np.log(LONG_RANGE), long.sum()))
    return np.round(np.clip(durations, MIN_SECONDS, MAX_SECONDS), 3)


def _draw_labels(rng, n, classes, multi_share):
    """Balanced label sets: primaries cycle through shuffled class orders; `multi_share` get a 2nd."""
    k = len(classes)
    primary = np.concatenate([rng.permutation(k) for _ in range(-(-n // k))])[:n]
    multi = np.zeros(n, bool)
    multi[rng.permutation(n)[:int(round(multi_share * n))]] = True
    label_sets = []
    for p, m in zip(primary, multi):
        idx = [p, (p + 1 + rng.integers(k - 1)) % k] if m else [p]
        label_sets.append(tuple(classes[i] for i in rng.permutation(idx)))
    return label_sets


def _corrupt(rng, labels, classes):
    """One label error of the kind web tags have: a wrong label swapped in, a true one dropped, or an extra."""
    wrong = [c for c in classes if c not in labels]
    kinds = ["swap", "add"] + (["drop"] if len(labels) > 1 else [])
    kind = kinds[rng.integers(len(kinds))]
    labels = list(labels)
    if kind == "swap":
        labels[rng.integers(len(labels))] = wrong[rng.integers(len(wrong))]
    elif kind == "drop":
        del labels[rng.integers(len(labels))]
    else:
        labels.append(wrong[rng.integers(len(wrong))])
    return tuple(labels), kind


def _fname(seed, split, index, taken):
    """Kaggle-like name (8 hex chars) hashed from (seed, split, index); unique across splits."""
    for attempt in range(1000):
        name = hashlib.sha1(f"{seed}/{split}/{index}/{attempt}".encode()).hexdigest()[:8] + ".wav"
        if name not in taken:
            taken.add(name)
            return name
    raise RuntimeError("could not find a free file name")  # practically unreachable


def make_plan(seed=0, n_curated=DEFAULT_COUNTS["train_curated"], n_noisy=DEFAULT_COUNTS["train_noisy"],
              n_test=DEFAULT_COUNTS["test"], multi_label_share=MULTI_LABEL_SHARE,
              noisy_corruption_share=NOISY_CORRUPTION_SHARE) -> list:
    """The whole dataset as a list of `ClipPlan` (no audio): cheap, and what the files follow."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadSetting(f"seed must be a non-negative integer, got {seed!r}")
    counts = {"train_curated": n_curated, "train_noisy": n_noisy, "test": n_test}
    for split, count in counts.items():
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise BadSetting(f"{split}: clip count must be a positive integer, got {count!r}")
    for name, share in (("multi_label_share", multi_label_share), ("noisy_corruption_share", noisy_corruption_share)):
        if not 0 <= share <= 1:
            raise BadSetting(f"{name} must be in [0, 1], got {share}")
    plan, taken = [], set()
    for split_id, split in enumerate(SPLITS):
        n = int(counts[split])
        rng = _generator(seed, split_id, 0)
        true_labels = _draw_labels(rng, n, DEMO_CLASSES, multi_label_share)
        durations = _draw_durations(rng, n)
        corrupted = set()
        if split == "train_noisy":
            corrupted = set(rng.permutation(n)[:int(round(noisy_corruption_share * n))].tolist())
        for i in range(n):
            labels, kind = _corrupt(rng, true_labels[i], DEMO_CLASSES) if i in corrupted else (true_labels[i], "")
            plan.append(ClipPlan(split, i, _fname(seed, split, i, taken), true_labels[i], labels, kind,
                                 float(durations[i]), int(seed)))
    return plan


# ----------------------------------------------------------------------------
# Writing the dataset.
# ----------------------------------------------------------------------------

def _labels_frame(clips, attr="labels"):
    rows = sorted((c.fname, ",".join(getattr(c, attr))) for c in clips)
    return pd.DataFrame(rows, columns=["fname", "labels"])


def write_clip(folder, clip: ClipPlan) -> None:
    """Synthesise one planned clip and write it as 44.1 kHz 16-bit mono WAV."""
    audio = make_clip(clip.true_labels, clip.duration, clip.rng(), background_db=BACKGROUND_DB[clip.split])
    sf.write(Path(folder) / clip.split / clip.fname, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _write_dataset(folder: Path, plan, progress=True):
    by_split = {split: [c for c in plan if c.split == split] for split in SPLITS}
    for split in SPLITS:
        (folder / split).mkdir()
    for clip in progress_bar(plan, desc="writing demo clips", unit="clip", enabled=progress):
        write_clip(folder, clip)

    _labels_frame(by_split["train_curated"]).to_csv(folder / "train_curated.csv", index=False)
    _labels_frame(by_split["train_noisy"]).to_csv(folder / "train_noisy.csv", index=False)
    truth = _labels_frame(by_split["train_noisy"], "true_labels")
    truth["corruption"] = truth["fname"].map({c.fname: c.corruption for c in by_split["train_noisy"]})
    truth.to_csv(folder / "train_noisy_true_labels.csv", index=False)
    # A simulated hand review of part of the noisy set (the original relabelled noisy clips by hand):
    # reviewed clips get their true labels; they form the corrected-noisy source of corr_noisy_* experiments.
    reviewed = sorted(c.fname for c in by_split["train_noisy"]
                      if _generator(c.seed, SPLITS.index("train_noisy"), 2, c.index).random() < NOISY_REVIEWED_SHARE)
    truth_by_name = {c.fname: ",".join(c.true_labels) for c in by_split["train_noisy"]}
    (folder / "noisy_corrections.json").write_text(
        json.dumps({fname: truth_by_name[fname] for fname in reviewed}, indent=1) + "\n")
    test = _labels_frame(by_split["test"])
    test.to_csv(folder / "test_labels.csv", index=False)
    submission = pd.DataFrame(0, index=range(len(test)), columns=DEMO_CLASSES)
    submission.insert(0, "fname", test["fname"])
    submission.to_csv(folder / "sample_submission.csv", index=False)

    meta = {
        "generator": "src.data.demo_data", "version": GENERATOR_VERSION, "seed": plan[0].seed,
        "sample_rate": SAMPLE_RATE, "subtype": "PCM_16", "classes": DEMO_CLASSES,
        "multi_label_share": MULTI_LABEL_SHARE, "noisy_corruption_share": NOISY_CORRUPTION_SHARE,
        "splits": {split: {
            "clips": len(clips),
            "multi_label_clips": sum(len(c.true_labels) > 1 for c in clips),
            "corrupted_clips": sum(bool(c.corruption) for c in clips),
            "total_seconds": round(sum(c.duration for c in clips), 3),
        } for split, clips in by_split.items()},
    }
    (folder / "DATASET.json").write_text(json.dumps(meta, indent=2) + "\n")


def _check_target(out_dir: Path, overwrite: bool):
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ResultsExist(f"{out_dir}: exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise ResultsExist(f"{out_dir}: folder exists and is not empty; refusing to overwrite it "
                              f"(pass overwrite=True / --overwrite to replace it)")
    if not (out_dir / "DATASET.json").is_file():
        # A guard against `--out . --overwrite` and the like wiping an unrelated folder.
        raise ResultsExist(f"{out_dir}: not a demo dataset (no DATASET.json); refusing to delete it "
                              f"even with overwrite - remove it yourself or pick another --out")


def generate_demo_dataset(out_dir, seed=0, n_curated=DEFAULT_COUNTS["train_curated"],
                          n_noisy=DEFAULT_COUNTS["train_noisy"], n_test=DEFAULT_COUNTS["test"],
                          overwrite=False, progress=True) -> Path:
    """Write the demo dataset to `out_dir` (Kaggle layout, see the module docstring); return its path.

    Refuses a non-empty `out_dir` unless `overwrite` (and then only one that
    holds a previous demo dataset). Same seed and counts -> byte-identical files.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    plan = make_plan(seed, n_curated, n_noisy, n_test)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Hidden sibling folder (same file system, so the final rename is atomic).
    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _write_dataset(tmp, plan, progress)
        _check_target(out_dir, overwrite)  # re-check: something may have appeared meanwhile
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(old / "dataset")
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m src.data.demo_data",
        description="Write the procedural demo dataset (12 synthetic sound classes) in the Kaggle "
                    "Freesound 2019 layout: train_curated/, train_noisy/, test/ WAV folders, their "
                    "CSVs, sample_submission.csv, test_labels.csv and DATASET.json.")
    parser.add_argument("--out", default="data/demo",
                        help="folder to create (default: %(default)s); it must not exist or be empty, "
                             "unless --overwrite")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed and counts give byte-identical files (default: %(default)s)")
    parser.add_argument("--n-curated", type=int, default=DEFAULT_COUNTS["train_curated"],
                        help="clips in train_curated, correctly labelled (default: %(default)s)")
    parser.add_argument("--n-noisy", type=int, default=DEFAULT_COUNTS["train_noisy"],
                        help=f"clips in train_noisy, {round(NOISY_CORRUPTION_SHARE * 100)}%% of them with wrong "
                             f"labels (default: %(default)s)")
    parser.add_argument("--n-test", type=int, default=DEFAULT_COUNTS["test"],
                        help="clips in test; their true labels go to test_labels.csv (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing demo dataset in --out (a folder without DATASET.json "
                             "is never deleted)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = generate_demo_dataset(args.out, seed=args.seed, n_curated=args.n_curated, n_noisy=args.n_noisy,
                                n_test=args.n_test, overwrite=args.overwrite, progress=not args.quiet)
    print(f"wrote {out} ({args.n_curated} curated, {args.n_noisy} noisy, {args.n_test} test clips, "
          f"{_dir_size(out) / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run(main)
