"""Pictures: log-mel spectrograms, training curves, per-class bar charts.

All functions write a PNG atomically (temp file, then rename) with the
non-interactive Agg backend, so they work on a machine without a screen.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src.config import AUDIO  # noqa: E402
from src.files import atomic_path  # noqa: E402


def save_figure(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_log_mel(spec: np.ndarray, path, title="", config=AUDIO):
    """Log-mel image with a time axis in seconds and a dB colour bar."""
    seconds = spec.shape[1] / config.frames_per_second
    width = float(np.clip(seconds * 0.6, 6, 24))
    fig, ax = plt.subplots(figsize=(width, 3.5))
    image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
                      extent=[0, seconds, 0, spec.shape[0]])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band")
    ax.set_title(title or f"log-mel {spec.shape[0]}x{spec.shape[1]}")
    fig.colorbar(image, ax=ax, label="dB")
    save_figure(fig, path)


def plot_training_curves(log, path, title=""):
    """Loss and lwlrap per epoch from a pandas frame with columns
    epoch, train_loss, val_loss, val_lwlrap (and lr, drawn when present)."""
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(11, 4))
    for column in ("train_loss", "val_loss"):
        if column in log:
            ax_loss.plot(log["epoch"], log[column], label=column)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title("loss")
    ax_loss.legend()
    if "val_lwlrap" in log:
        ax_score.plot(log["epoch"], log["val_lwlrap"], color="tab:green", label="val_lwlrap")
        best = int(np.nanargmax(log["val_lwlrap"].to_numpy()))
        ax_score.scatter([log["epoch"].iloc[best]], [log["val_lwlrap"].iloc[best]], color="red", zorder=3,
                         label=f"best {log['val_lwlrap'].iloc[best]:.4f}")
    ax_score.set_xlabel("epoch")
    ax_score.set_title("validation lwlrap")
    ax_score.legend(loc="lower right")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_per_class(scores: dict, path, title="per-class lwlrap"):
    """Horizontal bars, worst class at the top."""
    items = sorted(scores.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, max(3, 0.22 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("lwlrap")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    save_figure(fig, path)
