"""The argus model: one network, one loss, Adam, sigmoid outputs, mixed precision.

Batches are `(image, target, noisy_flag)`. The loss always receives the flag, so
the curated/noisy split (BCE vs. L-soft) and the auxiliary-head weighting live in
`src.train.losses`; the steps here only move tensors, run autocast and step the
optimizer:

- CUDA: autocast as the experiment's `amp` resolves on the card (src/precision.py: 'auto' is bf16
  from compute capability 8.0, fp16 with a gradient scaler on 7.x, fp32 below); `self.precision`;
- CPU: fp32, or bf16 autocast when the experiment asks for bf16 and the CPU computes it natively
  (avx512_bf16/AMX: with channels_last it halves `small`'s step; emulated it would be far slower).

Optional speed settings (params, from the experiment): `channels_last` (NHWC
weights and inputs), `compile` (torch.compile the network for the training
step), and `batch_augment` (the experiment's augmentation settings: the
loader then serves raw crops, and `src.augment.batch.BatchAugment` augments
each batch on the device at the start of the step). Adam/AdamW use the fused
kernel on CUDA. On CUDA the training step never waits on the device: the loss
is returned as a tensor, and nothing in it reads values back to the host (with
fp16 the gradient scaler's inf check is the one exception).

Checkpoints are argus checkpoints: `src.train.checkpoints.load_checkpoint(path, device)` loads them
back on CPU or CUDA once this module is imported.
"""
import functools

import argus
import torch
from argus.utils import deep_to

from src.augment.batch import create_batch_augment
from src.augment.settings import augment_mode, batch_augment_params
from src.precision import autocast, resolve_precision
from src.train.losses import create_loss
from src.models import MODELS, main_output  # noqa: F401  (main_output: also imported from here)

LOSS_NAMES = ("bce", "lsoft", "lq", "noisy_curated", "aux")


class SigmoidMain:
    def __call__(self, prediction):
        return torch.sigmoid(main_output(prediction).float())


class FreesoundModel(argus.Model):
    nn_module = MODELS
    loss = {name: functools.partial(create_loss, name) for name in LOSS_NAMES}
    prediction_transform = SigmoidMain

    def __init__(self, params: dict):
        super().__init__(params)
        # Mixed precision: the experiment's setting ('auto' | 'bf16' | 'fp16' | 'none'), resolved for this
        # device and card (src/precision.py): bf16, fp16 (with loss scaling) or fp32; a CPU trains in fp32.
        self.amp = params.get("amp", "auto")
        self.precision = resolve_precision(self.amp, self.device, training=True)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.channels_last = bool(params.get("channels_last", False))
        if self.channels_last:
            self.nn_module = self.nn_module.to(memory_format=torch.channels_last)
        self.compile_network = bool(params.get("compile", False))
        self._compiled = None  # (module, compiled module), built on first use
        # Plain data in params (argus deep-copies and pickles them); the object is built here.
        augment = params.get("batch_augment")
        self.batch_augment = create_batch_augment(augment) if augment is not None else None

    def build_optimizer(self, optimizer_meta, optim_params):
        """argus' optimizer, with Adam/AdamW's fused (single-kernel) step on CUDA unless set explicitly."""
        name, kwargs = optim_params if isinstance(optim_params, (list, tuple)) else (optim_params, {})
        device = torch.device(self.params.get("device") or "cpu")
        if name in ("Adam", "AdamW") and device.type == "cuda" and "fused" not in kwargs:
            optim_params = (name, {**kwargs, "fused": True})
        return super().build_optimizer(optimizer_meta, optim_params)

    def forward_module(self):
        """The network for the training step: torch.compile'd when params['compile'] is set.
        The compiled wrapper shares the parameters, so checkpoints keep the plain module's keys."""
        if not self.compile_network:
            return self.nn_module
        if self._compiled is None or self._compiled[0] is not self.nn_module:
            self._compiled = (self.nn_module, torch.compile(self.nn_module))
        return self._compiled[1]

    def prepare_input(self, input):
        """Model input in the network's memory format (NHWC when channels_last)."""
        if self.channels_last and isinstance(input, torch.Tensor) and input.ndim == 4:
            return input.contiguous(memory_format=torch.channels_last)
        return input

    def autocast(self):
        return autocast(self.device, self.precision)

    def train_step(self, batch, state) -> dict:
        self.train()
        self.optimizer.zero_grad(set_to_none=True)
        input, target, noisy = deep_to(batch, device=self.device, non_blocking=True)
        if self.batch_augment is not None:  # raw crops (B, n_mels, W) -> augmented, mixed (B, 3, n_mels, W)
            input, target, noisy = self.batch_augment(input, target, noisy)
        with self.autocast():
            prediction = self.forward_module()(self.prepare_input(input))
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
                prediction = self.nn_module(self.prepare_input(input))
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
                prediction = self.nn_module(self.prepare_input(deep_to(input, self.device)))
            return self.prediction_transform(prediction)


def argus_params(experiment: dict, num_classes: int, device) -> dict:
    """The argus `FreesoundModel` params dict of an experiment (src/experiments.py)."""
    model_name, model_kwargs = experiment["model"]
    return {
        "nn_module": (model_name, {**model_kwargs, "num_classes": num_classes}),
        "loss": tuple(experiment["loss"]),
        "optimizer": tuple(experiment["optimizer"]),
        "device": str(device),
        "amp": experiment["amp"],
        "channels_last": experiment["channels_last"],
        "compile": experiment["compile"],
        # augment="device": the model augments raw-crop batches itself (plain settings, built in the model).
        # Only first-level experiments have the setting: stacking augments its tile sets in the loader.
        "batch_augment": batch_augment_params(experiment)
        if "augment" in experiment and augment_mode(experiment) == "device" else None,
    }
