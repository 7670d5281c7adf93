"""tag.py and src.tagging / src.audio.streaming: file tagging, blends, streamed log-mel, timelines.

Models here are tiny untrained networks saved as real argus checkpoints in a
fake experiment folder (what train_folds.py writes), plus one deterministic
"model" (`BandEnergy`) whose answers are known in advance, for the timeline.
"""
import csv
import dataclasses
import json
import os
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import soundfile as sf
import torch
from torch import nn

import tag
from src.audio.frontend import decode_audio, log_mel, read_audio, trim_bounds
from src.config import AUDIO, AudioConfig
from src.errors import UserError
from src.models import MODELS
from src.predict.prediction_sets import geometric_mean
from src.predict.predictor import Predictor, load_fold_models, pad_for_tiles
from src.audio.streaming import (MaxPoolTimeline, StreamingLogMel, clip_top_db, stream_audio, stream_log_mel)
from src.tagging import (SegmentTracker, blend, find_audio_files, load_experiment, sliding_windows, tag_files,
                         top_k)
from src.tagging.chunked import stream_trim_bounds, tag_long_file, tile_padding
from tests.helpers import CLASSES, ROOT, SR, TINY_NET, make_experiment, sound

TINY = TINY_NET

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)


@pytest.fixture
def tiny_experiment(tmp_path):
    make_experiment(tmp_path, "tiny")
    return tmp_path


@pytest.fixture
def mixed_folder(tmp_path):
    """WAV 44.1k, FLAC 22.05k stereo, OGG 48k, MP3, a corrupt WAV and a text file, in nested folders."""
    root = tmp_path / "clips"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", sound(1.5, 44100, seed=0), 44100, subtype="PCM_16")
    sf.write(root / "sub" / "b.flac", sound(2.0, 22050, seed=1, channels=2), 22050)
    sf.write(root / "sub" / "deeper" / "c.ogg", sound(1.2, 48000, seed=2), 48000, format="OGG", subtype="VORBIS")
    sf.write(root / "sub" / "d.mp3", sound(1.0, 44100, seed=3), 44100, format="MP3")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)) * 4)
    (root / "notes.txt").write_text("not audio")
    return root


def expected_probs(data_dir, name, paths):
    """Independent route to files' probabilities: fold models -> Predictor -> geometric mean."""
    record = json.loads((data_dir / "experiments" / name / "config.json").read_text())
    models = load_fold_models(data_dir / "experiments" / name, "cpu")
    specs = [log_mel(read_audio(path)) for path in paths]
    predictor = Predictor([models[f] for f in sorted(models)], record["experiment"]["crop_size"],
                          record["experiment"]["test_tile_step"])  # tagging is test-time prediction
    return geometric_mean(predictor.predict(specs)[2])


# --- tagging files --------------------------------------------------------------------------------


def test_find_audio_files_recurses_and_reports_missing(mixed_folder):
    files, missing = find_audio_files([mixed_folder, mixed_folder / "a.wav", mixed_folder / "nope.wav"])
    names = sorted(p.name for p in files)
    assert names == ["a.wav", "b.flac", "broken.wav", "c.ogg", "d.mp3"]  # no .txt, a.wav only once
    assert [p.name for p in missing] == ["nope.wav"]


def test_tag_folder_mixed_formats_with_a_corrupt_file(tiny_experiment, mixed_folder, tmp_path, capsys):
    out_csv, out_json = tmp_path / "results.csv", tmp_path / "results.json"
    common = [str(mixed_folder), "--experiment", "tiny", "--data-dir", str(tiny_experiment), "--no-progress",
              "--top-k", "3"]
    assert tag.main(common + ["--out", str(out_csv)]) == 1  # one file failed
    printed = capsys.readouterr().out
    failures = printed.split("file(s) failed:")[1]
    assert "broken.wav" in failures and "cannot decode" in failures
    table = printed.split("file(s) failed:")[0]
    for name in ("a.wav", "b.flac", "c.ogg", "d.mp3"):
        assert name in table
    assert "broken.wav" not in table

    frame = pd.read_csv(out_csv, keep_default_na=False)
    assert list(frame.columns) == ["fname", "path", "labels"] + CLASSES
    assert sorted(frame["fname"]) == ["a.wav", "b.flac", "c.ogg", "d.mp3"]
    expected = expected_probs(tiny_experiment, "tiny", frame["path"])
    assert np.allclose(frame[CLASSES].to_numpy(float), expected, atol=1e-6)

    assert tag.main(common + ["--out", str(out_json)]) == 1
    items = json.loads(out_json.read_text())
    assert [item["path"] for item in items] == frame["path"].tolist()
    for item, (_, row) in zip(items, frame.iterrows()):
        assert list(item["probs"]) == CLASSES
        probs = np.array([item["probs"][c] for c in CLASSES])
        assert np.allclose(probs, row[CLASSES].to_numpy(float), atol=1e-6)  # CSV and JSON agree
        assert [t["label"] for t in item["top"]] == [label for label, _ in top_k(probs, CLASSES, 3)]
        assert [t["prob"] for t in item["top"]] == sorted(probs, reverse=True)[:3]


def test_exit_code_zero_when_everything_decodes(tiny_experiment, mixed_folder, capsys):
    argv = [str(mixed_folder / "a.wav"), str(mixed_folder / "sub"), "--experiment", "tiny",
            "--data-dir", str(tiny_experiment), "--no-progress", "--top-k", "2"]
    assert tag.main(argv) == 0
    printed = capsys.readouterr().out
    assert "failed" not in printed
    assert "prediction: 4 clips in " in printed and " clips/s " in printed  # every predictor counts its clips
    # top-2 rows per file, probabilities as printed match the top of the expected vector
    expected = expected_probs(tiny_experiment, "tiny", [mixed_folder / "a.wav"])[0]
    (label, prob), _ = top_k(expected, CLASSES, 2)
    assert any(line.split()[:4] == ["a.wav", "1", label, f"{prob:.3f}"] for line in printed.splitlines())


def test_tagging_computes_the_feature_caches_log_mels(mixed_folder):
    """Tagging and training see the same numbers: the cache's front end, not the librosa reference."""
    from src.audio.cache import compute_log_mels
    from src.tagging import files as tagging_files
    paths = [mixed_folder / "a.wav", mixed_folder / "sub" / "b.flac", mixed_folder / "sub" / "d.mp3"]
    cached = compute_log_mels(paths, workers=1, progress=False)
    tagged = [tagging_files.log_mel(tagging_files.read_audio(p)) for p in paths]
    for cache_spec, tag_spec in zip(cached, tagged):
        np.testing.assert_array_equal(cache_spec, tag_spec)


def test_blend_is_geometric_mean_over_folds_then_over_experiments(tmp_path, mixed_folder):
    """As blend.py: each experiment's folds first, then the experiments, each weighing the same (not one
    flat mean over all 2 + 3 fold models, which would weigh them by their fold counts)."""
    make_experiment(tmp_path, "one", seed=0)
    make_experiment(tmp_path, "two", model=("AuxSkipAttention", {"base_size": 4, "dropout": 0.4, "ratio": 2}),
                    seed=10, crop_size=32, tile_step=16, folds=3)
    outs = {}
    for names in (["one"], ["two"], ["one", "two"]):
        out = tmp_path / f"{'_'.join(names)}.json"
        argv = [str(mixed_folder / "a.wav"), "--data-dir", str(tmp_path), "--no-progress", "--out", str(out)]
        for name in names:
            argv += ["--experiment", name]
        assert tag.main(argv) == 0
        outs["+".join(names)] = np.array(list(json.loads(out.read_text())[0]["probs"].values()))
    assert np.allclose(outs["one+two"], np.sqrt(outs["one"] * outs["two"]), atol=1e-5)
    flat = outs["one"] ** 0.4 * outs["two"] ** 0.6  # the 5-model flat mean: not what blending means
    assert not np.allclose(outs["one+two"], flat, atol=1e-5)
    with pytest.raises(UserError, match="given more than once"):
        tag.main([str(mixed_folder / "a.wav"), "--data-dir", str(tmp_path), "--experiment", "one",
                  "--experiment", "one"])


def test_tagging_an_experiment_uses_its_test_step(tmp_path, mixed_folder):
    """tag.py --experiment tiles with the experiment's test_tile_step (128 for the 2019 members), not tile_step."""
    make_experiment(tmp_path, "steps", tile_step=32, test_tile_step=8)
    assert load_experiment(tmp_path, "steps", "cpu").members[0].step == 8
    assert load_experiment(tmp_path, "steps", "cpu", step=16).members[0].step == 16  # --step overrides
    out = tmp_path / "steps.json"
    path = mixed_folder / "sub" / "b.flac"  # 2 s: several tiles
    assert tag.main([str(path), "--experiment", "steps", "--data-dir", str(tmp_path), "--no-progress",
                     "--out", str(out)]) == 0
    probs = np.array(list(json.loads(out.read_text())[0]["probs"].values()))
    np.testing.assert_allclose(probs, expected_probs(tmp_path, "steps", [path])[0], atol=1e-5)
    # an experiment saved before test_tile_step existed tags with its tile_step
    config = tmp_path / "experiments" / "steps" / "config.json"
    record = json.loads(config.read_text())
    del record["experiment"]["test_tile_step"]
    config.write_text(json.dumps(record))
    assert load_experiment(tmp_path, "steps", "cpu").members[0].step == 32


def test_blend_refuses_different_class_lists(tmp_path, mixed_folder):
    make_experiment(tmp_path, "one")
    make_experiment(tmp_path, "other", classes=CLASSES[::-1])
    with pytest.raises(UserError, match="class lists differ"):
        tag.main([str(mixed_folder / "a.wav"), "--data-dir", str(tmp_path), "--experiment", "one",
                  "--experiment", "other"])


def test_missing_experiment_is_a_clear_error(tmp_path, mixed_folder):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        tag.main([str(mixed_folder / "a.wav"), "--data-dir", str(tmp_path), "--experiment", "absent"])


@pytest.mark.parametrize("options,named", [
    (["--window", "2"], "--window needs --timeline"),
    (["--hop", "0.5"], "--hop needs --timeline"),
    (["--out-dir", "somewhere"], "--out-dir needs --timeline"),
    # the default value given explicitly is still an option that would do nothing
    (["--out-dir", "timeline"], "--out-dir needs --timeline"),
    (["--threshold", "1.5"], "--threshold must be a probability in [0, 1]"),
    (["--window", "4", "--hop", "1"], "--window, --hop need --timeline"),
])
def test_timeline_options_without_timeline_are_refused(options, named, capsys):
    with pytest.raises(SystemExit) as info:
        tag.parse_args(["clip.wav", "--model", "model.pt"] + options)
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"{Path(sys.argv[0]).name}: error: ")  # argparse names the running program
    assert named in last


def test_timeline_options_take_their_defaults_with_timeline():
    args = tag.parse_args(["long.wav", "--model", "model.pt", "--timeline"])
    assert (args.window, args.hop, args.threshold, args.out_dir) == (4.0, 1.0, 0.5, "timeline")
    args = tag.parse_args(["long.wav", "--model", "model.pt", "--timeline", "--threshold", "0.8", "--hop", "2"])
    assert (args.window, args.hop, args.threshold, args.out_dir) == (4.0, 2.0, 0.8, "timeline")
    args = tag.parse_args(["clip.wav", "--model", "model.pt", "--chunk-seconds", "5"])  # clip mode uses this one
    assert not args.timeline and args.chunk_seconds == 5.0
    # clip mode: no --threshold = the models' recorded thresholds; given, one yes/no threshold for all classes
    assert tag.parse_args(["clip.wav", "--model", "model.pt"]).threshold is None
    assert tag.parse_args(["clip.wav", "--model", "model.pt", "--threshold", "0.3"]).threshold == 0.3


def test_tag_csv_is_scored_by_score_py(tiny_experiment, tmp_path):
    """tag.py --out x.csv (fname, path, classes) goes straight into score.py; the lwlrap it prints is
    sklearn's label-ranking average precision weighted by each clip's label count."""
    from sklearn.metrics import label_ranking_average_precision_score

    import score
    clips = tmp_path / "clips"
    clips.mkdir()
    labels = {"a.wav": "Bark", "b.wav": "Chime,Hum", "c.wav": "Rain", "d.wav": "Siren,Bark", "e.wav": "Hum"}
    for seed, name in enumerate(labels):
        sf.write(clips / name, sound(1.0 + 0.3 * seed, seed=seed), SR, subtype="PCM_16")
    labels_csv = tmp_path / "labels.csv"
    pd.DataFrame({"fname": list(labels), "labels": list(labels.values())}).to_csv(labels_csv, index=False)
    out = tmp_path / "x.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tagged = subprocess.run([sys.executable, "tag.py", str(clips), "--experiment", "tiny", "--data-dir",
                             str(tiny_experiment), "--device", "cpu", "--amp", "none", "--no-progress",
                             "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert tagged.returncode == 0, tagged.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["fname", "path", "labels"] + CLASSES  # tag.py's layout, path and tags included
    scored = subprocess.run([sys.executable, "score.py", str(out), str(labels_csv)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr

    truth = np.array([[c in labels[f].split(",") for c in CLASSES] for f in frame["fname"]], float)
    probs = frame[CLASSES].to_numpy(float)
    expected = label_ranking_average_precision_score(truth, probs, sample_weight=truth.sum(axis=1))
    assert f"test lwlrap {expected:.4f} " in scored.stdout, scored.stdout
    overall, _ = score.score(out, labels_csv)
    assert abs(overall - expected) < 1e-12


# --- yes/no tags -----------------------------------------------------------------------------------


def write_thresholds(data_dir, name, thresholds):
    """predictions/NAME/thresholds.json as predict_folds.py writes it."""
    from src.thresholds import thresholds_record
    folder = data_dir / "predictions" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thresholds.json").write_text(json.dumps(thresholds_record(CLASSES, thresholds)))


def test_tag_labels_follow_the_recorded_thresholds_or_the_given_one(tiny_experiment, mixed_folder, tmp_path,
                                                                    capsys):
    """The `labels` of tag.py's CSV and JSON are the classes at or above the experiment's recorded
    per-class thresholds, most probable first; --threshold X replaces them by X for every class; a
    bundle carries the thresholds."""
    import export
    files = [mixed_folder / "a.wav", mixed_folder / "sub" / "b.flac", mixed_folder / "sub" / "d.mp3"]
    expected = expected_probs(tiny_experiment, "tiny", files)
    # per class a threshold between the files' two lowest probabilities: some tags, not all
    ranked = np.sort(expected, axis=0)
    thresholds = (ranked[0] + ranked[1]) / 2
    write_thresholds(tiny_experiment, "tiny", thresholds)
    common = [*map(str, files), "--experiment", "tiny", "--data-dir", str(tiny_experiment), "--no-progress"]

    def labels_of(probs, cuts):
        """Each row's classes at or above their cut, most probable first, comma-separated."""
        out = []
        for row in probs:
            above = sorted((-p, c) for p, c, cut in zip(row, CLASSES, cuts) if p >= cut)
            out.append(",".join(c for _, c in above))
        return out

    out_csv, out_json = tmp_path / "tags.csv", tmp_path / "tags.json"
    assert tag.main(common + ["--out", str(out_csv)]) == 0
    assert "chosen on out-of-fold predictions" in capsys.readouterr().out
    frame = pd.read_csv(out_csv, keep_default_na=False)
    assert frame["labels"].tolist() == labels_of(expected, thresholds)
    assert sum(len(v.split(",")) for v in frame["labels"] if v) == 2 * len(CLASSES)  # each class: 2 of 3 files
    assert tag.main(common + ["--out", str(out_json)]) == 0
    assert [",".join(item["labels"]) for item in json.loads(out_json.read_text())] == frame["labels"].tolist()

    assert tag.main(common + ["--out", str(out_csv), "--threshold", "0.5"]) == 0
    assert "--threshold 0.5" in capsys.readouterr().out
    assert pd.read_csv(out_csv, keep_default_na=False)["labels"].tolist() == labels_of(expected, np.full(5, 0.5))

    bundle = tmp_path / "tiny.pt"
    export.main(["--experiment", "tiny", "--data-dir", str(tiny_experiment), "--out", str(bundle)])
    (tiny_experiment / "predictions" / "tiny" / "thresholds.json").unlink()  # the bundle's own copy is used
    assert tag.main([*map(str, files), "--model", str(bundle), "--no-progress", "--out", str(out_csv)]) == 0
    assert pd.read_csv(out_csv, keep_default_na=False)["labels"].tolist() == labels_of(expected, thresholds)
    assert tag.main(common + ["--out", str(out_csv)]) == 0
    assert "0.5 (these models have no recorded thresholds)" in capsys.readouterr().out


def test_score_reports_map_and_f1_like_scikit_learn(tmp_path):
    """score.py: mAP = mean over classes of sklearn's average precision; micro/macro F1 of the yes/no tags
    from --threshold, --thresholds FILE, or tag.py's `labels` column."""
    from sklearn.metrics import average_precision_score, f1_score

    import score
    rng = np.random.default_rng(0)
    fnames = [f"{i}.wav" for i in range(40)]
    truth = rng.random((40, 5)) < 0.3
    truth[0] = True  # every class has a positive
    truth[np.arange(40), np.arange(40) % 5] = True  # every clip has a label
    probs = np.clip(truth * 0.4 + rng.random((40, 5)) * 0.6, 0, 1)
    labels_csv, sub = tmp_path / "labels.csv", tmp_path / "sub.csv"
    pd.DataFrame({"fname": fnames, "labels": [",".join(c for c, t in zip(CLASSES, row) if t) for row in truth]}
                 ).to_csv(labels_csv, index=False)
    frame = pd.DataFrame(probs, columns=CLASSES)
    frame.insert(0, "fname", fnames)
    frame.to_csv(sub, index=False, float_format="%.9g")
    ap = [average_precision_score(truth[:, j], probs[:, j]) for j in range(5)]
    at = lambda cut: {avg: f1_score(truth, probs >= cut, average=avg) for avg in ("micro", "macro")}  # noqa
    # (every class here has a positive, so the macro mean over classes with positives is sklearn's plain one)

    scores = score.score_all(sub, labels_csv, threshold=0.6)
    assert scores["map"] == pytest.approx(np.mean(ap))
    assert list(scores["per_class"]["ap"].values()) == pytest.approx(ap)
    assert scores["f1"] == pytest.approx(at(0.6))
    cuts = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    from src.thresholds import thresholds_record
    (tmp_path / "thresholds.json").write_text(json.dumps(thresholds_record(CLASSES, cuts)))
    assert score.score_all(sub, labels_csv, thresholds_path=tmp_path / "thresholds.json")["f1"] == \
        pytest.approx(at(cuts))
    assert score.score_all(sub, labels_csv)["f1"] == pytest.approx(at(0.5))  # no tags given: 0.5
    # tag.py's CSV: its `labels` column is the tags
    frame.insert(1, "labels", [",".join(c for c, t in zip(CLASSES, row) if t) for row in probs >= cuts])
    frame.to_csv(sub, index=False, float_format="%.9g")
    assert score.score_all(sub, labels_csv)["f1"] == pytest.approx(at(cuts))
    assert score.main([str(sub), str(labels_csv), "--per-class"]) == 0


# --- long files in chunks (default mode) ---------------------------------------------------------


def test_long_files_in_chunks_equal_the_whole_file(tmp_path, tiny_experiment):
    """Streamed trim + dB range + tiles give the whole-file probabilities (silence trimmed at both ends,
    tiles padded at the end), for one member and for a blend of two with different tiles."""
    make_experiment(tiny_experiment, "wide", crop_size=96, tile_step=40, seed=5)
    audio = np.concatenate([np.zeros(SR // 3, np.float32), sound(6.3, seed=1), np.zeros(SR // 2, np.float32)])
    stereo = np.stack([audio, 0.5 * audio], axis=1)
    sf.write(tmp_path / "x.wav", audio, SR, subtype="FLOAT")
    sf.write(tmp_path / "y.flac", stereo[::2], SR // 2)  # resampled while streaming
    start, end, n = stream_trim_bounds(tmp_path / "x.wav", AUDIO, chunk_seconds=0.7)
    assert n == len(audio) and np.array_equal(audio[start:end], read_audio(tmp_path / "x.wav"))
    # a faint sound in the first and last 300 samples, just loud enough to count only when the padding
    # reflects it (the trim keeps everything with "reflect", starts at the loud part with "constant")
    edges = np.zeros(SR + 16000, np.float32)
    edges[8000:8000 + SR] = np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    edges[:300] = edges[-300:] = 0.0022 * np.sin(2 * np.pi * 3000 * np.arange(300) / SR)
    loud_edges = tmp_path / "edges.wav"
    sf.write(loud_edges, edges, SR, subtype="FLOAT")
    for mode in ("constant", "reflect"):
        config = dataclasses.replace(AUDIO, pad_mode=mode)
        for path in (tmp_path / "x.wav", loud_edges):
            assert stream_trim_bounds(path, config, chunk_seconds=0.3)[:2] == trim_bounds(decode_audio(path), config)
    for tagger in (load_experiment(tiny_experiment, "tiny", "cpu"),
                   blend([load_experiment(tiny_experiment, name, "cpu") for name in ("tiny", "wide")])):
        for path in (tmp_path / "x.wav", tmp_path / "y.flac"):
            (_, whole), = tag_files(tagger, [path], progress=False)[0]
            chunked = tag_long_file(tagger, path, batch_size=5, chunk_seconds=0.7, in_memory_seconds=0.5)
            assert np.abs(chunked - whole).max() < 1e-5
    # tag_files sends files over long_seconds down that path, keeping the input order
    tagger = load_experiment(tiny_experiment, "tiny", "cpu")
    sf.write(tmp_path / "short.wav", sound(1.0, seed=2), SR)
    paths = [tmp_path / "x.wav", tmp_path / "short.wav", tmp_path / "y.flac"]
    results, failures = tag_files(tagger, paths, progress=False, long_seconds=3.0, chunk_seconds=0.7)
    assert not failures and [p for p, _ in results] == paths
    whole, _ = tag_files(tagger, paths, progress=False)
    assert max(np.abs(a - b).max() for (_, a), (_, b) in zip(results, whole)) < 1e-5


def test_tile_padding_matches_pad_for_tiles():
    for frames, tile, step in ((10, 64, 32), (64, 64, 32), (65, 64, 32), (1000, 256, 64), (1000, 256, 128)):
        left, right = tile_padding(frames, tile, step)
        padded = pad_for_tiles(np.arange(1, frames + 1, dtype=np.float32)[None], tile, step)[0]
        assert np.array_equal(padded[left:left + frames], np.arange(1, frames + 1)) and left + frames + right \
            == len(padded)


# --- streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,rate,channels,kwargs", [
    ("stereo48k.flac", 48000, 2, {}),
    ("mono.mp3", 44100, 1, {"format": "MP3"}),
    ("stereo.ogg", 32000, 2, {"format": "OGG", "subtype": "VORBIS"}),
])
def test_stream_audio_equals_decode_audio(tmp_path, name, rate, channels, kwargs):
    path = tmp_path / name
    audio = sound(3.1, rate, seed=4, channels=channels)
    if name.endswith(".mp3"):
        # a pure tone: libsndfile's chunked MP3 reads glitch on it without the seek-back (MP3_SEEK_LEAD)
        audio = (0.2 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)
    sf.write(path, audio, rate, **kwargs)
    chunks = list(stream_audio(path, SR, chunk_seconds=0.37))
    assert len(chunks) > 5
    streamed = np.concatenate(chunks)
    whole = decode_audio(path)
    assert len(streamed) == len(whole)
    assert np.max(np.abs(streamed - whole)) < 1e-6


@pytest.mark.parametrize("rate,channels,chunk", [(48000, 2, 0.37), (44100, 1, 0.05), (22050, 1, 1.0)])
def test_streamed_log_mel_equals_whole_file(tmp_path, rate, channels, chunk):
    path = tmp_path / f"x{rate}.flac"
    sf.write(path, sound(4.3, rate, seed=5, channels=channels), rate)
    state = StreamingLogMel(AUDIO)
    blocks = list(stream_log_mel(stream_audio(path, SR, chunk), AUDIO, state))
    streamed = np.concatenate(blocks, axis=1)
    whole = log_mel(decode_audio(path))  # no trimming
    assert streamed.shape == whole.shape == (AUDIO.n_mels, 1 + state.n_samples // AUDIO.hop_length)
    # the stream cannot know the file's loudest frame, so top_db clipping is applied afterwards here
    clipped = clip_top_db(streamed, AUDIO.top_db)
    assert np.max(np.abs(clipped[:, 2:-2] - whole[:, 2:-2])) < 0.01
    assert np.max(np.abs(clipped - whole)) < 0.05  # edges too: same edge padding (AUDIO.pad_mode)


def test_streaming_log_mel_of_odd_pushes():
    audio = sound(1.0, seed=6)
    state = StreamingLogMel(AUDIO)
    pieces = [state.push(audio[a:b]) for a, b in [(0, 10), (10, 3000), (3000, 3001), (3001, 44100)]]
    streamed = np.concatenate(pieces + [state.finish()], axis=1)
    expected = log_mel(audio)
    assert streamed.shape == expected.shape
    assert np.allclose(clip_top_db(streamed), expected, atol=0.01)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize("seconds", [0.02, 0.0291, 0.03, 0.5, 0.31])  # 882, 1283, 1323, 22050, 13671 samples
def test_streaming_log_mel_pads_edges_like_the_whole_file_stft(pad_mode, seconds):
    """Reflection needs n_fft // 2 + 1 samples before the first frame: tiny pushes, tiny streams."""
    config = AudioConfig(pad_mode=pad_mode)
    audio = sound(seconds, seed=7)
    state = StreamingLogMel(config)
    pieces = [state.push(audio[a:a + 100]) for a in range(0, len(audio), 100)]
    streamed = np.concatenate(pieces + [state.finish()], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa: n_fft too large for the shortest signals
        expected = log_mel(audio, config)
    assert streamed.shape == expected.shape
    assert np.max(np.abs(clip_top_db(streamed, config.top_db) - expected)) < 0.01


def test_max_pool_timeline_bounded_and_exact():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(4, 1003)).astype(np.float32)
    overview = MaxPoolTimeline(4, capacity=16)
    start, widest = 0, 0
    for size in rng.integers(1, 60, 200):
        overview.add(frames[:, start:start + size])
        start += size
        widest = max(widest, overview.image().shape[1])
        if start >= frames.shape[1]:
            break
    assert overview.n_frames == 1003
    assert widest <= 16 + 1
    f = overview.factor
    assert f == 64  # halving happens once 16 full columns exist: 1003 // 32 >= 16, 1003 // 64 = 15 < 16
    full = frames.shape[1] // f
    reference = frames[:, :full * f].reshape(4, full, f).max(axis=2)
    image = overview.image()
    assert np.array_equal(image[:, :full], reference)
    assert np.array_equal(image[:, full], frames[:, full * f:].max(axis=1))  # the partial last column


def _streaming_peak(path):
    overview = MaxPoolTimeline(AUDIO.n_mels)
    tracemalloc.start()
    blocks = stream_log_mel(stream_audio(path, SR, chunk_seconds=2.0), AUDIO)

    def observed():
        for block in blocks:
            overview.add(block)
            yield block
    count = sum(1 for _ in sliding_windows(observed(), 256, 64))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, count


def test_streaming_memory_does_not_grow_with_length(tmp_path):
    rng = np.random.default_rng(0)
    peaks = {}
    for seconds in (15, 60):
        path = tmp_path / f"{seconds}.wav"
        with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as handle:
            for _ in range(seconds // 5):
                handle.write(rng.normal(0, 0.1, 5 * SR).astype(np.float32))
        peaks[seconds], count = _streaming_peak(path)
        assert count == -(-(1 + seconds * SR // AUDIO.hop_length - 256) // 64) + 1
    # 4x longer file, (almost) the same peak: bounded by the chunk size, not the file
    assert peaks[60] < 1.25 * peaks[15], peaks


# --- timeline -------------------------------------------------------------------------------------


def test_sliding_windows_cover_the_stream():
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(3, 500)).astype(np.float32)
    for window, hop in [(64, 16), (64, 64), (50, 80), (600, 10)]:
        cuts = np.sort(rng.choice(np.arange(1, 500), 12, replace=False))
        blocks = np.split(frames, cuts, axis=1)
        windows = list(sliding_windows(iter(blocks), window, hop))
        starts = [s for s, _ in windows]
        for start, spec in windows:
            assert np.array_equal(spec, frames[:, start:start + window])
        full = [s for s, w in windows if w.shape[1] == window]
        assert full == list(range(0, 500 - window + 1, hop))
        last_start, last = windows[-1]
        assert last_start + last.shape[1] == 500 or (hop > window and last_start + window <= 500)
        assert starts == sorted(starts)


def test_segment_tracker_merges_runs_by_hop_slots():
    tracker = SegmentTracker(["a", "b"], threshold=0.5, hop_seconds=1.0)
    # windows 4 s long every 1 s: centres 2, 3, 4, ...
    probs = [(0.9, 0.1), (0.8, 0.1), (0.2, 0.6), (0.1, 0.7), (0.6, 0.4), (0.1, 0.9)]
    for i, p in enumerate(probs):
        tracker.update(2.0 + i, np.array(p))
    segments = tracker.finish(duration=9.0)
    assert segments == [(0.0, 3.5, "a", 0.9),      # first slot reaches back to 0
                        (3.5, 5.5, "b", 0.7),
                        (5.5, 6.5, "a", 0.6),
                        (6.5, 9.0, "b", 0.9)]      # last slot runs on to the end


class BandEnergy(nn.Module):
    """Deterministic stand-in for a trained model: class k fires when more than half of the
    frames are louder than `levels[k]` dB on average over mel bins `bands[k]`."""

    def __init__(self, num_classes, bands, levels, slope=1.0):
        super().__init__()
        assert num_classes == len(bands) == len(levels)
        self.bands, self.levels = [tuple(b) for b in bands], list(levels)
        self.gain = nn.Parameter(torch.tensor(40.0))  # argus wants at least one parameter for its optimizer
        self.slope = slope

    def forward(self, x):
        db = x[:, 0] * 100.0  # channel 0 is the log-mel / 100
        logits = []
        for (lo, hi), level in zip(self.bands, self.levels):
            loud = torch.sigmoid(self.slope * (db[:, lo:hi].mean(dim=1) - level))  # (B, frames)
            logits.append(self.gain * (loud.mean(dim=1) - 0.5))
        return torch.stack(logits, dim=1)


BAND_MODEL = ("BandEnergy", {"bands": [[0, 20], [90, 115], [60, 70]], "levels": [-33.0, -20.0, -20.0]})


def known_events_wav(path, seconds=24):
    """Quiet noise; a 300 Hz tone (low mel band) 4-10 s; 8-12 kHz noise (high band) 13-19 s."""
    rng = np.random.default_rng(0)
    t = np.arange(seconds * SR) / SR
    x = rng.normal(0, 1e-3, len(t))
    low = (t >= 4) & (t < 10)
    x[low] += 0.3 * np.sin(2 * np.pi * 300 * t[low])
    b, a = scipy.signal.butter(4, [8000, 12000], btype="band", fs=SR)
    high = (t >= 13) & (t < 19)
    x[high] += scipy.signal.lfilter(b, a, rng.normal(0, 0.3, len(t)))[high]
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return path


def test_timeline_finds_known_segments(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODELS, "BandEnergy", BandEnergy)
    make_experiment(tmp_path, "bands", model=BAND_MODEL, classes=["low", "high", "never"], folds=1,
                    crop_size=128, tile_step=64)
    wav = known_events_wav(tmp_path / "events.wav")
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(300))
    out_dir = tmp_path / "timeline"
    window, hop = 2.0, 0.5
    rc = tag.main([str(wav), str(broken), "--timeline", "--experiment", "bands", "--data-dir", str(tmp_path),
                   "--window", str(window), "--hop", str(hop), "--out-dir", str(out_dir), "--chunk-seconds", "3.3",
                   "--no-progress"])
    assert rc == 1  # the broken file is reported, the good one still done
    printed = capsys.readouterr().out
    assert "broken.flac" in printed.split("file(s) failed:")[1]

    segments = pd.read_csv(out_dir / "events.segments.csv")
    assert list(segments.columns) == ["start", "end", "label", "peak"]
    assert segments["label"].tolist() == ["low", "high"]
    for (_, row), (start, end) in zip(segments.iterrows(), [(4.0, 10.0), (13.0, 19.0)]):
        assert abs(row["start"] - start) <= hop and abs(row["end"] - end) <= hop, row.to_dict()
        assert row["peak"] > 0.99

    windows = pd.read_csv(out_dir / "events.windows.csv")
    assert list(windows.columns) == ["start", "end", "low", "high", "never"]
    fps = AUDIO.frames_per_second
    total, w, h = 1 + 24 * SR // AUDIO.hop_length, round(window * fps), round(hop * fps)
    assert len(windows) == -(-(total - w) // h) + 1
    assert np.allclose(np.diff(windows["start"]), h / fps, atol=1e-3)
    assert windows["never"].max() < 0.01
    # the window centred in each event is sure, the ones far away are not
    centre = lambda t: windows.iloc[int(np.argmin(np.abs((windows["start"] + windows["end"]) / 2 - t)))]  # noqa
    assert centre(7.0)["low"] > 0.99 and centre(7.0)["high"] < 0.01
    assert centre(16.0)["high"] > 0.99 and centre(16.0)["low"] < 0.01
    assert centre(11.5)[["low", "high"]].max() < 0.01

    import matplotlib.image
    png = matplotlib.image.imread(out_dir / "events.timeline.png")
    assert png.ndim == 3 and png.shape[1] > 800
    assert "low" in printed and "high" in printed


def test_timeline_short_file_gives_one_window(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "BandEnergy", BandEnergy)
    make_experiment(tmp_path, "bands", model=BAND_MODEL, classes=["low", "high", "never"], folds=1, crop_size=128)
    path = tmp_path / "short.wav"
    sf.write(path, sound(0.7), SR)
    from src.tagging import tag_timeline
    tagger = load_experiment(tmp_path, "bands", "cpu")
    result = tag_timeline(tagger, path, tmp_path / "out" / "short", window=4.0, hop=1.0, progress=False)
    with open(result.windows_csv) as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 2 and result.n_windows == 1
    assert float(rows[1][0]) == 0.0 and abs(float(rows[1][1]) - 0.7) < 0.02
    assert abs(result.duration - 0.7) < 1e-9
