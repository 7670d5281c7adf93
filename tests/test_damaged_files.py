"""Damaged files at every stage (issue 24, class 3): each script, run on a tiny trained demo experiment
with one of its input files damaged (truncated to half, replaced by random bytes, emptied, or with
wrong content), stops with one line naming the file and exit status 2: never a traceback, never a
result computed from the damage.

One module fixture trains fold 0 of the demo experiment for one tiny epoch and predicts with it;
every test works on a copy of that data dir.
"""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import blend
import make_kernel
import predict_folds
import stacking_train
import tag
import train_folds
from src.cli import run
from src.tagging.bundles import make_bundle
from tests.helpers import demo_dataset, demo_fold0_args, torch_threads, tree_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DAMAGES = ("truncated", "random bytes", "empty")


def damage(path, how, seed=0):
    """Damage the file at `path` in place: truncated to half, same length of random bytes, or emptied."""
    path = Path(path)
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, max(len(data), 64), dtype=np.uint8).tobytes())
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(how)


def user_error(capsys, main, argv, *fragments) -> str:
    """Run `main(argv)` under the scripts' error contract: exit 2, the error as the last stderr line,
    no traceback, every fragment in that line. Returns the line."""
    with pytest.raises(SystemExit) as info:
        run(main, argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert info.value.code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert lines and ": error: " in lines[-1], err[-3000:]
    for fragment in fragments:
        assert str(fragment) in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Fold 0 of the demo experiment (one tiny epoch, its feature caches and last_state.pth) and its
    predictions, also under the name demo_skip (stacking_demo's second input)."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("damaged") / "data", seed=5, n_curated=30, n_noisy=8, n_test=6)
        train_folds.main(demo_fold0_args(root, epochs=1, epoch_size=32))
        predict_folds.main(["--experiment", "demo", "--data-dir", str(root), "--step", "32", "--threads", "1",
                            "--device", "cpu"])
    shutil.copytree(root / "predictions" / "demo", root / "predictions" / "demo_skip")
    return root


@pytest.fixture
def data(trained, tmp_path):
    """A copy of the trained data dir that a test may damage."""
    return Path(shutil.copytree(trained, tmp_path / "data"))


def fold_dir(data):
    return data / "experiments" / "demo" / "fold_0"


def train_argv(data, *extra):
    return demo_fold0_args(data, *extra, epochs=1, epoch_size=32)


# ----------------------------------------------------------------------------- training inputs

@pytest.mark.parametrize("how", ["random bytes", "empty", "header only", "truncated"])
def test_unreadable_training_clip_is_refused_before_training(data, capsys, how):
    """The feature cache is built from every clip before the first epoch, so a clip that cannot be
    decoded stops the run there, named, and no fold is trained. A WAV cut in half used to decode as
    the shorter clip its bytes hold."""
    shutil.rmtree(data / "features")
    shutil.rmtree(data / "experiments")
    clip = data / "train_curated" / pd.read_csv(data / "train_folds.csv")["fname"][3]
    if how == "header only":
        clip.write_bytes(clip.read_bytes()[:20])
    else:
        damage(clip, how)
    user_error(capsys, train_folds.main, train_argv(data), clip, "could not be read")
    assert not (data / "features").exists() or not any((data / "features").glob("train_curated-*"))
    assert not (data / "experiments" / "demo" / "fold_0" / "log.csv").exists()


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", ["frames.npy", "offsets.npy", "index.json"])
def test_damaged_feature_cache_is_refused_naming_its_folder(data, capsys, name, how):
    folder = next((data / "features").glob("train_curated-*"))
    damage(folder / name, how)
    user_error(capsys, train_folds.main, train_argv(data, "--overwrite"), folder, "corrupt feature cache")


@pytest.mark.parametrize("content", ["fname,labels\na.wav,Bark\n", "bad fold", "empty fold"])
def test_damaged_train_folds_csv_is_refused(data, capsys, content):
    """A missing fold column, a fold that is not a number, or an empty fold cell (a NaN to pandas)."""
    path = data / "train_folds.csv"
    frame = pd.read_csv(path, dtype=str)
    if content == "bad fold":
        frame.loc[2, "fold"] = "x"
        expected = "line 4"
    elif content == "empty fold":
        frame.loc[5, "fold"] = ""
        expected = "line 7"
    else:
        frame = frame.drop(columns="fold")
        expected = "'fold'"
    frame.to_csv(path, index=False)
    user_error(capsys, train_folds.main, train_argv(data, "--overwrite"), path, expected)
    user_error(capsys, blend.main, ["--experiments", "demo", "--data-dir", str(data)], path, expected)


@pytest.mark.parametrize("how", DAMAGES + ("not an object", "no labels"))
def test_damaged_corrections_json_is_refused(data, capsys, how):
    """The data dir's own noisy_corrections.json (the demo experiment's 'auto'), a corrections file named
    by a setting (train_folds.py --set) or an option (blend.py --corrections)."""
    path = data / "noisy_corrections.json"
    if how == "not an object":
        path.write_text('["a.wav", "Bark"]')
    elif how == "no labels":
        path.write_text('{"a.wav": ""}')
    else:
        damage(path, how)
    user_error(capsys, train_folds.main, train_argv(data, "--overwrite"), path)

    named = data / "mine.json"
    shutil.copy(path, named)
    user_error(capsys, train_folds.main, train_argv(data, "--overwrite", "--set", f"curated_corrections={named}"),
               named)
    user_error(capsys, blend.main, ["--experiments", "demo", "--data-dir", str(data), "--corrections", str(named)],
               named)


def test_truncated_wav_is_refused_by_both_decoders_but_an_unknown_length_header_is_not(tmp_path):
    """The data chunk's size in a WAV header tells a cut file; 0 or 0xFFFFFFFF there is a streaming
    writer's 'length unknown', and such a file still decodes (to every sample present)."""
    import soundfile as sf

    from src.audio.frontend import AudioReadError, decode_audio
    from src.audio.streaming import stream_audio
    from tests.helpers import sound

    path = tmp_path / "clip.wav"
    sf.write(path, sound(1.0), 44100, subtype="PCM_16")
    whole = decode_audio(path)
    data = path.read_bytes()
    data_at = data.index(b"data")
    path.write_bytes(data[:len(data) - 1000])
    for decode in (decode_audio, lambda p: list(stream_audio(p))):
        with pytest.raises(AudioReadError, match="truncated WAV file"):
            decode(path)
    streamed = data[:data_at + 4] + (0xFFFFFFFF).to_bytes(4, "little") + data[data_at + 8:]
    path.write_bytes(streamed)
    assert np.array_equal(decode_audio(path), whole)


# ----------------------------------------------------------------------------- checkpoints and training state

@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_checkpoint_is_refused_by_predict_folds_and_tag(data, capsys, how):
    checkpoint = next(fold_dir(data).glob("model-*.pth"))
    damage(checkpoint, how)
    before = tree_bytes(data / "predictions")
    user_error(capsys, predict_folds.main, ["--experiment", "demo", "--data-dir", str(data), "--device", "cpu",
                                            "--threads", "1"], checkpoint)
    assert tree_bytes(data / "predictions") == before
    clip = next((data / "test").iterdir())
    user_error(capsys, tag.main, [str(clip), "--experiment", "demo", "--data-dir", str(data), "--device", "cpu"],
               checkpoint)


def test_missing_checkpoint_is_refused_by_predict_folds_and_tag(data, capsys):
    for checkpoint in fold_dir(data).glob("model-*.pth"):
        checkpoint.unlink()
    exp_dir = data / "experiments" / "demo"
    user_error(capsys, predict_folds.main, ["--experiment", "demo", "--data-dir", str(data), "--device", "cpu",
                                            "--threads", "1"], exp_dir)
    clip = next((data / "test").iterdir())
    user_error(capsys, tag.main, [str(clip), "--experiment", "demo", "--data-dir", str(data), "--device", "cpu"],
               exp_dir)


def test_a_stray_checkpoint_name_is_refused_and_a_stray_fold_folder_ignored(data, capsys):
    """model-best.pth (not training's model-EPOCH-SCORE.pth) beside the checkpoint used to be a ValueError
    traceback from parsing its score; a fold_0.bak folder one from parsing its fold number."""
    from src.experiment_folder import trained_folds

    shutil.copytree(fold_dir(data), fold_dir(data).with_name("fold_0.bak"))
    assert trained_folds(data / "experiments" / "demo") == [0]
    stray = fold_dir(data) / "model-best.pth"
    shutil.copy(next(fold_dir(data).glob("model-*.pth")), stray)
    user_error(capsys, predict_folds.main, ["--experiment", "demo", "--data-dir", str(data), "--device", "cpu",
                                            "--threads", "1"], stray, "model-EPOCH-SCORE.pth")


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_training_state_is_refused_on_resume(data, capsys, how):
    """train_folds.py --resume of an unfinished fold whose last_state.pth is damaged: named, with the way
    on; the fold's files are left as they were."""
    (fold_dir(data) / "done.json").unlink()  # the fold is unfinished: --resume continues it
    state = fold_dir(data) / "last_state.pth"
    damage(state, how)
    before = tree_bytes(fold_dir(data))
    user_error(capsys, train_folds.main, train_argv(data, "--resume"), state, "--overwrite")
    assert tree_bytes(fold_dir(data)) == before


@pytest.mark.parametrize("content", ["a model checkpoint", "weights of another network"])
def test_training_state_with_wrong_content_is_refused_on_resume(data, capsys, content):
    """A file torch reads that is not a training state (a checkpoint copied over it), or one whose network
    weights do not fit: refused naming the file, not a KeyError / RuntimeError once training started."""
    (fold_dir(data) / "done.json").unlink()
    state = fold_dir(data) / "last_state.pth"
    if content == "a model checkpoint":
        shutil.copy(next(fold_dir(data).glob("model-*.pth")), state)
        expected = "not a training state"
    else:
        saved = torch.load(state, weights_only=True)
        saved["model"][next(iter(saved["model"]))] = torch.zeros(2, 2)
        torch.save(saved, state)
        expected = "cannot be restored"
    user_error(capsys, train_folds.main, train_argv(data, "--resume"), state, expected, "--overwrite")


def test_damaged_experiment_record_is_refused_on_resume(data, capsys):
    config = data / "experiments" / "demo" / "config.json"
    damage(config, "truncated")
    user_error(capsys, train_folds.main, train_argv(data, "--resume"), config, "not valid JSON")


# ----------------------------------------------------------------------------- bundles

@pytest.fixture
def bundle(data):
    path = data / "demo.pt"
    torch.save(make_bundle(data, "demo"), path)
    return path


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_bundle_is_refused_by_tag_and_make_kernel(data, bundle, capsys, how):
    damage(bundle, how)
    clip = next((data / "test").iterdir())
    user_error(capsys, tag.main, [str(clip), "--model", str(bundle), "--device", "cpu"], bundle)
    out = data / "kernel.py"
    user_error(capsys, make_kernel.main, ["--bundle", str(bundle), "--out", str(out)], bundle)
    assert not out.exists()


def test_bundle_with_damaged_contents_is_refused_by_make_kernel(data, bundle, capsys):
    """A bundle torch can read whose weights do not fit its network: make_kernel.py used to write a kernel
    that would only fail on Kaggle."""
    content = torch.load(bundle, weights_only=True)
    state = content["first_level"][0]["state_dicts"][0]
    state[next(iter(state))] = torch.zeros(2, 2)
    torch.save(content, bundle)
    out = data / "kernel.py"
    user_error(capsys, make_kernel.main, ["--bundle", str(bundle), "--out", str(out)], bundle)
    assert not out.exists()
    clip = next((data / "test").iterdir())
    user_error(capsys, tag.main, [str(clip), "--model", str(bundle), "--device", "cpu"], bundle)


# ----------------------------------------------------------------------------- prediction trees

def damage_probs(path, how):
    """probs.csv damaged: truncated to half, a class column renamed, a NaN, a text cell, or a repeated
    column."""
    if how == "truncated":
        damage(path, how)
        return
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if how == "wrong columns":
        frame = frame.rename(columns={frame.columns[2]: "Not_a_class"})
    elif how == "NaN":
        frame.iloc[1, 1] = "nan"
    elif how == "text":
        frame.iloc[0, 2] = "high"
    elif how == "repeated column":
        frame.columns = [*frame.columns[:-1], frame.columns[1]]
    frame.to_csv(path, index=False)


PROBS_DAMAGES = ("truncated", "wrong columns", "NaN", "text", "repeated column")


@pytest.mark.parametrize("how", PROBS_DAMAGES)
@pytest.mark.parametrize("split", ["oof", "test"])
def test_damaged_predictions_are_refused_by_blend(data, capsys, split, how):
    path = data / "predictions" / "demo_skip" / split / "probs.csv"
    damage_probs(path, how)
    out = data / "blend.csv"
    user_error(capsys, blend.main, ["--experiments", "demo", "demo_skip", "--data-dir", str(data), "--out", str(out)],
               path if how != "wrong columns" else "Not_a_class")
    assert not out.exists()


@pytest.mark.parametrize("how", PROBS_DAMAGES)
def test_damaged_predictions_are_refused_by_stacking_train(data, capsys, how):
    path = data / "predictions" / "demo_skip" / "oof" / "probs.csv"
    damage_probs(path, how)
    user_error(capsys, stacking_train.main, ["--experiment", "stacking_demo", "--data-dir", str(data),
                                             "--device", "cpu", "--threads", "1", "--no-progress"],
               path if how != "wrong columns" else "demo_skip")
    assert not (data / "experiments" / "stacking_demo").exists()


@pytest.mark.parametrize("name", ["tiles.npy", "offsets.npy"])
@pytest.mark.parametrize("how", DAMAGES + ("missing",))
def test_damaged_tiles_are_refused_by_stacking_train(data, capsys, name, how):
    path = data / "predictions" / "demo_skip" / "oof" / name
    if how == "missing":
        path.unlink()
    else:
        damage(path, how)
    user_error(capsys, stacking_train.main, ["--experiment", "stacking_demo", "--data-dir", str(data),
                                             "--device", "cpu", "--threads", "1", "--no-progress"],
               path if (how, name) != ("missing", "tiles.npy") else "no tiles.npy")
    assert not (data / "experiments" / "stacking_demo").exists()
