"""bench/step_ceiling.py: the conv calls it times are all of the network's convolution work, and it reports."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from src.cli import run
from src.models import create_model
from tests.test_bench_errors import load


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_calls_add_up_to_the_networks_convolution_flops(channels_last):
    bench = load("step_ceiling.py")
    torch.manual_seed(0)
    network = create_model("AuxSkipAttention", num_classes=80, base_size=4, ratio=4)
    x = torch.randn(2, 3, 128, 64)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    calls = bench.conv_calls(network, x)
    # 4 blocks x 2 convs, 3 skips, the merge, CBAM's shared MLP (2 convs, called for avg and max), its spatial conv
    assert len(calls) == 17
    assert calls[0][1] == (2, 3, 128, 64) and calls[0][2] is False      # the input batch needs no gradient
    assert all(needs_grad for _, _, needs_grad in calls[1:])
    assert calls[-1][0] is network.backbone.merge[0]

    with FlopCounterMode(display=False) as counter:
        outputs = network(x)
        sum(o.sum() for o in outputs).backward()
    network_conv_flops = sum(n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    timed = sum(bench.flops_of(bench.conv_pass(conv, shape, grad, channels_last)) for conv, shape, grad in calls)
    assert timed == network_conv_flops > 0


def test_it_reports_the_step_against_the_matmul_reference(capsys):
    bench = load("step_ceiling.py")
    bench.main(["--experiment", "demo", "--rounds", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "GFLOP/s" in out and "reference" in out
    assert "17 conv calls" in out and "inside the step (profiler)" in out
    assert "step with everything but the convs free" in out


def test_bad_counts_are_one_line_errors(capsys):
    bench = load("step_ceiling.py")
    with pytest.raises(SystemExit) as info:
        run(bench.main, ["--rounds", "0"])
    assert info.value.code == 2
    assert "--rounds and --steps must be at least 1" in capsys.readouterr().err
