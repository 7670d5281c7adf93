"""CPU inference: native bf16 detection, the Predictor's precision choice, CPU forward chunks, tag.py --amp."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import tag
from src.precision import resolve_precision
from src.predict.predictor import Predictor, make_tiles
from src.augment.transforms import ImageToTensor
from src import runtime
from tests.helpers import make_experiment, sound, tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Flag lines as /proc/cpuinfo prints them (abridged)
ZEN4 = "fpu vme avx2 avx512f avx512bw avx512vl avx512_bf16 avx512_vnni"  # AVX512 with native bf16
ICELAKE = "fpu vme avx2 avx512f avx512bw avx512vl avx512_vnni"  # AVX512 without bf16: emulated
SAPPHIRE_RAPIDS = "fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
EPYC_AVX2 = "fpu vme avx avx2 fma"


READ_CPU_FLAGS = runtime.cpu_flags  # the real reader (conftest swaps in one that sees no flags during tests)


@pytest.mark.parametrize("flags, native", [(ZEN4, True), (ICELAKE, False), (SAPPHIRE_RAPIDS, True),
                                           (EPYC_AVX2, False), ("avx2 avx_vnni avx_ne_convert", True), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\nbogomips\t: 4000\n\n"
                       f"processor\t: 1\nflags\t\t: {flags}\n")
    assert READ_CPU_FLAGS(cpuinfo) == set(flags.split())
    assert runtime.cpu_has_native_bf16(READ_CPU_FLAGS(cpuinfo)) is native


def test_cpu_flags_of_a_missing_cpuinfo_are_empty(tmp_path):
    assert READ_CPU_FLAGS(tmp_path / "absent") == set()
    assert runtime.cpu_has_native_bf16(set()) is False


def test_auto_precision_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda *a: set(ZEN4.split()))
    assert resolve_precision("auto", "cpu", training=False) == "bf16"
    assert resolve_precision("auto", "cpu", training=True) == "fp32"  # a CPU trains in fp32
    monkeypatch.setattr(runtime, "cpu_flags", lambda *a: set(ICELAKE.split()))
    assert resolve_precision("auto", "cpu", training=False) == "fp32"  # emulated bf16 is slower: keep fp32
    assert resolve_precision("bf16", "cpu", training=False) == "bf16"  # asked for: bf16 anyway


def specs_and_reference(model, tile_size=64, step=16):
    """Random log-mels and the fp32 clip probabilities of the one-clip-at-a-time route."""
    rng = np.random.default_rng(3)
    specs = [rng.normal(-40, 10, (32, n)).astype(np.float32) for n in (40, 130, 500, 77)]
    expected = []
    for spec in specs:
        inputs = torch.stack([ImageToTensor()(np.ascontiguousarray(t)) for t in make_tiles(spec, tile_size, step)])
        expected.append(model.predict(inputs).numpy().mean(0))
    return specs, np.stack(expected)


@pytest.mark.parametrize("cpu_batch", [1, 3, 16, 1000])
def test_cpu_forward_chunks_and_nhwc_give_the_fp32_probabilities(cpu_batch):
    model = tiny_model(model="AuxSkipAttention")
    specs, expected = specs_and_reference(model)
    predictor = Predictor(model, 64, 16, batch_size=7, amp="none", cpu_batch=cpu_batch)
    assert predictor.forward_size == cpu_batch and predictor.precision == "fp32"
    clips = predictor.predict(specs)[2][0]
    np.testing.assert_allclose(clips, expected, atol=1e-6)
    # the weights are NHWC now (same values): the convolutions run in oneDNN's channels-last layout
    conv = next(m for m in model.nn_module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast_on_cpu_is_used_and_stays_close(monkeypatch):
    model = tiny_model(model="AuxSkipAttention")
    specs, expected = specs_and_reference(model)
    monkeypatch.setattr(runtime, "cpu_flags", lambda *a: set(ZEN4.split()))
    auto = Predictor(model, 64, 16, amp="auto")
    assert auto.precision == "bf16"
    clips = auto.predict(specs)[2][0]
    assert np.abs(clips - expected).max() > 1e-6  # bf16 rounding shows: autocast was on
    np.testing.assert_allclose(clips, expected, atol=1e-2)
    monkeypatch.setattr(runtime, "cpu_flags", lambda *a: set(ICELAKE.split()))
    np.testing.assert_allclose(Predictor(model, 64, 16, amp="auto").predict(specs)[2][0], expected, atol=1e-6)


def test_tag_amp_option_reaches_the_predictor(tmp_path):
    make_experiment(tmp_path, "tiny")
    path = tmp_path / "clip.wav"
    sf.write(path, sound(3.0), 44100)
    probs = {}
    for amp in ("none", "bf16", "auto"):
        out = tmp_path / f"{amp}.json"
        assert tag.main([str(path), "--experiment", "tiny", "--data-dir", str(tmp_path), "--no-progress",
                         "--amp", amp, "--out", str(out)]) == 0
        probs[amp] = np.array(list(json.loads(out.read_text())[0]["probs"].values()))
    assert np.abs(probs["bf16"] - probs["none"]).max() > 1e-6
    np.testing.assert_allclose(probs["bf16"], probs["none"], atol=1e-2)
    np.testing.assert_array_equal(probs["auto"], probs["none"])  # conftest: a CPU without native bf16
