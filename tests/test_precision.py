"""Precision follows the card (no GPU here: the compute capability is faked) and is recorded."""
import pytest
import torch

from src import precision as precision_module
from src.errors import BadSetting
from src.precision import card_precision, resolve_precision

# (compute capability, card) -> what 'auto' gives on it
CARDS = [((9, 0), "H100/H200", "bf16"), ((8, 0), "A100", "bf16"), ((8, 6), "A10/RTX 30", "bf16"),
         ((7, 5), "T4", "fp16"), ((7, 0), "V100", "fp16"), ((6, 0), "P100", "fp32"), ((3, 7), "K80", "fp32")]


@pytest.mark.parametrize("capability, card, expected", CARDS)
@pytest.mark.parametrize("training", [True, False])
def test_auto_follows_the_card(capability, card, expected, training):
    assert card_precision(capability) == expected
    assert resolve_precision("auto", "cuda", training=training, capability=capability) == expected


@pytest.mark.parametrize("capability, card, expected", CARDS)
def test_bf16_is_never_used_on_a_gpu_without_native_bf16(capability, card, expected):
    got = resolve_precision("bf16", "cuda", training=True, capability=capability)
    assert got == ("bf16" if capability[0] >= 8 else expected)  # a T4 gets fp16, a P100 fp32
    assert got != "bf16" or capability[0] >= 8


@pytest.mark.parametrize("capability", [c for c, _, _ in CARDS])
def test_explicit_fp16_and_fp32_are_kept_on_cuda(capability):
    assert resolve_precision("fp16", "cuda", training=True, capability=capability) == "fp16"
    assert resolve_precision("none", "cuda", training=False, capability=capability) == "fp32"
    assert resolve_precision("fp32", "cuda", training=False, capability=capability) == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_a_cpu_trains_in_bf16_only_when_asked_and_native(monkeypatch, native):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    for amp in ("auto", "fp16", "none"):
        assert resolve_precision(amp, "cpu", training=True) == "fp32"
    assert resolve_precision("bf16", "cpu", training=True) == ("bf16" if native else "fp32")


def test_bf16_training_on_a_cpu_runs_autocast_and_learns(monkeypatch):
    """With native bf16 the train step's convolutions run in bf16 and the loss still falls."""
    from src.experiments import get_experiment
    from src.train.argus_model import FreesoundModel, argus_params
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    experiment = get_experiment("small")
    experiment["amp"], experiment["channels_last"], experiment["augment"] = "bf16", True, "sample"
    torch.manual_seed(0)
    model = FreesoundModel(argus_params(experiment, 4, "cpu"))
    assert model.precision == "bf16"
    seen = []
    hook = model.nn_module.register_forward_hook(lambda m, i, out: seen.append(out[0].dtype if isinstance(out, tuple)
                                                                                  else out.dtype))
    x = torch.randn(8, 3, 128, 64)
    y = torch.zeros(8, 4)
    y[:4, 0], y[4:, 1] = 1, 1
    x[:4] += 1.0  # class 0 clips are brighter: learnable
    batch = (x, y, torch.zeros(8, dtype=torch.bool))
    losses = [float(model.train_step(batch, None)["loss"]) for _ in range(15)]
    hook.remove()
    assert seen[0] == torch.bfloat16
    assert losses[-1] < 0.7 * losses[0]


def test_unknown_settings_are_refused():
    with pytest.raises(BadSetting, match="amp must be one of"):
        resolve_precision("fp8", "cpu", training=False)


def test_the_card_is_asked_when_no_capability_is_given(monkeypatch):
    monkeypatch.setattr(precision_module, "cuda_capability", lambda device: (7, 5))
    assert resolve_precision("auto", "cuda:0", training=True) == "fp16"
    assert resolve_precision("bf16", "cuda", training=False) == "fp16"
