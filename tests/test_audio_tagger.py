"""The Python API (src/tagging/audio_tagger.py): load, tag files or waveforms, yes/no tags, embeddings."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from src.errors import BadInput
from src.predict.predictor import Predictor, load_fold_models
from src.tagging import AudioTagger
from src.thresholds import thresholds_record
from tests.helpers import CLASSES, SR, make_experiment, sound
from tests.test_tagging import expected_probs

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)


@pytest.fixture
def clips(tmp_path):
    """Three files: 44.1 kHz mono, 22.05 kHz stereo, 48 kHz mono."""
    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "a.wav", sound(1.5, SR, seed=0), SR, subtype="FLOAT")
    sf.write(folder / "b.wav", sound(2.0, 22050, seed=1, channels=2), 22050, subtype="FLOAT")
    sf.write(folder / "c.wav", sound(1.2, 48000, seed=2), 48000, subtype="FLOAT")
    return sorted(folder.iterdir())


@pytest.fixture
def tiny(tmp_path):
    make_experiment(tmp_path, "tiny")
    return tmp_path


def test_tag_files_gives_a_frame_of_tag_py_probabilities(tiny, clips):
    tagger = AudioTagger.from_experiment("tiny", data_dir=tiny, device="cpu", amp="none")
    probs = tagger.tag(clips)
    assert list(probs.columns) == CLASSES and list(probs.index) == [str(p) for p in clips]
    np.testing.assert_allclose(probs.to_numpy(), expected_probs(tiny, "tiny", clips), atol=1e-6)
    one = tagger.tag(clips[0])  # a single path
    assert one.shape == (1, len(CLASSES)) and np.allclose(one.to_numpy(), probs.to_numpy()[:1])
    top = tagger.top_k(probs, 2)
    for (_, row), best in zip(probs.iterrows(), top):
        assert [t for t, _ in best] == list(row.sort_values(ascending=False).index[:2])
        assert [p for _, p in best] == pytest.approx(sorted(row, reverse=True)[:2])


def test_a_waveform_is_resampled_and_trimmed_as_its_file(tiny, clips):
    tagger = AudioTagger.from_experiment("tiny", data_dir=tiny, device="cpu", amp="none")
    from_files = tagger.tag(clips)
    waveforms, rates = zip(*(sf.read(p, dtype="float32") for p in clips))
    assert rates == (SR, 22050, 48000) and waveforms[1].ndim == 2  # stereo stays (n_samples, channels)
    for waveform, rate, (_, row) in zip(waveforms, rates, from_files.iterrows()):
        frame = tagger.tag(waveform, sample_rate=rate)
        assert list(frame.index) == ["waveform_0"]
        np.testing.assert_allclose(frame.to_numpy()[0], row.to_numpy(), atol=1e-6)
    several = tagger.tag([waveforms[0], waveforms[2]], sample_rate=SR)  # one rate for the list
    assert list(several.index) == ["waveform_0", "waveform_1"]
    with pytest.raises(BadInput, match="needs its sample_rate"):
        tagger.tag(waveforms[0])


def test_labels_follow_the_recorded_thresholds_and_bundles_carry_them(tiny, clips, tmp_path):
    import export
    folder = tiny / "predictions" / "tiny"
    folder.mkdir(parents=True)
    thresholds = np.linspace(0.2, 0.6, len(CLASSES))
    (folder / "thresholds.json").write_text(json.dumps(thresholds_record(CLASSES, thresholds)))
    tagger = AudioTagger.from_experiment("tiny", data_dir=tiny, device="cpu", amp="none")
    np.testing.assert_allclose(tagger.thresholds, thresholds)
    probs = tagger.tag(clips)
    labels = tagger.labels(probs)
    for (_, row), tags in zip(probs.iterrows(), labels):
        assert set(tags) == {c for c, t in zip(CLASSES, thresholds) if row[c] >= t}
        assert list(tags) == sorted(tags, key=lambda c: -row[c])
    assert tagger.labels(probs, threshold=0.0).iloc[0] and not tagger.labels(probs, threshold=1.0).iloc[0]

    bundle = tmp_path / "tiny.pt"
    export.main(["--experiment", "tiny", "--data-dir", str(tiny), "--out", str(bundle)])
    from_bundle = AudioTagger.from_bundle(bundle, device="cpu", amp="none")
    np.testing.assert_allclose(from_bundle.thresholds, thresholds)
    pd.testing.assert_frame_equal(from_bundle.tag(clips), probs)


def test_embeddings_are_what_the_head_sees_per_fold(tiny, clips):
    """(n_clips, n_folds, D); for a clip of one tile, each fold's head on its embedding gives that fold's
    probabilities, and a longer clip's embedding is the mean of its tiles' features."""
    tagger = AudioTagger.from_experiment("tiny", data_dir=tiny, device="cpu", amp="none")
    features = tagger.embed(clips)
    models = load_fold_models(tiny / "experiments" / "tiny", "cpu")
    net = models[0].nn_module
    width = net.head[0].in_features if isinstance(net.head[0], torch.nn.Linear) else None
    assert features.shape[:2] == (len(clips), 2) and features.dtype == np.float32
    if width is not None:
        assert features.shape[2] == width

    from src.audio.fast_frontend import log_mel, read_audio
    specs = [log_mel(read_audio(p)) for p in clips]
    member = tagger.models.members[0]
    for fold, model in enumerate(models[f] for f in sorted(models)):
        predictor = Predictor(model, member.tile_size, member.step)
        tiles = predictor.predict_tiles(specs, embed=True)[0]
        offsets = predictor.offsets(specs)
        for k in range(len(clips)):
            np.testing.assert_allclose(features[k, fold], tiles[offsets[k]:offsets[k + 1]].mean(axis=0), rtol=1e-5,
                                       atol=1e-6)
        # a clip of one tile: the head on its embedding gives its probabilities
        short = [specs[0][:, :member.tile_size - 10]]
        assert len(predictor.offsets(short)) == 2 and predictor.offsets(short)[1] == 1
        _, _, clip_probs = predictor.predict(short)
        with torch.no_grad():
            head = torch.sigmoid(model.nn_module.head(torch.from_numpy(predictor.embed(short)[0]))).numpy()
        np.testing.assert_allclose(head, clip_probs[0], atol=1e-5)
    waveform, rate = sf.read(clips[1], dtype="float32")
    np.testing.assert_allclose(tagger.embed(waveform, sample_rate=rate)[0], features[1], atol=1e-5)


def test_a_whole_ensemble_bundle_tags_through_the_same_calls(tmp_path, clips):
    from src.config import AUDIO
    from src.tagging.bundles import random_ensemble_bundle
    bundle = random_ensemble_bundle("demo", CLASSES, AUDIO, n_folds=1)
    torch.save(bundle, tmp_path / "ensemble.pt")
    tagger = AudioTagger.from_bundle(tmp_path / "ensemble.pt", device="cpu")
    probs = tagger.tag(clips)
    assert probs.shape == (3, len(CLASSES)) and np.isfinite(probs.to_numpy()).all()
    assert tagger.thresholds.tolist() == [0.5] * len(CLASSES)  # a bundle without thresholds
    assert len(tagger.labels(probs)) == 3
