"""The argus model: one network, one loss, Adam, sigmoid outputs, mixed precision.

Batches are `(image, target, noisy_flag)`. The loss always receives the flag, so
the curated/noisy split (BCE vs. L-soft) and the auxiliary-head weighting live in
`src.losses`; the steps here only move tensors, run autocast and step the
optimizer:

- CUDA: autocast to bf16 (default) or fp16 with a gradient scaler;
- CPU: plain fp32 (autocast on CPU is slower than fp32 for these convs).

Checkpoints are argus checkpoints: `argus.load_model(path, device=...)` loads them
back on CPU or CUDA once this module is imported.
"""
import functools

import argus
import torch
from argus.utils import deep_to

from src.losses import create_loss
from src.models import MODELS

LOSS_NAMES = ("bce", "lsoft", "lq", "noisy_curated", "aux")


def main_output(prediction):
    """Models with auxiliary heads return (main, aux3, aux2, aux1); predictions use the main head."""
    return prediction[0] if isinstance(prediction, (tuple, list)) else prediction


class SigmoidMain:
    def __call__(self, prediction):
        return torch.sigmoid(main_output(prediction).float())


class FreesoundModel(argus.Model):
    nn_module = MODELS
    loss = {name: functools.partial(create_loss, name) for name in LOSS_NAMES}
    prediction_transform = SigmoidMain

    def __init__(self, params: dict):
        super().__init__(params)
        # Mixed precision: 'bf16' | 'fp16' | 'none'; only used on CUDA.
        amp = params.get("amp", "bf16")
        if amp not in ("bf16", "fp16", "none"):
            raise ValueError(f"amp must be 'bf16', 'fp16' or 'none', got {amp!r}")
        self.amp_enabled = self.device.type == "cuda" and amp != "none"
        self.amp_dtype = torch.float16 if amp == "fp16" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_enabled and amp == "fp16")
        if params.get("channels_last", False):
            self.nn_module = self.nn_module.to(memory_format=torch.channels_last)

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp_enabled)

    def train_step(self, batch, state) -> dict:
        self.train()
        self.optimizer.zero_grad(set_to_none=True)
        input, target, noisy = deep_to(batch, device=self.device, non_blocking=True)
        with self.autocast():
            prediction = self.nn_module(input)
            loss = self.loss(prediction, target, noisy)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {
            "prediction": self.prediction_transform(prediction).detach(),
            "target": target,
            "loss": loss.detach(),  # a tensor: argus averages it without a host sync per step
        }

    def val_step(self, batch, state) -> dict:
        self.eval()
        with torch.no_grad():
            input, target, noisy = deep_to(batch, device=self.device, non_blocking=True)
            with self.autocast():
                prediction = self.nn_module(input)
                loss = self.loss(prediction, target, noisy)
            return {
                "prediction": self.prediction_transform(prediction),
                "target": target,
                "loss": loss.detach(),
            }

    def predict(self, input):
        self._check_predict_ready()
        with torch.no_grad():
            self.eval()
            with self.autocast():
                prediction = self.nn_module(deep_to(input, self.device))
            return self.prediction_transform(prediction)
