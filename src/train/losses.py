"""Training losses. All take logits.

Element-wise losses (``BCELoss``, ``LSoftLoss``, ``LqLoss``) share one small
interface:

* ``per_sample(logits, target) -> (B,)``: loss averaged over classes per sample;
* ``forward(logits, target, noisy=None) -> scalar``: mean over all elements. The
  ``noisy`` flag is accepted and ignored, so every loss built by
  :func:`create_loss` can be called as ``loss(output, target, noisy)``.

``NoisyCuratedLoss`` combines two element-wise losses using the per-sample
losses and the noisy flag as weights, which needs no boolean indexing and no
host-device sync. ``AuxLoss`` sums a loss over the heads of an auxiliary model.

All computations run in float32 with autocast disabled: F.binary_cross_entropy
refuses to run under CUDA autocast, and half precision is too coarse for
log-probabilities anyway.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ElementwiseLoss", "BCELoss", "LSoftLoss", "LqLoss", "NoisyCuratedLoss", "AuxLoss", "create_loss", "LOSSES"]


class ElementwiseLoss(nn.Module):
    """Base class: subclasses implement ``elementwise(logits, target) -> (B, C)`` in float32."""

    def elementwise(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _elementwise_fp32(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"{type(self).__name__}: logits {tuple(logits.shape)} and "
                             f"target {tuple(target.shape)} must have the same shape")
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.elementwise(logits.float(), target.float())

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss per sample, averaged over all non-batch dimensions: shape (B,)."""
        return self._elementwise_fp32(logits, target).flatten(1).mean(dim=1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, noisy=None) -> torch.Tensor:
        """Mean loss over all elements; ``noisy`` is ignored (uniform call signature)."""
        return self._elementwise_fp32(logits, target).mean()


class BCELoss(ElementwiseLoss):
    """Binary cross-entropy with logits (the curated-data loss)."""

    def elementwise(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


class LSoftLoss(ElementwiseLoss):
    """Soft bootstrapping loss for noisy labels (Fonseca et al. 2019, "L-soft").

    p = sigmoid(logits) clamped to [1e-7, 1]; the target is softened towards the
    model's own belief, target' = beta * y + (1 - beta) * p, computed without
    gradient; loss = BCE(p, target').
    """

    def __init__(self, beta: float = 0.7, eps: float = 1e-7):
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"LSoftLoss: beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.eps = eps

    def elementwise(self, logits, target):
        probs = torch.sigmoid(logits).clamp(self.eps, 1.0)
        with torch.no_grad():
            soft_target = self.beta * target + (1.0 - self.beta) * probs
        return F.binary_cross_entropy(probs, soft_target, reduction="none")

    def extra_repr(self):
        return f"beta={self.beta}"


class LqLoss(ElementwiseLoss):
    """Generalized cross-entropy (Zhang & Sabuncu 2018) applied per class.

    With p = sigmoid(logit) and p_t the probability of the observed label
    (p for y=1, 1-p for y=0) the loss is (1 - p_t^q) / q: q -> 0 gives BCE,
    q = 1 gives the (noise-robust) mean absolute error. Soft targets y in [0, 1]
    interpolate linearly between the two cases, as BCE does:
    y * (1 - p^q) / q + (1 - y) * (1 - (1-p)^q) / q.
    p^q is computed as exp(q * logsigmoid(logit)) so that its gradient stays
    finite when p underflows to 0.
    """

    def __init__(self, q: float = 0.5):
        super().__init__()
        if not 0.0 < q <= 1.0:
            raise ValueError(f"LqLoss: q must be in (0, 1], got {q}")
        self.q = q

    def elementwise(self, logits, target):
        p_pow = torch.exp(self.q * F.logsigmoid(logits))          # p^q
        not_p_pow = torch.exp(self.q * F.logsigmoid(-logits))     # (1 - p)^q
        return (target * (1.0 - p_pow) + (1.0 - target) * (1.0 - not_p_pow)) / self.q

    def extra_repr(self):
        return f"q={self.q}"


class NoisyCuratedLoss(nn.Module):
    """Separate losses for noisy (flag 1) and curated (flag 0) samples of one batch.

    Each part is averaged over its own samples, scaled by its share of the batch
    and by its weight; a part without samples contributes 0:

        weight_part * mean_part(loss) * n_part / B == weight_part * sum_part(loss) / B

    The right-hand side is what we compute, with the flag as per-sample weights,
    so there is no boolean indexing and no division by a data-dependent count.
    """

    def __init__(self, noisy_loss: ElementwiseLoss, curated_loss: ElementwiseLoss,
                 noisy_weight: float = 0.5, curated_weight: float = 0.5):
        super().__init__()
        for role, loss in (("noisy_loss", noisy_loss), ("curated_loss", curated_loss)):
            if not hasattr(loss, "per_sample"):
                raise TypeError(f"NoisyCuratedLoss: {role} must provide per_sample() "
                                f"(an element-wise loss), got {type(loss).__name__}")
        self.noisy_loss = noisy_loss
        self.curated_loss = curated_loss
        self.noisy_weight = noisy_weight
        self.curated_weight = curated_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        batch_size = logits.shape[0]
        if noisy.numel() != batch_size:
            raise ValueError(f"NoisyCuratedLoss: noisy flag has {noisy.numel()} elements, "
                             f"batch has {batch_size} samples")
        noisy = noisy.reshape(batch_size).to(device=logits.device, dtype=torch.float32)
        noisy_part = (self.noisy_loss.per_sample(logits, target) * noisy).sum()
        curated_part = (self.curated_loss.per_sample(logits, target) * (1.0 - noisy)).sum()
        return (self.noisy_weight * noisy_part + self.curated_weight * curated_part) / batch_size

    def extra_repr(self):
        return f"noisy_weight={self.noisy_weight}, curated_weight={self.curated_weight}"


class AuxLoss(nn.Module):
    """Weighted sum of one loss over the heads of a model with auxiliary outputs.

    ``outputs`` is the model's tuple (main, aux3, aux2, aux1); loss_i is called
    as ``loss(output_i, target, noisy)``.
    """

    def __init__(self, loss: nn.Module, weights=(1.0, 0.4, 0.2, 0.1)):
        super().__init__()
        self.loss = loss
        self.weights = tuple(float(w) for w in weights)
        if not self.weights:
            raise ValueError("AuxLoss: weights must not be empty")

    def forward(self, outputs, target: torch.Tensor, noisy=None) -> torch.Tensor:
        if not isinstance(outputs, (tuple, list)) or len(outputs) != len(self.weights):
            got = f"{len(outputs)} outputs" if isinstance(outputs, (tuple, list)) else type(outputs).__name__
            raise ValueError(f"AuxLoss: expected a tuple of {len(self.weights)} outputs "
                             f"(one per weight), got {got}")
        return sum(w * self.loss(out, target, noisy) for w, out in zip(self.weights, outputs))

    def extra_repr(self):
        return f"weights={self.weights}"


ELEMENTWISE_LOSSES = {"bce": BCELoss, "lsoft": LSoftLoss, "lq": LqLoss}
LOSSES = (*ELEMENTWISE_LOSSES, "noisy_curated", "aux")


def _create_elementwise(name: str, params: dict | None, role: str) -> ElementwiseLoss:
    if name not in ELEMENTWISE_LOSSES:
        raise ValueError(f"create_loss: {role} loss must be one of {sorted(ELEMENTWISE_LOSSES)}, got '{name}'")
    return ELEMENTWISE_LOSSES[name](**(params or {}))


def create_loss(name: str, **params) -> nn.Module:
    """Build a loss by name; the result is always called as ``loss(output, target, noisy)``.

    Examples::

        create_loss('bce')
        create_loss('lsoft', beta=0.7)
        create_loss('noisy_curated', noisy='lsoft', noisy_params={'beta': 0.7},
                    curated='bce', noisy_weight=0.5, curated_weight=0.5)
        create_loss('aux', base={'name': 'noisy_curated', 'noisy': 'lsoft'},
                    weights=[1.0, 0.4, 0.2, 0.1])
    """
    if name in ELEMENTWISE_LOSSES:
        return ELEMENTWISE_LOSSES[name](**params)
    if name == "noisy_curated":
        params = dict(params)
        noisy = _create_elementwise(params.pop("noisy", "lsoft"), params.pop("noisy_params", None), "noisy")
        curated = _create_elementwise(params.pop("curated", "bce"), params.pop("curated_params", None), "curated")
        return NoisyCuratedLoss(noisy, curated, **params)
    if name == "aux":
        params = dict(params)
        base = dict(params.pop("base", None) or {})
        if "name" not in base:
            raise ValueError("create_loss('aux'): 'base' must be a dict with the base loss 'name' and its params")
        if base["name"] == "aux":
            raise ValueError("create_loss('aux'): the base loss cannot itself be 'aux'")
        return AuxLoss(create_loss(**base), **params)
    raise ValueError(f"Unknown loss '{name}'; known losses: {', '.join(LOSSES)}")
