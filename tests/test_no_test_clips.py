"""A data set without test clips: the chain makes out-of-fold predictions only, and says so.

"No test clips" is a state of the data folder (src/data/layout.py): a sample_submission.csv
without rows, or none and no audio in test/ (or no test/ at all). predict_folds.py,
stacking_train.py and blend.py then do their out-of-fold work, print one line saying why, and
write no test outputs; a sample_submission.csv naming missing test files stays an error.
"""
import json
import shutil

import pandas as pd
import pytest

import blend
import export
import predict_folds
import stacking_train
import tag
import train_folds
from src.data.layout import no_test_clips_note, read_test_fnames
from src.errors import UserError
from tests.helpers import CLASSES, sound, torch_threads

TINY = ["--threads", "1", "--workers", "0", "--no-progress"]


# ----------------------------------------------------------------------------- the states of a data folder

def test_no_test_clips_is_a_state_with_its_reason(tmp_path):
    assert read_test_fnames(tmp_path) == []  # neither sample_submission.csv nor test/
    assert no_test_clips_note(tmp_path) == (f"no test clips in {tmp_path} (no sample_submission.csv and no test/ "
                                            f"folder): out-of-fold predictions only")
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "notes.txt").write_text("not audio")
    assert read_test_fnames(tmp_path) == []
    assert "(no sample_submission.csv and no audio files in test/)" in no_test_clips_note(tmp_path)
    (tmp_path / "test" / "b.wav").write_bytes(b"")
    (tmp_path / "test" / "a.flac").write_bytes(b"")
    assert read_test_fnames(tmp_path) == ["a.flac", "b.wav"]
    (tmp_path / "sample_submission.csv").write_text("fname," + ",".join(CLASSES) + "\n")  # a header, no rows
    assert read_test_fnames(tmp_path) == []  # the sample submission decides, when there is one
    assert "(sample_submission.csv has no rows)" in no_test_clips_note(tmp_path)


# ----------------------------------------------------------------------------- the chain

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A generated data set stripped of its test clips (no test/, a sample_submission.csv of its header only),
    with the demo experiment trained on it (2 folds, 1 tiny epoch)."""
    import make_folds
    from src.data.demo_data import generate_demo_dataset

    root = tmp_path_factory.mktemp("no_test") / "data"
    with torch_threads(1):
        generate_demo_dataset(root, seed=6, n_curated=24, n_noisy=6, n_test=4, progress=False)
        make_folds.main(["--data-dir", str(root), "--n-folds", "2"])
        shutil.rmtree(root / "test")
        (root / "test_labels.csv").unlink()
        sample = root / "sample_submission.csv"
        sample.write_text(sample.read_text().splitlines()[0] + "\n")
        train_folds.main(["--experiment", "demo", "--data-dir", str(root), "--epochs", "1", *TINY,
                          "--set", "epoch_size=32", "--set", "batch_size=16"])
        yield root


def run_chain(root, capsys):
    """predict -> stack -> blend; (predict_folds' report, blend's record, what each of the three printed)."""
    d = str(root)
    capsys.readouterr()
    report = predict_folds.main(["--experiment", "demo", "--data-dir", d, "--threads", "1", "--no-progress"])
    predicted = capsys.readouterr().out
    stacking_train.main(["--experiment", "stacking_demo", "--data-dir", d, *TINY, "--set", "inputs=['demo']",
                         "--set", "epochs=1", "--set", "epoch_size=64", "--set", "batch_size=16"])
    stacked = capsys.readouterr().out
    record = blend.main(["--experiments", "demo", "stacking_demo", "--data-dir", d])
    blended = capsys.readouterr().out
    return report, record, (predicted, stacked, blended)


def test_the_chain_makes_out_of_fold_predictions_only_and_says_so(chain, capsys):
    report, record, (predicted, stacked, blended) = run_chain(chain, capsys)
    note = f"no test clips in {chain} (sample_submission.csv has no rows)"
    assert f"demo: {note}: out-of-fold predictions only" in predicted.splitlines()
    assert f"stacking_demo: {note}: out-of-fold predictions only" in stacked.splitlines()
    assert f"{note}: no submission, the out-of-fold blend only" in blended.splitlines()
    predictions = chain / "predictions"
    for name in ("demo", "stacking_demo"):
        assert (predictions / name / "oof" / "probs.csv").is_file()
        assert not (predictions / name / "test").exists()
    assert report["test_step"] is None and report["precision"]["test"] is None and 0 < report["lwlrap"] <= 1
    assert json.loads((predictions / "demo" / "val_lwlrap.json").read_text())["test_step"] is None
    assert record["submission"] is None and record["n_test_clips"] == 0
    assert record["cv"]["n_clips"] == 24 and set(record["cv"]["experiments"]) == {"demo", "stacking_demo"}
    assert json.loads((predictions / "blend" / "blend.json").read_text()) == record
    assert not (predictions / "blend" / "submission.csv").exists()


def test_tag_and_export_work_as_before(chain, tmp_path, write_wav):
    clip = write_wav("clip.wav", sound(2.0, seed=1))
    with torch_threads(1):
        assert export.main(["--experiment", "demo", "--data-dir", str(chain), "--out", str(tmp_path / "m.pt")]) == 0
        assert tag.main([str(clip), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "tags.csv"),
                         "--no-progress"]) == 0
    assert pd.read_csv(tmp_path / "tags.csv")["fname"].tolist() == ["clip.wav"]


def test_a_sample_submission_naming_missing_test_files_is_still_an_error(chain, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(chain, data, ignore=shutil.ignore_patterns("predictions"))
    sample = data / "sample_submission.csv"
    header = sample.read_text().splitlines()[0]
    sample.write_text(header + "\nmissing.wav" + ",0" * (header.count(",")) + "\n")
    with torch_threads(1), pytest.raises(UserError, match="missing.wav"):
        predict_folds.main(["--experiment", "demo", "--data-dir", str(data), "--threads", "1", "--no-progress"])
    assert not (data / "predictions" / "demo").exists()  # no predictions (only its hidden lock file beside them)
