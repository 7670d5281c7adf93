"""Tests for src/models: exact parameter counts, shapes, trainability, factory."""

import pytest
import torch
import torch.nn as nn

from src.models import AUX_MODELS, IMAGE_MODELS, MODELS, create_model
from src.models.blocks import CBAM, ConvBlock

# Published parameter counts of the original system (80 classes, base 64).
PARAM_COUNTS = [
    ('AuxSkipAttention', {}, 17_326_950),
    ('SkipAttention', {'kernel_size': 7}, 16_793_587),
    ('SkipAttention', {'kernel_size': 3}, 16_793_507),
    ('RnnAuxSkipAttention', {}, 22_054_246),
    ('SimpleKaggle', {}, 4_765_457),
]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logits_of(output):
    """Main logits of a model output (tuple for aux models)."""
    return output[0] if isinstance(output, tuple) else output


def test_every_model_has_a_param_count():
    assert {name for name, _, _ in PARAM_COUNTS} == set(IMAGE_MODELS)


@pytest.mark.parametrize('name,kwargs,expected', PARAM_COUNTS,
                         ids=[f"{n}-{kw}" for n, kw, _ in PARAM_COUNTS])
def test_param_count_matches_original(name, kwargs, expected):
    model = create_model(name, num_classes=80, base_size=64, **kwargs)
    assert n_params(model) == expected


@pytest.mark.parametrize('name', sorted(IMAGE_MODELS))
@pytest.mark.parametrize('shape', [(2, 3, 128, 256), (2, 3, 128, 64), (2, 3, 64, 16)])
def test_output_shapes(name, shape):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, base_size=8).eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    if name in AUX_MODELS:
        assert isinstance(out, tuple) and len(out) == 4
        for o in out:
            assert o.shape == (shape[0], 7)
    else:
        assert isinstance(out, torch.Tensor)
        assert out.shape == (shape[0], 7)
    assert all(torch.isfinite(o).all() for o in (out if isinstance(out, tuple) else (out,)))


@pytest.mark.parametrize('name', sorted(IMAGE_MODELS))
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, base_size=8).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        ref = logits_of(model(x))
        model_cl = model.to(memory_format=torch.channels_last)
        out = logits_of(model_cl(x.to(memory_format=torch.channels_last)))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', sorted(IMAGE_MODELS))
def test_tiny_model_overfits_random_batch(name):
    """A few Adam steps on one batch must drive the (summed-head) BCE down a lot."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=6, base_size=8, dropout=0.0)
    x = torch.randn(8, 3, 64, 32)
    y = (torch.rand(8, 6) < 0.3).float()
    criterion = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step():
        out = model(x)
        outs = out if isinstance(out, tuple) else (out,)
        loss = sum(criterion(o, y) for o in outs) / len(outs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    first = step()
    for _ in range(25):
        last = step()
    assert last < 0.5 * first, (first, last)
    # Every parameter takes part in the graph (no dead branches).
    assert all(p.grad is not None for p in model.parameters())


def conv_layers(module: nn.Module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def fan_in(conv: nn.Conv2d) -> int:
    return conv.weight[0].numel()


@pytest.mark.parametrize('name', ['AuxSkipAttention', 'SimpleKaggle'])
def test_only_conv_block_convs_are_kaiming_normal(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, base_size=16)
    blocks = [m for m in model.modules() if isinstance(m, ConvBlock)]
    assert len(blocks) == 4
    block_convs = {id(c) for b in blocks for c in conv_layers(b)}
    for conv in (c for b in blocks for c in conv_layers(b)):
        # Kaiming-normal (fan_in, ReLU gain): std sqrt(2 / fan_in), unbounded (beyond the default's
        # uniform bound 1 / sqrt(fan_in)); biases (the baseline's) zero.
        w, std = conv.weight, (2 / fan_in(conv)) ** 0.5
        assert w.std().item() == pytest.approx(std, rel=0.1)
        assert w.abs().max().item() > 1.5 / fan_in(conv) ** 0.5
        assert conv.bias is None or torch.all(conv.bias == 0)
    for b in blocks:
        for bn in (m for m in b.modules() if isinstance(m, nn.BatchNorm2d)):
            assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    others = [c for c in conv_layers(model) if id(c) not in block_convs]
    if name == 'AuxSkipAttention':
        backbone = model.backbone
        expected = (conv_layers(backbone.skip1) + conv_layers(backbone.skip2) + conv_layers(backbone.skip3)
                    + conv_layers(backbone.merge) + conv_layers(backbone.attention))
        assert {id(c) for c in others} == {id(c) for c in expected} and len(others) == 7
    for conv in others:
        # PyTorch's default: kaiming_uniform(a=sqrt(5)), i.e. uniform within +-1 / sqrt(fan_in).
        bound = 1 / fan_in(conv) ** 0.5
        assert conv.weight.abs().max().item() <= bound
        if conv.weight.numel() >= 1000:
            assert conv.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.1)


def test_simple_kaggle_pools_mean_over_time_then_max_over_frequency():
    model = create_model('SimpleKaggle', num_classes=4, base_size=8).eval()
    model.conv, model.head = nn.Identity(), nn.Identity()  # look at the pooling alone
    # (B, C, F, T): rows are frequencies, columns time steps.
    x = torch.tensor([[[[4.0, 0.0], [1.0, 1.0]],
                       [[0.0, 3.0], [2.0, 2.0]]]])
    pooled = model(x)
    # mean over time -> [[2, 1], [1.5, 2]] -> max over frequency -> [2, 2]. The other orders give
    # something else: max over frequency first -> [2.5, 2.5]; mean over frequency + max/mean over time -> [4, 3.5].
    assert torch.equal(pooled, torch.tensor([[2.0, 2.0]]))


def test_aux_heads_follow_skip_branches():
    """aux1/aux2/aux3 logits depend only on skip1/skip2/skip3 respectively."""
    torch.manual_seed(0)
    model = create_model('AuxSkipAttention', num_classes=3, base_size=8).eval()
    x = torch.randn(1, 3, 64, 32, requires_grad=True)
    main, aux3, aux2, aux1 = model(x)
    # Zeroing skip3's conv must change aux3 but not aux1 / aux2.
    with torch.no_grad():
        model.backbone.skip3[1][0].weight.zero_()
        main_b, aux3_b, aux2_b, aux1_b = model(x)
    torch.testing.assert_close(aux1_b, aux1)
    torch.testing.assert_close(aux2_b, aux2)
    assert not torch.allclose(aux3_b, aux3)
    assert not torch.allclose(main_b, main)


def test_conv_block_halves_resolution():
    block = ConvBlock(3, 5)
    assert block(torch.randn(1, 3, 16, 40)).shape == (1, 5, 8, 20)


def test_cbam_keeps_shape_and_gates_in_unit_range():
    cbam = CBAM(32, ratio=16, kernel_size=3)
    x = torch.rand(2, 32, 4, 6) + 0.1  # positive input: gates in (0, 1) shrink it
    out = cbam(x)
    assert out.shape == x.shape
    assert torch.all(out > 0) and torch.all(out < x)


def test_cbam_rejects_even_kernel():
    with pytest.raises(ValueError, match='kernel_size'):
        CBAM(32, kernel_size=4)


def test_create_model_unknown_name():
    with pytest.raises(ValueError) as err:
        create_model('ResNet9000', num_classes=80)
    msg = str(err.value)
    assert 'ResNet9000' in msg
    for name in IMAGE_MODELS:
        assert name in msg


def test_create_model_passes_kwargs():
    model = create_model('SkipAttention', num_classes=11, base_size=8, kernel_size=3)
    assert model.backbone.attention.spatial_attention.conv.kernel_size == (3, 3)
    assert model.head[-1].out_features == 11
