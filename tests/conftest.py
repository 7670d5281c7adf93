import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def tone(seconds, freq=440.0, sr=44100, amp=0.3):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, audio, sr=44100, subtype='PCM_16', format=None) -> path"""
    def _write(name, audio, sr=44100, subtype="PCM_16", format=None):
        path = tmp_path / name
        sf.write(path, audio, sr, subtype=subtype, format=format)
        return path
    return _write
