"""Tests for src.train.losses against values worked out with plain Python math."""
import math

import pytest
import torch

from src.train.losses import (AuxLoss, BCELoss, LqLoss, LSoftLoss, NoisyCuratedLoss, create_loss)

LN3, LN4 = math.log(3), math.log(4)


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def bce(p, t):
    """Binary cross-entropy of probability p against (soft) target t."""
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def mean(xs):
    return sum(xs) / len(xs)


# Logits chosen for round probabilities: sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 4) = 1/5
LOGITS = [[0.0, LN3, -LN4]]
TARGET = [[1.0, 0.0, 1.0]]


def tensors(logits=LOGITS, target=TARGET, requires_grad=False):
    return (torch.tensor(logits, dtype=torch.float64, requires_grad=requires_grad),
            torch.tensor(target, dtype=torch.float64))


# --- BCE -----------------------------------------------------------------------------
def test_bce_hand_worked():
    # p = [1/2, 3/4, 1/5], y = [1, 0, 1]
    # elements: -ln(1/2) = ln 2, -ln(1 - 3/4) = ln 4, -ln(1/5) = ln 5 ; mean of the three
    expected = (math.log(2) + math.log(4) + math.log(5)) / 3
    logits, target = tensors()
    assert BCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # the noisy flag is accepted and ignored
    assert BCELoss()(logits, target, torch.ones(1)).item() == pytest.approx(expected, rel=1e-6)


def test_per_sample_averages_over_classes():
    # sample 0: as above; sample 1: logits [ln 3, ln 3, 0], y = [1, 1, 0]
    #   elements -ln(3/4), -ln(3/4), -ln(1/2)
    logits, target = tensors([LOGITS[0], [LN3, LN3, 0.0]], [TARGET[0], [1.0, 1.0, 0.0]])
    expected = [(math.log(2) + math.log(4) + math.log(5)) / 3,
                (2 * -math.log(3 / 4) + math.log(2)) / 3]
    per_sample = BCELoss().per_sample(logits, target)
    assert per_sample.shape == (2,)
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-6)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        BCELoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# --- L-soft ----------------------------------------------------------------------------
def lsoft_elements(beta):
    """Hand version: t' = beta*y + (1-beta)*p, element loss = BCE(p, t')."""
    ps = [sigmoid(z) for z in LOGITS[0]]
    targets = [beta * y + (1 - beta) * p for y, p in zip(TARGET[0], ps)]
    return ps, targets, [bce(p, t) for p, t in zip(ps, targets)]


def test_lsoft_hand_worked_beta_07():
    # p = [0.5, 0.75, 0.2], y = [1, 0, 1], beta = 0.7
    # t' = [0.7 + 0.3*0.5, 0 + 0.3*0.75, 0.7 + 0.3*0.2] = [0.85, 0.225, 0.76]
    # loss = mean(BCE(0.5, 0.85), BCE(0.75, 0.225), BCE(0.2, 0.76))
    ps, targets, elements = lsoft_elements(0.7)
    assert targets == pytest.approx([0.85, 0.225, 0.76])
    # BCE(0.5, t) = ln 2 whatever t is
    assert elements[0] == pytest.approx(math.log(2))
    logits, target = tensors()
    assert LSoftLoss(beta=0.7)(logits, target).item() == pytest.approx(mean(elements), rel=1e-6)


def test_lsoft_beta_limits():
    logits, target = tensors()
    # beta = 1: t' = y, plain BCE
    assert LSoftLoss(beta=1.0)(logits, target).item() == pytest.approx(BCELoss()(logits, target).item())
    # beta = 0: t' = p, loss = entropy of p: H(1/2) = ln 2, H(3/4), H(1/5)
    entropies = [bce(p, p) for p in (0.5, 0.75, 0.2)]
    assert LSoftLoss(beta=0.0)(logits, target).item() == pytest.approx(mean(entropies), rel=1e-6)


def test_lsoft_gradient_does_not_flow_through_soft_target():
    # With t' held fixed, d BCE(sigmoid(z), t') / dz = p - t' per element, / N for the mean:
    # grad = [(0.5 - 0.85)/3, (0.75 - 0.225)/3, (0.2 - 0.76)/3]
    # If the gradient also flowed through t' it would gain (1-beta) * p(1-p) * (-z) / N,
    # which is non-zero for the 2nd and 3rd elements (z != 0).
    ps, targets, _ = lsoft_elements(0.7)
    expected = [(p - t) / 3 for p, t in zip(ps, targets)]
    leaky = [(p - t + 0.3 * p * (1 - p) * -z) / 3 for p, t, z in zip(ps, targets, LOGITS[0])]
    assert leaky[1] != pytest.approx(expected[1])
    logits, target = tensors(requires_grad=True)
    LSoftLoss(beta=0.7)(logits, target).backward()
    assert logits.grad[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_lsoft_clamps_probabilities():
    # logit -40: sigmoid ~ 4e-18 is clamped to p = 1e-7; y = 1, beta = 0.7
    # t' = 0.7 + 0.3e-7 ; loss = -(t' ln 1e-7 + (1 - t') ln(1 - 1e-7))
    logits, target = tensors([[-40.0]], [[1.0]])
    t = 0.7 + 0.3 * 1e-7
    expected = bce(1e-7, t)
    assert LSoftLoss(beta=0.7)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_lsoft_runs_in_float32_under_autocast():
    logits = torch.tensor(LOGITS, dtype=torch.bfloat16)
    target = torch.tensor(TARGET)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LSoftLoss(beta=0.7)(logits, target)
    assert loss.dtype == torch.float32
    # same value as the float32 computation on the (bf16-rounded) logits
    assert loss.item() == pytest.approx(LSoftLoss(beta=0.7)(logits.float(), target).item(), rel=1e-6)


def test_lsoft_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        LSoftLoss(beta=1.5)


# --- Lq ----------------------------------------------------------------------------------
def test_lq_hand_worked_q_half():
    # p = [1/2, 3/4, 1/5], y = [1, 0, 1] -> p_t = [1/2, 1/4, 1/5]
    # element (1 - p_t^0.5) / 0.5 = 2 (1 - sqrt(p_t)) = [2 - sqrt 2, 1, 2 - 2/sqrt 5]
    expected = mean([2 - math.sqrt(2), 1.0, 2 - 2 / math.sqrt(5)])
    logits, target = tensors()
    assert LqLoss(q=0.5)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_lq_q1_is_mean_absolute_error():
    # q = 1: 1 - p_t = |y - p| = [1/2, 3/4, 4/5]
    logits, target = tensors()
    assert LqLoss(q=1.0)(logits, target).item() == pytest.approx(mean([0.5, 0.75, 0.8]), rel=1e-6)


def test_lq_small_q_approaches_bce():
    # (1 - p_t^q)/q -> -ln p_t as q -> 0
    logits, target = tensors()
    assert LqLoss(q=1e-4)(logits, target).item() == pytest.approx(BCELoss()(logits, target).item(), rel=1e-3)


def test_lq_soft_target_interpolates():
    # y = 0.25 at p = 1/2, q = 0.5: 0.25 * 2(1 - sqrt(1/2)) + 0.75 * 2(1 - sqrt(1/2)) = 2 - sqrt 2
    # y = 0.25 at p = 3/4: 0.25 * 2(1 - sqrt(3/4)) + 0.75 * 2(1 - sqrt(1/4))
    logits, target = tensors([[0.0, LN3]], [[0.25, 0.25]])
    expected = mean([2 - math.sqrt(2), 0.25 * 2 * (1 - math.sqrt(0.75)) + 0.75 * 2 * 0.5])
    assert LqLoss(q=0.5)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_lq_gradient_finite_for_extreme_logits():
    logits, target = tensors([[-200.0, 200.0, 0.0]], [[1.0, 0.0, 1.0]], requires_grad=True)
    LqLoss(q=0.5)(logits.float(), target.float()).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5])
def test_lq_rejects_bad_q(q):
    with pytest.raises(ValueError, match="q must be"):
        LqLoss(q=q)


# --- noisy / curated split ------------------------------------------------------------------
# 4 samples, 2 classes. Noisy part: Lq with q = 1 (per element |y - p|); curated part: BCE.
BATCH_LOGITS = [[0.0, LN3], [-LN4, 0.0], [LN3, -LN4], [0.0, 0.0]]
BATCH_TARGET = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]


def hand_per_sample(loss):
    out = []
    for zs, ys in zip(BATCH_LOGITS, BATCH_TARGET):
        ps = [sigmoid(z) for z in zs]
        if loss == "mae":
            out.append(mean([abs(y - p) for p, y in zip(ps, ys)]))
        else:
            out.append(mean([bce(p, y) for p, y in zip(ps, ys)]))
    return out


def expected_split(flags, noisy_weight, curated_weight):
    """weight * (mean over the part's samples) * (part size / batch size); empty part -> 0."""
    mae, bce_ = hand_per_sample("mae"), hand_per_sample("bce")
    total = 0.0
    for flag_value, losses, weight in ((1, mae, noisy_weight), (0, bce_, curated_weight)):
        part = [loss for loss, f in zip(losses, flags) if f == flag_value]
        if part:
            total += weight * mean(part) * len(part) / len(flags)
    return total


@pytest.mark.parametrize("flags", [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0]])
@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.3, 0.7)])
def test_noisy_curated_split(flags, weights):
    loss_fn = NoisyCuratedLoss(LqLoss(q=1.0), BCELoss(), *weights)
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    expected = expected_split(flags, *weights)
    for flag_tensor in (torch.tensor(flags), torch.tensor(flags, dtype=torch.bool),
                        torch.tensor(flags, dtype=torch.float32)):
        assert loss_fn(logits, target, flag_tensor).item() == pytest.approx(expected, rel=1e-6)


def test_noisy_curated_special_cases():
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    loss_fn = NoisyCuratedLoss(LqLoss(q=1.0), BCELoss(), 0.5, 0.5)
    # all curated: half of the plain BCE mean; all noisy: half of the plain Lq mean
    assert loss_fn(logits, target, torch.zeros(4)).item() == pytest.approx(0.5 * BCELoss()(logits, target).item())
    assert loss_fn(logits, target, torch.ones(4)).item() == pytest.approx(0.5 * LqLoss(q=1.0)(logits, target).item())


def test_noisy_curated_gradient_only_from_own_part():
    # sample 0 noisy (MAE), others curated (BCE). d|y - p|/dz = -p(1-p) for y=1, +p(1-p) for y=0;
    # d BCE/dz = p - y. Each element's gradient is weight * d(element)/dz / (B * C) = 0.5 * . / 8
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET, requires_grad=True)
    NoisyCuratedLoss(LqLoss(q=1.0), BCELoss())(logits, target, torch.tensor([1, 0, 0, 0])).backward()
    expected = []
    for i, (zs, ys) in enumerate(zip(BATCH_LOGITS, BATCH_TARGET)):
        row = []
        for z, y in zip(zs, ys):
            p = sigmoid(z)
            d = (p * (1 - p) * (1 if y == 0 else -1)) if i == 0 else (p - y)
            row.append(0.5 * d / 8)
        expected.append(row)
    for got, want in zip(logits.grad.tolist(), expected):
        assert got == pytest.approx(want, rel=1e-6)


def test_noisy_curated_flag_size_mismatch():
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    with pytest.raises(ValueError, match="noisy flag"):
        NoisyCuratedLoss(LSoftLoss(), BCELoss())(logits, target, torch.ones(3))


def test_noisy_curated_requires_elementwise_parts():
    with pytest.raises(TypeError, match="per_sample"):
        NoisyCuratedLoss(torch.nn.BCEWithLogitsLoss(), BCELoss())


# --- auxiliary heads ----------------------------------------------------------------------------
def test_aux_loss_weighting():
    # 4 heads, each a single logit against y = 1: BCE = -ln sigmoid(z)
    # total = 1.0*l(0) + 0.4*l(ln 3) + 0.2*l(-ln 4) + 0.1*l(ln 3)
    #       = ln 2 + 0.4 ln(4/3) + 0.2 ln 5 + 0.1 ln(4/3)
    heads = [0.0, LN3, -LN4, LN3]
    outputs = tuple(torch.tensor([[z]], dtype=torch.float64) for z in heads)
    target = torch.tensor([[1.0]], dtype=torch.float64)
    expected = math.log(2) + 0.4 * math.log(4 / 3) + 0.2 * math.log(5) + 0.1 * math.log(4 / 3)
    loss = AuxLoss(BCELoss(), weights=(1.0, 0.4, 0.2, 0.1))(outputs, target, torch.zeros(1))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_aux_loss_passes_noisy_flag():
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    flags = torch.tensor([1, 0, 0, 1])
    base = NoisyCuratedLoss(LqLoss(q=1.0), BCELoss())
    # identical heads: total = (1 + 0.4 + 0.2 + 0.1) * base loss
    loss = AuxLoss(base)((logits,) * 4, target, flags)
    assert loss.item() == pytest.approx(1.7 * expected_split([1, 0, 0, 1], 0.5, 0.5), rel=1e-6)


def test_aux_loss_wrong_number_of_outputs():
    logits, target = tensors()
    with pytest.raises(ValueError, match="4 outputs"):
        AuxLoss(BCELoss())((logits, logits), target, None)
    with pytest.raises(ValueError, match="tuple"):
        AuxLoss(BCELoss())(logits, target, None)


# --- factory ---------------------------------------------------------------------------------------
def test_create_loss_simple():
    assert isinstance(create_loss("bce"), BCELoss)
    lsoft = create_loss("lsoft", beta=0.4)
    assert isinstance(lsoft, LSoftLoss) and lsoft.beta == 0.4
    lq = create_loss("lq", q=0.7)
    assert isinstance(lq, LqLoss) and lq.q == 0.7


def test_create_loss_noisy_curated():
    loss = create_loss("noisy_curated", noisy="lsoft", noisy_params={"beta": 0.6},
                       curated="bce", noisy_weight=0.3, curated_weight=0.7)
    assert isinstance(loss, NoisyCuratedLoss)
    assert isinstance(loss.noisy_loss, LSoftLoss) and loss.noisy_loss.beta == 0.6
    assert isinstance(loss.curated_loss, BCELoss)
    assert (loss.noisy_weight, loss.curated_weight) == (0.3, 0.7)
    # default: L-soft (beta 0.7) for noisy, BCE for curated, 0.5 / 0.5
    default = create_loss("noisy_curated")
    assert isinstance(default.noisy_loss, LSoftLoss) and default.noisy_loss.beta == 0.7
    assert isinstance(default.curated_loss, BCELoss)
    assert (default.noisy_weight, default.curated_weight) == (0.5, 0.5)


def test_create_loss_aux():
    loss = create_loss("aux", base={"name": "noisy_curated", "noisy": "lq", "noisy_params": {"q": 1.0}},
                       weights=[1.0, 0.4, 0.2, 0.1])
    assert isinstance(loss, AuxLoss) and isinstance(loss.loss, NoisyCuratedLoss)
    assert loss.weights == (1.0, 0.4, 0.2, 0.1)
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    got = loss((logits,) * 4, target, torch.tensor([1, 0, 0, 1]))
    assert got.item() == pytest.approx(1.7 * expected_split([1, 0, 0, 1], 0.5, 0.5), rel=1e-6)


@pytest.mark.parametrize("name", ["bce", "lsoft", "lq", "noisy_curated"])
def test_create_loss_uniform_signature(name):
    logits, target = tensors(BATCH_LOGITS, BATCH_TARGET)
    value = create_loss(name)(logits, target, torch.tensor([1, 0, 0, 1]))
    assert value.ndim == 0 and torch.isfinite(value)


def test_create_loss_errors():
    with pytest.raises(ValueError, match="Unknown loss 'focal'.*bce.*lsoft.*lq.*noisy_curated.*aux"):
        create_loss("focal")
    with pytest.raises(ValueError, match="noisy loss must be one of"):
        create_loss("noisy_curated", noisy="aux")
    with pytest.raises(ValueError, match="curated loss must be one of"):
        create_loss("noisy_curated", curated="mse")
    with pytest.raises(ValueError, match="'base' must be a dict"):
        create_loss("aux", weights=[1.0])
    with pytest.raises(ValueError, match="cannot itself be 'aux'"):
        create_loss("aux", base={"name": "aux"})
    with pytest.raises(TypeError):
        create_loss("lsoft", q=0.5)
