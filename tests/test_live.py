"""demo.py live tagging: chunk sources (file replay, microphone) through one rolling-buffer code path."""
import itertools
import re
import sys
import threading
import time
import types

import numpy as np
import pytest
import soundfile as sf

import demo
from src.audio.frontend import decode_audio, log_mel
from src.errors import UserError
from src.audio.streaming import FileSource, MicrophoneSource
from src.tagging import live_tags, load_experiment
from tests.helpers import CLASSES, SR, make_experiment, sound

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)

LINE = re.compile(r"^\s*(\d+\.\d) s  (\S+) (\d\.\d\d)  (\S+) (\d\.\d\d)$")


@pytest.fixture
def setup(tmp_path):
    make_experiment(tmp_path, "tiny", folds=2, crop_size=32, tile_step=16)
    path = tmp_path / "replay.wav"
    sf.write(path, sound(3.2, seed=3), SR, subtype="PCM_16")
    return tmp_path, path


def direct(tagger, audio, seconds, buffer_seconds):
    """What the live path should print at time `seconds`: the last `buffer_seconds` of audio as one clip."""
    end = int(round(seconds * SR))
    start = max(0, end - int(round(buffer_seconds * SR)))
    return tagger.predict([log_mel(audio[start:end])])[0]


def test_demo_replays_file_and_prints_top_tags_every_interval(setup, capsys):
    data_dir, path = setup
    assert demo.main(["--experiment", "tiny", "--data-dir", str(data_dir), "--file", str(path), "--fast",
                      "--interval", "0.5", "--buffer", "1.0", "--top-k", "2"]) == 0
    lines = [m for m in map(LINE.match, capsys.readouterr().out.splitlines()) if m]
    assert [float(m.group(1)) for m in lines] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # 3.2 s of audio
    tagger = load_experiment(data_dir, "tiny", "cpu")
    audio = decode_audio(path)
    for m in lines:
        labels, probs = [m.group(2), m.group(4)], [float(m.group(3)), float(m.group(5))]
        assert set(labels) <= set(CLASSES) and probs[0] >= probs[1]
        expected = direct(tagger, audio, float(m.group(1)), 1.0)
        assert labels[0] == CLASSES[int(np.argmax(expected))]
        assert abs(probs[0] - expected.max()) <= 0.005 + 1e-6


def test_live_tags_do_not_depend_on_chunk_size(setup):
    data_dir, path = setup
    tagger = load_experiment(data_dir, "tiny", "cpu")
    runs = [list(live_tags(tagger, FileSource(path, SR, chunk, realtime=False), buffer_seconds=1.5, interval=0.7))
            for chunk in (0.03, 0.9)]
    assert [t for t, _ in runs[0]] == [t for t, _ in runs[1]] == pytest.approx([0.7, 1.4, 2.1, 2.8])
    for (_, a), (_, b) in zip(*runs):
        assert np.allclose(a, b, atol=1e-6)


def test_realtime_replay_is_paced(tmp_path):
    path = tmp_path / "half.wav"
    sf.write(path, sound(0.4), SR)
    timings = {}
    for realtime in (True, False):
        start = time.monotonic()
        total = sum(len(c) for c in FileSource(path, SR, chunk_seconds=0.1, realtime=realtime))
        timings[realtime] = time.monotonic() - start
        assert total == int(0.4 * SR)
    assert timings[True] >= 0.38
    assert timings[False] < timings[True]


class FakeInputStream:
    """Calls the callback from a thread with blocks of a fixed signal, like PortAudio does."""

    def __init__(self, signal, samplerate, blocksize, callback, **kwargs):
        self.signal, self.blocksize, self.callback = signal, blocksize, callback
        assert kwargs["channels"] == 1 and kwargs["dtype"] == "float32" and samplerate == 48000

    def _feed(self):
        for i in range(0, len(self.signal), self.blocksize):
            block = self.signal[i:i + self.blocksize, None]
            self.callback(block, len(block), None, None)

    def __enter__(self):
        threading.Thread(target=self._feed, daemon=True).start()
        return self

    def __exit__(self, *exc):
        return False


def fake_sounddevice(signal):
    module = types.ModuleType("sounddevice")
    module.PortAudioError = type("PortAudioError", (Exception,), {})
    module.query_devices = lambda device=None, kind=None: {"name": "fake mic", "default_samplerate": 48000.0}
    module.InputStream = lambda samplerate, blocksize, callback, **kw: FakeInputStream(signal, samplerate, blocksize,
                                                                                      callback, **kw)
    return module


def test_microphone_source_goes_through_the_same_path(setup, monkeypatch):
    data_dir, _ = setup
    signal = sound(2.5, 48000, seed=4)
    path = data_dir / "mic48k.wav"
    sf.write(path, signal, 48000, subtype="FLOAT")
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(signal))
    tagger = load_experiment(data_dir, "tiny", "cpu")
    live = live_tags(tagger, MicrophoneSource(SR, chunk_seconds=0.05), buffer_seconds=1.0, interval=0.5)
    from_mic = list(itertools.islice(live, 4))  # the microphone never ends: take 2 s worth
    live.close()
    from_file = list(live_tags(tagger, FileSource(path, SR, 0.2, realtime=False), buffer_seconds=1.0, interval=0.5))
    assert [t for t, _ in from_mic] == [t for t, _ in from_file[:4]] == [0.5, 1.0, 1.5, 2.0]
    for (_, a), (_, b) in zip(from_mic, from_file):
        assert np.allclose(a, b, atol=1e-6)  # 48 kHz mic resampled by the same streaming resampler


def test_microphone_without_sounddevice_is_a_clear_error(setup, monkeypatch):
    data_dir, _ = setup
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    with pytest.raises(UserError, match="pip install sounddevice"):
        demo.main(["--experiment", "tiny", "--data-dir", str(data_dir)])


def test_fast_needs_a_file(setup):
    data_dir, _ = setup
    with pytest.raises(SystemExit):
        demo.main(["--experiment", "tiny", "--data-dir", str(data_dir), "--fast"])
