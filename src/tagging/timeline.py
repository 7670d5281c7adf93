"""Tagging long recordings in flat memory: streamed windows, segments above a threshold, a picture."""
import csv
import dataclasses
from pathlib import Path

import numpy as np

from src.config import AUDIO
from src.audio.streaming import MaxPoolTimeline, StreamingLogMel, audio_info, clip_top_db, stream_audio, stream_log_mel
from src.progress import progress as progress_bar
from src.predict.ensemble import Ensemble
from src.files import atomic_path


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


def tag_timeline(tagger: Ensemble, path, out_prefix, window=4.0, hop=1.0, threshold=0.5, batch_size=128,
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
    bar = progress_bar(total=round(estimate, 1), unit="s", desc=Path(path).name, enabled=progress)
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
    from src.plots import plt, save_figure  # the repo's Agg backend and atomic PNG writer

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
    save_figure(fig, path)


def format_segments(timeline: Timeline, limit=20) -> str:
    lines = [f"{'start':>9}  {'end':>9}  {'label':<24}  peak"]
    for s, e, label, peak in timeline.segments[:limit]:
        lines.append(f"{s:9.2f}  {e:9.2f}  {label:<24}  {peak:.3f}")
    if len(timeline.segments) > limit:
        lines.append(f"... {len(timeline.segments) - limit} more in {timeline.segments_csv}")
    return "\n".join(lines)
