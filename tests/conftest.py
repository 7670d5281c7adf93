"""Shared fixtures (shared functions and data are in tests/helpers.py)."""
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, audio, sr=44100, subtype='PCM_16', format=None) -> path"""
    def _write(name, audio, sr=44100, subtype="PCM_16", format=None):
        path = tmp_path / name
        sf.write(path, audio, sr, subtype=subtype, format=format)
        return path
    return _write


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Scripts under test set torch's global thread count (--threads); no test leaks it to the next."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors and models: on a busy 2-core machine one intra-op thread is several times faster
    than two. Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch):
    """Tests run in fp32 on every machine: `--amp auto` (tag.py, predict_folds.py) would pick bf16 on a CPU
    with native bf16, and the tests compare against fp32 references. Tests of the bf16 path patch it back."""
    monkeypatch.setattr("src.runtime.cpu_flags", lambda *args, **kwargs: set())
