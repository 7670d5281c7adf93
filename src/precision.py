"""Which floating-point precision a model runs in: one rule for training and prediction.

A setting (an experiment's `amp`, a script's `--amp`) resolves, on a device, to one of
'bf16', 'fp16' or 'fp32' (`resolve_precision`):

  'auto'  on CUDA it follows the card (`card_precision`): bf16 on compute capability >= 8.0
          (A100, H100, ...: native bf16), fp16 on 7.x (V100, T4: fp16 tensor cores, no bf16;
          training adds a GradScaler), fp32 below 7.0 (P100). On a CPU: fp32 for training; for
          prediction bf16 where the CPU computes it natively (`src.runtime.cpu_has_native_bf16`),
          else fp32.
  'bf16'  bf16 autocast, but never on a GPU without native bf16: there it is the card's 'auto'
          (fp16 on a T4, fp32 on a P100). On a CPU: bf16 for prediction; for training bf16 where
          the CPU computes it natively (the `small` experiment asks for it), else fp32.
  'fp16'  fp16 autocast on CUDA (+ GradScaler when training); fp32 on a CPU.
  'none'  fp32 everywhere ('fp32' is accepted as the same).

The 2019 runs trained in apex O2 fp16 and made every test prediction of the submission in fp32,
which is why test predictions of the shipped members default to fp32 (predict_folds.py
--test-amp, the ensemble, its bundle and kernel). Every record (config.json, done.json,
val_lwlrap.json, bundles) names the precision used.
"""
import torch

from src.errors import BadSetting
from src.runtime import cpu_has_native_bf16

AMP_SETTINGS = ("auto", "bf16", "fp16", "none")
PRECISIONS = ("bf16", "fp16", "fp32")
TEST_AMP = "none"  # test predictions of the 2019 members: fp32, as the 2019 kernel made them
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def cuda_capability(device) -> tuple:
    """(major, minor) compute capability of a CUDA device (tests replace this: no GPU here)."""
    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def card_precision(capability) -> str:
    """The fastest safe autocast precision of a CUDA card with this compute capability."""
    major = int(capability[0])
    if major >= 8:
        return "bf16"
    return "fp16" if major == 7 else "fp32"


def resolve_precision(amp, device, *, training: bool, capability=None) -> str:
    """'bf16' | 'fp16' | 'fp32' for setting `amp` on `device` (see the module docstring).
    `capability` overrides the CUDA card's compute capability (tests)."""
    amp = "none" if amp == "fp32" else amp
    if amp not in AMP_SETTINGS:
        raise BadSetting(f"amp must be one of {', '.join(AMP_SETTINGS)} (or fp32), got {amp!r}")
    device = torch.device(device)
    if amp == "none":
        return "fp32"
    if device.type == "cuda":
        card = card_precision(capability if capability is not None else cuda_capability(device))
        if amp == "auto" or (amp == "bf16" and card != "bf16"):
            return card
        return amp
    if device.type == "cpu":
        if not training and amp == "auto":
            return "bf16" if cpu_has_native_bf16() else "fp32"
        if not training and amp == "bf16":
            return "bf16"
        # Training in bf16 on a CPU only when asked for and computed natively: with avx512_bf16/AMX it
        # halves `small`'s step time together with channels_last (bench/train_throughput.py); emulated,
        # it is several times slower than fp32. 'auto' keeps training in fp32.
        if training and amp == "bf16" and cpu_has_native_bf16():
            return "bf16"
    return "fp32"


def describe_precisions(precisions) -> str:
    """'fp32', or e.g. 'bf16/fp32' when models differ, for log lines and records."""
    return "/".join(sorted(set(precisions)))


def autocast(device, precision: str):
    """The autocast context of a resolved precision (disabled for fp32)."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dtype = DTYPES[precision] if precision != "fp32" else torch.bfloat16  # any dtype: disabled anyway
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "fp32")
