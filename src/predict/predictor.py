"""Sliding-window prediction over full-length log-mels, tiles batched across clips.

Each clip's log-mel is cut into `tile_size`-frame tiles every `step` frames
(padded with its minimum so the tiles cover it: a short clip is centred as the
validation transform does, a long one evenly on both sides up to the tile
grid). Every tile goes through the validation transform (3 channels:
log-mel, delta, delta-delta, /100) and the model; the sigmoid of the main head
gives per-tile probabilities, and their mean the clip's probabilities.

Unlike the original (one clip at a time, batches of 16), tiles from many clips
fill each batch, deltas are computed on the device by one matmul
(`src.audio.deltas`), and every fold model sees a batch while it is on the device.

Precision (`amp`, src/precision.py): None keeps each model's own (the precision it trains in on
this device: its experiment's amp as the card allows on CUDA, fp32 on a CPU); a setting
('auto', 'bf16', 'fp16', 'none') applies to every model, resolved for prediction: 'auto' (the
default of tag.py) follows the card on CUDA and is bf16 on a CPU that computes it natively
(`src.runtime.cpu_has_native_bf16`), else fp32; 'none' is fp32 everywhere.

CPU shape: a CPU forward pass gets at most `cpu_batch` tiles (16: larger
batches ran slower on a 2-core AVX512 machine, their activations no longer fit
the caches; `python bench/inference.py --sweep`), in channels-last layout
(input and weights: oneDNN's fast bf16 convolutions want NHWC, 2.5-3x faster
than NCHW there; the fold models' weights are switched to NHWC in place).
The GPU path forwards whole batches.
"""
import time
from pathlib import Path

import numpy as np
import torch

from src.audio.deltas import stack_deltas
from src.errors import InputFileNotFound
from src.predict.prediction_sets import clip_means
from src.precision import AMP_SETTINGS, autocast, describe_precisions, resolve_precision
from src.progress import progress as progress_bar

AMP_CHOICES = AMP_SETTINGS
CPU_BATCH = 16  # tiles per CPU forward pass (see the module docstring)


def pad_for_tiles(spec: np.ndarray, tile_size: int, step: int) -> np.ndarray:
    """Pad with the minimum, evenly on both sides, so that tiles of `tile_size` every `step` frames cover the clip.

    A clip of at most `tile_size` frames is padded to one tile (centred, as the
    validation transform does); a longer one up to the tile grid
    `(count_tiles - 1) * step + tile_size`. An odd padding puts the extra
    frame on the right.
    """
    frames = spec.shape[1]
    pad = (count_tiles(frames, tile_size, step) - 1) * step + tile_size - frames
    left = pad // 2
    return np.pad(spec, ((0, 0), (left, pad - left)), constant_values=spec.min())


def make_tiles(spec: np.ndarray, tile_size: int, step: int) -> np.ndarray:
    """(n_tiles, n_mels, tile_size) view of the padded spectrogram."""
    padded = pad_for_tiles(np.asarray(spec, dtype=np.float32), tile_size, step)
    windows = np.lib.stride_tricks.sliding_window_view(padded, tile_size, axis=1)  # (n_mels, n, tile)
    return windows[:, ::step].transpose(1, 0, 2)


def count_tiles(frames: int, tile_size: int, step: int) -> int:
    return 1 if frames <= tile_size else -(-(frames - tile_size) // step) + 1


def tile_steps(experiment: dict, step=None, test_step=None) -> tuple:
    """(out-of-fold step, test step) in frames for an experiment's sliding-window predictions.

    The experiment's `tile_step` is the out-of-fold step and its `test_tile_step`
    the step of test predictions and of tagging (the 2019 members: 64 and 128, as
    the final submission ran). `step` overrides both, then `test_step` the test one.
    """
    oof = int(step if step is not None else experiment["tile_step"])
    test = int(next(s for s in (test_step, step, experiment["test_tile_step"]) if s is not None))
    if oof < 1 or test < 1:
        raise ValueError(f"tile steps must be >= 1 frame, got {oof} (out-of-fold) and {test} (test)")
    return oof, test


def _tile_batches(specs, tile_size, step, batch_size):
    """Yield (float32 array of up to `batch_size` tiles, number of clips whose last tile it holds), in clip
    order, crossing clip boundaries."""
    buffer, filled, finished = np.empty((batch_size, specs[0].shape[0], tile_size), np.float32), 0, 0
    for spec in specs:
        tiles = make_tiles(spec, tile_size, step)
        start = 0
        while start < len(tiles):
            take = min(batch_size - filled, len(tiles) - start)
            buffer[filled:filled + take] = tiles[start:start + take]
            filled += take
            start += take
            finished += start == len(tiles)
            if filled == batch_size:
                yield buffer, finished
                filled, finished = 0, 0
    if filled:
        yield buffer[:filled], finished


def model_precision(model) -> str:
    """The precision a model runs in by itself: `model.precision`, set when it was built for its device
    (argus FreesoundModel, ensemble InferenceModel)."""
    return getattr(model, "precision", "fp32")


def prediction_precisions(models, amp, device) -> list:
    """The precision each model predicts in under setting `amp` (src/precision.py); None: each its own."""
    if amp is None:
        return [model_precision(model) for model in models]
    return [resolve_precision(amp, device, training=False)] * len(models)


class Throughput:
    """Clips predicted and the wall time taken (CUDA work waited for), for a `clips/s` report."""

    def __init__(self):
        self.clips, self.seconds = 0, 0.0

    def timed(self, predict, specs, device):
        """`predict(specs)`, counted."""
        start = time.perf_counter()
        result = predict(specs)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        self.clips += len(specs)
        self.seconds += time.perf_counter() - start
        return result

    def report(self, device) -> str:
        if not self.clips:
            return "no clips predicted"
        return (f"{self.clips} clips in {self.seconds:.1f} s: {self.clips / max(self.seconds, 1e-9):.2f} clips/s "
                f"({1000 * self.seconds / self.clips:.0f} ms per clip) on {device}")


class Predictor:
    """Per-tile and per-clip probabilities of one or more argus models (e.g. all folds of an experiment)."""

    def __init__(self, models, tile_size=256, step=64, batch_size=128, amp=None, cpu_batch=CPU_BATCH):
        self.models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not self.models:
            raise ValueError("Predictor needs at least one model")
        self.tile_size, self.step, self.batch_size = int(tile_size), int(step), int(batch_size)
        self.device = self.models[0].device
        self.on_cpu = self.device.type == "cpu"
        self.forward_size = max(1, int(cpu_batch)) if self.on_cpu else self.batch_size
        if self.on_cpu:
            # NHWC weights too (in place, same values): with NCHW weights oneDNN reorders them on every call
            for model in self.models:
                model.nn_module.to(memory_format=torch.channels_last)
        self.amp = amp
        self.precisions = prediction_precisions(self.models, amp, self.device)

    @property
    def precision(self) -> str:
        """What the models run in: 'bf16', 'fp16', 'fp32' (or e.g. 'bf16/fp32' when they differ)."""
        return describe_precisions(self.precisions)

    def forward(self, model, images: torch.Tensor, precision: str = "fp32", embed: bool = False) -> torch.Tensor:
        """Sigmoid probabilities (B, C) of one model for a (B, 3, H, W) batch, in chunks of `forward_size`,
        under autocast to `precision`; with `embed`, the network's pooled features (B, D) instead."""
        model.eval()
        out = []
        for chunk in images.split(self.forward_size):
            if self.on_cpu:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            else:
                chunk = model.prepare_input(chunk)
            with autocast(self.device, precision):
                if embed:
                    out.append(model.nn_module.embedding(chunk).float().cpu())
                    continue
                prediction = model.nn_module(chunk)
            out.append(model.prediction_transform(prediction).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def predict_tiles(self, specs, embed: bool = False, progress=None) -> list:
        """For each model, the concatenated tile probabilities (n_tiles_total, C) of all clips, float32
        (with `embed`: the tiles' pooled features (n_tiles_total, D)). `progress`: a label to show the
        clips done under (a bar on a terminal, else one line at the end: src/progress.py); None: silent."""
        if len(specs) == 0:
            raise ValueError("no spectrograms to predict")
        outputs = [[] for _ in self.models]
        bar = progress_bar(total=len(specs), desc=progress or "", unit="clip", enabled=progress is not None,
                           leave=False)
        for batch, finished in _tile_batches(specs, self.tile_size, self.step, self.batch_size):
            images = torch.from_numpy(batch).to(self.device, non_blocking=True)
            images = stack_deltas(images)
            for model, precision, out in zip(self.models, self.precisions, outputs):
                out.append(self.forward(model, images, precision, embed))
            bar.update(finished)
        bar.close()
        return [torch.cat(out).numpy() for out in outputs]

    def offsets(self, specs) -> np.ndarray:
        counts = [count_tiles(s.shape[1], self.tile_size, self.step) for s in specs]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def embed(self, specs) -> list:
        """For each model, the (n_clips, D) mean over each clip's tiles of the network's pooled features."""
        offsets = self.offsets(specs)
        return [clip_means(t, offsets) for t in self.predict_tiles(specs, embed=True)]

    def predict(self, specs, progress=None):
        """(tiles per model, offsets, clip probs per model): clip probs are the mean over each clip's tiles;
        `progress` as in `predict_tiles`."""
        tiles = self.predict_tiles(specs, progress=progress)
        offsets = self.offsets(specs)
        clips = [clip_means(t, offsets) for t in tiles]
        return tiles, offsets, clips


def load_fold_models(exp_dir, device, folds=None) -> dict:
    """{fold: argus model} for every fold of an experiment folder with a checkpoint (or the given folds)."""
    # Imported here: the tiling and Predictor above need no argus (the offline kernel embeds them).
    from src.experiment_folder import best_checkpoint, trained_folds
    from src.train.checkpoints import load_checkpoint

    exp_dir = Path(exp_dir)
    available = trained_folds(exp_dir)
    if not available:
        raise InputFileNotFound(f"{exp_dir}: no trained fold (fold_K/model-*.pth); run train_folds.py first")
    folds = available if folds is None else folds
    missing = sorted(set(folds) - set(available))
    if missing:
        raise InputFileNotFound(f"{exp_dir}: no checkpoint for fold(s) {missing}; trained: {available}")
    return {fold: load_checkpoint(best_checkpoint(exp_dir / f"fold_{fold}"), device=device) for fold in folds}
