"""Use trained models on any audio: model loading (experiments, bundles, blends), file tagging, timelines.

A `Tagger` is everything needed to go from audio to class probabilities:
the class list, the audio front end the models were trained with, and one or
more *members* (an experiment's fold models, with their tile size and step).
Its prediction is the geometric mean over every fold model of every member,
the way the original combined folds and experiments.

Models come from
- an experiment folder written by train_folds.py (`load_experiment`), or
- a single-file bundle written by export.py (`load_bundle`; plain dicts and
  tensors, loadable with `torch.load(weights_only=True)`), or
- several of either, blended (`blend`).

Three ways to use them:
- `tag_files`: whole files, trimmed like the training clips, sliding-window
  tiles batched across files (`src.predictor.Predictor`);
- `tag_timeline`: long recordings streamed in chunks (`src.streaming`), one
  prediction per window of `window` seconds every `hop` seconds, segments
  above a threshold and a picture, in flat memory;
- `live_tags`: a rolling buffer over any chunk source (microphone or replayed file).
"""
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from src.argus_models import FreesoundModel
from src.audio import AudioReadError, log_mel, read_audio
from src.config import AUDIO, AudioConfig, resolve_data_dir
from src.predictions import geometric_mean
from src.predictor import Predictor, load_fold_models
from src.streaming import MaxPoolTimeline, StreamingLogMel, audio_info, clip_top_db, stream_audio, stream_log_mel
from src.training import best_checkpoint, experiments_dir, trained_folds
from src.utils import atomic_path, pick_device

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".w64", ".rf64", ".caf", ".au")
BUNDLE_FORMAT = "fsat2019-tagger-bundle"
BUNDLE_VERSION = 1


# --- models --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """The fold models of one experiment (or bundle) and how to tile spectrograms for them."""
    name: str
    models: list
    tile_size: int
    step: int


class Tagger:
    """Class probabilities of log-mels: geometric mean over all fold models of all members."""

    def __init__(self, members, classes, audio_config: AudioConfig = AUDIO):
        self.members, self.classes, self.audio_config = list(members), list(classes), audio_config
        if not self.members:
            raise ValueError("a Tagger needs at least one member")

    @property
    def n_models(self) -> int:
        return sum(len(m.models) for m in self.members)

    @property
    def device(self):
        return self.members[0].models[0].device

    def predict(self, specs, batch_size: int = 128) -> np.ndarray:
        """(len(specs), n_classes) float32 probabilities of a list of (n_mels, frames) log-mels."""
        probs = []
        for member in self.members:
            _, _, clips = Predictor(member.models, member.tile_size, member.step, batch_size).predict(specs)
            probs.extend(clips)
        return probs[0] if len(probs) == 1 else geometric_mean(probs)

    def describe(self) -> str:
        parts = [f"{m.name} ({len(m.models)} fold model{'s' * (len(m.models) != 1)}, tiles {m.tile_size} "
                 f"every {m.step} frames)" for m in self.members]
        return " + ".join(parts) + f"; {len(self.classes)} classes; {self.device}"

    def __repr__(self):
        return f"Tagger({self.describe()})"


def _audio_config(values: dict, source) -> AudioConfig:
    try:
        return AudioConfig(**values)
    except TypeError as exc:
        raise ValueError(f"{source}: audio settings {sorted(values)} do not match AudioConfig ({exc})") from exc


def read_experiment_record(exp_dir) -> dict:
    """config.json of an experiment folder (as written by train_folds.py)."""
    path = Path(exp_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train the experiment first (train_folds.py) "
                                f"or pass a bundle with --model")
    record = json.loads(path.read_text())
    for key in ("experiment", "classes"):
        if key not in record:
            raise ValueError(f"{path}: missing key {key!r}")
    return record


def load_experiment(data_dir, name, device, step=None) -> Tagger:
    """A Tagger from the fold checkpoints of <data_dir>/experiments/NAME."""
    exp_dir = experiments_dir(data_dir, name)
    record = read_experiment_record(exp_dir)
    experiment = record["experiment"]
    models = load_fold_models(exp_dir, device)
    member = Member(name, [models[f] for f in sorted(models)], int(experiment["crop_size"]),
                    int(step or experiment.get("tile_step", 64)))
    config = _audio_config(record.get("audio_config", AUDIO.to_dict()), exp_dir / "config.json")
    return Tagger([member], record["classes"], config)


def _plain(obj):
    """JSON-able copy (tuples -> lists), so the bundle holds only types torch's weights_only loader allows."""
    return json.loads(json.dumps(obj))


def make_bundle(data_dir, name) -> dict:
    """Everything `tag.py --model` needs, as plain dicts/lists/str/numbers and tensors."""
    exp_dir = experiments_dir(data_dir, name)
    record = read_experiment_record(exp_dir)
    folds = trained_folds(exp_dir)
    if not folds:
        raise FileNotFoundError(f"{exp_dir}: no trained fold (fold_K/model-*.pth)")
    nn_module, state_dicts = None, []
    for fold in folds:
        path = best_checkpoint(exp_dir / f"fold_{fold}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        fold_module = _plain(state["params"]["nn_module"])
        if nn_module is not None and fold_module != nn_module:
            raise ValueError(f"{path}: model {fold_module} differs from the other folds' {nn_module}")
        nn_module = fold_module
        state_dicts.append({key: value.detach().cpu().clone() for key, value in state["nn_state_dict"].items()})
    model_name, model_kwargs = nn_module
    experiment = record["experiment"]
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": name,
        "classes": list(record["classes"]),
        "audio_config": _plain(record.get("audio_config", AUDIO.to_dict())),
        "crop_size": int(experiment["crop_size"]),
        "tile_step": int(experiment.get("tile_step", 64)),
        "amp": str(experiment.get("amp", "bf16")),
        "model": {"name": model_name, "kwargs": model_kwargs},
        "folds": folds,
        "state_dicts": state_dicts,
    }


def read_bundle(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model bundle (write one with export.py)")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holding pickled code
        raise ValueError(f"{path}: cannot read a model bundle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}: not a tagger bundle written by export.py")
    if bundle.get("version") != BUNDLE_VERSION:
        raise ValueError(f"{path}: bundle version {bundle.get('version')}, this code reads {BUNDLE_VERSION}")
    return bundle


def bundle_models(bundle: dict, device) -> list:
    """One argus FreesoundModel per fold state dict of a bundle (inference only: no loss, no optimizer)."""
    models = []
    for state_dict in bundle["state_dicts"]:
        model = FreesoundModel({"nn_module": (bundle["model"]["name"], dict(bundle["model"]["kwargs"])),
                                "loss": None, "optimizer": None, "device": str(device), "amp": bundle["amp"]})
        model.get_nn_module().load_state_dict(state_dict)
        model.eval()
        models.append(model)
    return models


def load_bundle(path, device, step=None) -> Tagger:
    bundle = read_bundle(path)
    member = Member(bundle["name"], bundle_models(bundle, device), bundle["crop_size"],
                    int(step or bundle["tile_step"]))
    return Tagger([member], bundle["classes"], _audio_config(bundle["audio_config"], path))


def blend(taggers) -> Tagger:
    """One Tagger over all members of several; they must share classes (in order) and audio settings."""
    taggers = list(taggers)
    first = taggers[0]
    for other in taggers[1:]:
        names = f"{first.members[0].name} and {other.members[0].name}"
        if other.classes != first.classes:
            raise ValueError(f"cannot blend {names}: their class lists differ")
        if other.audio_config != first.audio_config:
            raise ValueError(f"cannot blend {names}: they were trained on different audio settings")
    return Tagger([m for t in taggers for m in t.members], first.classes, first.audio_config)


def add_model_args(parser):
    """--experiment/--model/--data-dir/--device/--step/--batch-size, shared by tag.py and demo.py."""
    group = parser.add_argument_group("models (repeat --experiment/--model to blend them)")
    group.add_argument("--experiment", action="append", default=[], metavar="NAME",
                       help="experiment folder <data>/experiments/NAME (all its fold models)")
    group.add_argument("--model", action="append", default=[], metavar="BUNDLE.pt",
                       help="model bundle written by export.py (no experiment folder needed)")
    group.add_argument("--data-dir", help="data root holding experiments/ (default: $FSAT_DATA_DIR or ./data)")
    group.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', ...")
    group.add_argument("--step", type=int, help="tile step in frames (default: each model's tile_step)")
    group.add_argument("--batch-size", type=int, default=128, help="tiles per forward pass (default 128)")


def load_tagger(args) -> Tagger:
    """The blended Tagger of the --experiment / --model arguments."""
    if not args.experiment and not args.model:
        raise SystemExit("give at least one --experiment NAME or --model BUNDLE.pt")
    device = pick_device(args.device)
    taggers = []
    try:
        data_dir = resolve_data_dir(args.data_dir)
        taggers += [load_experiment(data_dir, name, device, args.step) for name in args.experiment]
        taggers += [load_bundle(path, device, args.step) for path in args.model]
        return blend(taggers)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc


# --- files ---------------------------------------------------------------------------------------


def find_audio_files(paths):
    """(files, missing): files given directly, plus audio files found recursively in folders.

    A file named on the command line is always taken (its decoder decides);
    in folders only known audio extensions are picked up. Sorted, no duplicates.
    """
    files, missing, seen = [], [], set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            found = [path]
        else:
            missing.append(path)
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, missing


def _reason(path, exc) -> str:
    text = str(exc)
    return text if str(path) in text else f"{path}: {type(exc).__name__}: {text}"


def tag_files(tagger: Tagger, paths, batch_size=128, group_size=32, progress=True):
    """(results, failures): results = [(path, probs)], failures = [(path, reason)].

    Files are decoded and trimmed like training clips, then predicted
    `group_size` files at a time (their tiles share batches), so memory stays
    bounded for any number of files. A file that fails to decode is recorded
    and skipped.
    """
    config = tagger.audio_config
    results, failures = [], []
    bar = tqdm(total=len(paths), unit="file", desc="tagging", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(paths), group_size):
        specs, ok = [], []
        for path in paths[start:start + group_size]:
            try:
                specs.append(log_mel(read_audio(path, config), config))
                ok.append(path)
            except Exception as exc:  # one bad file must not stop the others; reported at the end
                failures.append((path, _reason(path, exc)))
            bar.update(1)
        if specs:
            results.extend(zip(ok, tagger.predict(specs, batch_size)))
    bar.close()
    return results, failures


def top_k(probs, classes, k):
    """[(label, prob)] of the k most probable classes, most probable first."""
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(classes[i], float(probs[i])) for i in order]


def format_table(results, classes, k) -> str:
    """Terminal table: file | rank | tag | probability, one block of k rows per file."""
    rows = [(Path(path).name if i == 0 else "", str(i + 1), label, f"{prob:.3f}")
            for path, probs in results for i, (label, prob) in enumerate(top_k(probs, classes, k))]
    header = ("file", "#", "tag", "prob")
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"  # noqa
    out = [line(header), "  ".join("-" * w for w in widths)]
    for row in rows:
        if row[0] and len(out) > 2:
            out.append("")
        out.append(line(row))
    return "\n".join(out)


def write_results(results, classes, path, k=5):
    """All class probabilities: CSV (fname, path, one column per class) or JSON (list of {path, top, probs})."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        frame = pd.DataFrame(np.array([p for _, p in results], np.float32).reshape(len(results), len(classes)),
                             columns=classes)
        frame.insert(0, "path", [str(p) for p, _ in results])
        frame.insert(0, "fname", [Path(p).name for p, _ in results])
        with atomic_path(path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.7g")
    elif suffix == ".json":
        items = [{"path": str(p), "top": [{"label": label, "prob": prob} for label, prob in top_k(probs, classes, k)],
                  "probs": {c: float(v) for c, v in zip(classes, probs)}} for p, probs in results]
        with atomic_path(path, suffix=".json") as tmp:
            tmp.write_text(json.dumps(items, indent=1) + "\n")
    else:
        raise ValueError(f"{path}: --out must end in .csv or .json")


# --- timeline ------------------------------------------------------------------------------------


def sliding_windows(blocks, window: int, hop: int):
    """Yield (start_frame, spec) windows of `window` frames every `hop` frames over a stream of frame blocks.

    Only the frames a future window still needs are kept. The tail not
    covered by a full window gets one last, shorter window (the predictor
    pads it like a short clip); a stream shorter than one window gives one
    window with all of it.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1 frame, got {window} and {hop}")
    buffer, buffer_start, next_start, total, last_end = None, 0, 0, 0, 0
    for block in blocks:
        buffer = block if buffer is None else np.concatenate([buffer, block], axis=1)
        total += block.shape[1]
        while next_start + window <= total:
            offset = next_start - buffer_start
            yield next_start, buffer[:, offset:offset + window]
            last_end = next_start + window
            next_start += hop
        drop = min(next_start - buffer_start, buffer.shape[1])
        buffer, buffer_start = buffer[:, drop:], buffer_start + drop
    if buffer is not None and last_end < total and next_start < total:
        yield next_start, buffer[:, next_start - buffer_start:]


class SegmentTracker:
    """Merge consecutive windows whose probability is above `threshold` into (start, end, label, peak) segments.

    Each window stands for the `hop`-long slot around its centre (the first
    slot reaches back to 0, the last one on to the end of the file), so a
    segment runs from the first slot start to the last slot end of its run of
    windows: with overlapping windows this places boundaries within about one
    hop of where the sound starts/stops, rather than a whole window early/late.
    """

    def __init__(self, classes, threshold: float, hop_seconds: float):
        self.classes, self.threshold, self.half_hop = list(classes), float(threshold), hop_seconds / 2
        n = len(self.classes)
        self.active = np.zeros(n, bool)
        self.start, self.end, self.peak = np.zeros(n), np.zeros(n), np.zeros(n)
        self.segments, self.first = [], True

    def update(self, centre: float, probs: np.ndarray):
        slot_start = 0.0 if self.first else centre - self.half_hop
        slot_end = centre + self.half_hop
        self.first = False
        above = probs >= self.threshold
        self._close(self.active & ~above)
        new = above & ~self.active
        self.start[new], self.peak[new] = slot_start, 0.0
        self.active |= above
        self.end[above] = slot_end
        self.peak[above] = np.maximum(self.peak[above], probs[above])

    def _close(self, mask):
        for i in np.flatnonzero(mask):
            self.segments.append((float(self.start[i]), float(self.end[i]), self.classes[i], float(self.peak[i])))
        self.active &= ~mask

    def finish(self, duration: float):
        """All segments sorted by start; those still open end at `duration`."""
        self.end[self.active] = duration
        self._close(self.active.copy())
        self.segments.sort(key=lambda s: (s[0], s[2]))
        return self.segments


@dataclasses.dataclass
class Timeline:
    path: Path
    duration: float
    n_windows: int
    segments: list
    windows_csv: Path
    segments_csv: Path
    png: Path


def tag_timeline(tagger: Tagger, path, out_prefix, window=4.0, hop=1.0, threshold=0.5, batch_size=128,
                 chunk_seconds=10.0, progress=True) -> Timeline:
    """Per-window probabilities, segments and a picture for a recording of any length, in flat memory.

    Writes <out_prefix>.windows.csv (start, end, one column per class),
    <out_prefix>.segments.csv (start, end, label, peak) and
    <out_prefix>.timeline.png. Silence is *not* trimmed here (unlike clip
    tagging): times must refer to the file's own clock, and in a long
    recording quiet stretches are part of the content. Each window's dB values
    are clipped to 80 dB below its own maximum, as a training clip's were.
    """
    config = tagger.audio_config
    fps = config.frames_per_second
    window_frames, hop_frames = max(1, int(round(window * fps))), max(1, int(round(hop * fps)))
    hop_seconds = hop_frames / fps
    out_prefix = Path(out_prefix)
    paths = {kind: out_prefix.with_name(f"{out_prefix.name}.{kind}") for kind in
             ("windows.csv", "segments.csv", "timeline.png")}

    _, estimate = audio_info(path)  # for the progress bar only
    bar = tqdm(total=round(estimate, 1), unit="s", desc=Path(path).name, disable=not progress, dynamic_ncols=True)
    state = StreamingLogMel(config)
    overview = MaxPoolTimeline(config.n_mels)

    def blocks():
        for block in stream_log_mel(stream_audio(path, config.sampling_rate, chunk_seconds), config, state):
            overview.add(block)
            bar.update(round(block.shape[1] / fps, 1))
            yield block

    tracker = SegmentTracker(tagger.classes, threshold, hop_seconds)
    n_windows = 0
    with atomic_path(paths["windows.csv"], suffix=".csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", "end"] + tagger.classes)
        pending = []

        def flush():
            probs = tagger.predict([clip_top_db(spec, config.top_db) for _, spec in pending], batch_size)
            for (start, spec), p in zip(pending, probs):
                begin, end = start / fps, (start + spec.shape[1]) / fps
                writer.writerow([f"{begin:.3f}", f"{end:.3f}"] + [f"{v:.5g}" for v in p])
                tracker.update((begin + end) / 2, p)
            pending.clear()

        for start, spec in sliding_windows(blocks(), window_frames, hop_frames):
            pending.append((start, spec))
            n_windows += 1
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
    bar.close()

    duration = state.n_samples / config.sampling_rate
    segments = tracker.finish(duration)
    with atomic_path(paths["segments.csv"], suffix=".csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", "end", "label", "peak"])
        writer.writerows([f"{s:.3f}", f"{e:.3f}", label, f"{peak:.4f}"] for s, e, label, peak in segments)
    plot_timeline(overview, segments, duration, paths["timeline.png"], config,
                  title=f"{Path(path).name}: segments with p >= {threshold:g} ({window:g} s windows, {hop:g} s hop)")
    return Timeline(Path(path), duration, n_windows, segments, paths["windows.csv"], paths["segments.csv"],
                    paths["timeline.png"])


def plot_timeline(overview: MaxPoolTimeline, segments, duration, path, config=AUDIO, title=""):
    """Max-pooled log-mel on top, one row of labelled segment bars per label below, same time axis."""
    from src.plots import _save, plt  # the repo's Agg backend and atomic PNG writer

    image = overview.image()
    seconds = overview.n_frames / config.frames_per_second
    labels = sorted({s[2] for s in segments}, key=lambda label: min(s[0] for s in segments if s[2] == label))
    fig, (ax_spec, ax_seg) = plt.subplots(2, 1, sharex=True, figsize=(14, 4 + 0.3 * max(len(labels), 1)),
                                          gridspec_kw={"height_ratios": [3, 1 + 0.3 * max(len(labels), 1)]})
    if image.size:
        shown = clip_top_db(image, config.top_db)
        ax_spec.imshow(shown, origin="lower", aspect="auto", cmap="magma", extent=[0, seconds, 0, image.shape[0]],
                       interpolation="nearest")
    ax_spec.set_ylabel("mel band")
    ax_spec.set_title(title)
    colors = plt.get_cmap("tab10")
    for row, label in enumerate(labels):
        spans = [(s, e - s) for s, e, name, _ in segments if name == label]
        ax_seg.broken_barh(spans, (row - 0.4, 0.8), color=colors(row % 10))
        for s, e, name, peak in segments:
            if name == label and (e - s) > duration / 60:
                ax_seg.text(s, row, f" {peak:.2f}", va="center", fontsize=7)
    ax_seg.set_yticks(range(len(labels)), labels, fontsize=8)
    ax_seg.set_ylim(-0.6, max(len(labels), 1) - 0.4)
    if not labels:
        ax_seg.text(duration / 2 if duration else 0.5, 0, "no segment above the threshold", ha="center", va="center")
        ax_seg.set_yticks([])
    ax_seg.set_xlim(0, max(duration, 1e-3))
    ax_seg.set_xlabel("time (s)")
    fig.tight_layout()
    _save(fig, path)


def format_segments(timeline: Timeline, limit=20) -> str:
    lines = [f"{'start':>9}  {'end':>9}  {'label':<24}  peak"]
    for s, e, label, peak in timeline.segments[:limit]:
        lines.append(f"{s:9.2f}  {e:9.2f}  {label:<24}  {peak:.3f}")
    if len(timeline.segments) > limit:
        lines.append(f"... {len(timeline.segments) - limit} more in {timeline.segments_csv}")
    return "\n".join(lines)


# --- live ----------------------------------------------------------------------------------------


def live_tags(tagger: Tagger, chunks, buffer_seconds=4.0, interval=1.0, batch_size=128):
    """Yield (time in seconds, probs) every `interval` seconds of a chunk stream.

    Each prediction sees the last `buffer_seconds` of audio (less at the
    start), turned into a log-mel exactly like a clip -- without silence
    trimming, which would make the buffer's length and timing jump around.
    Chunks are split at interval boundaries, so the result at time t depends
    only on the audio up to t, whatever the chunk size of the source.
    """
    config = tagger.audio_config
    rate = config.sampling_rate
    size, step = int(round(buffer_seconds * rate)), int(round(interval * rate))
    if size < 1 or step < 1:
        raise ValueError(f"buffer_seconds and interval must be positive, got {buffer_seconds} and {interval}")
    buffer = np.zeros(0, np.float32)
    heard, next_at = 0, step
    for chunk in chunks:
        chunk = np.asarray(chunk, np.float32)
        while len(chunk):
            take = min(len(chunk), next_at - heard)
            buffer = np.concatenate([buffer, chunk[:take]])[-size:]
            heard += take
            chunk = chunk[take:]
            if heard == next_at:
                yield heard / rate, tagger.predict([log_mel(buffer, config)], batch_size)[0]
                next_at += step


def format_live(seconds, probs, classes, k) -> str:
    return f"{seconds:8.1f} s  " + "  ".join(f"{label} {prob:.2f}" for label, prob in top_k(probs, classes, k))


def print_failures(failures, stream=None):
    """The failed files with their reasons (each reason names its file)."""
    stream = stream or sys.stdout
    if failures:
        print(f"\n{len(failures)} file(s) failed:", file=stream)
        for _, reason in failures:
            print(f"  {reason}", file=stream)


def out_prefixes(paths, out_dir) -> list:
    """<out_dir>/<stem> for each file; a stem seen before gets _2, _3, ... appended."""
    used, prefixes = {}, []
    for path in paths:
        stem = Path(path).stem
        used[stem] = used.get(stem, 0) + 1
        prefixes.append(Path(out_dir) / (stem if used[stem] == 1 else f"{stem}_{used[stem]}"))
    return prefixes


__all__ = ["Member", "Tagger", "load_experiment", "load_bundle", "make_bundle", "read_bundle", "bundle_models",
           "blend", "add_model_args", "load_tagger", "find_audio_files", "tag_files", "top_k", "format_table",
           "write_results", "sliding_windows", "SegmentTracker", "Timeline", "tag_timeline", "plot_timeline",
           "format_segments", "live_tags", "format_live", "print_failures", "out_prefixes", "AudioReadError"]
