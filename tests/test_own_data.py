"""The README's own-data path, end to end on generated recordings: a folder of class sub-folders ->
make_dataset.py -> grouped folds -> train `small` -> predict_folds.py -> score.py -> export.py -> tag.py
and the Python API. Tiny settings (1 epoch of 64 samples, 2 folds), the commands as the README gives them."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import export
import make_dataset
import make_folds
import predict_folds
import score
import tag
import train_folds
from src.data.labels import read_train_csv, targets_matrix
from src.data.layout import read_classes, read_folds
from src.metrics import lwlrap
from src.tagging import AudioTagger
from tests.helpers import tone

SR = 22050
CLASSES = {"Hum": 110.0, "Whistle": 1760.0, "Beep": 660.0}


def recordings(root, speakers=4, takes=2):
    """root/<class>/spkK_takeN.wav: a tone per class, each speaker a little off key (one source each)."""
    for name, freq in CLASSES.items():
        for speaker in range(speakers):
            for take in range(takes):
                path = root / name / f"spk{speaker}_take{take}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                wave = tone(0.8, freq * (1 + 0.03 * speaker), sr=SR, amp=0.2 + 0.05 * take)
                sf.write(path, wave + np.random.default_rng(speaker * 7 + take).normal(0, 0.01, len(wave)), SR)
    return root


@pytest.mark.slow
def test_a_folder_of_recordings_to_tags_the_way_the_readme_says(tmp_path, capsys):
    rec, data = recordings(tmp_path / "myrecordings"), tmp_path / "mydata"
    # Import: a speaker is a source (--source-pattern), held out whole for the test set.
    make_dataset.main([str(rec), "--out", str(data), "--test-share", "0.25", "--source-pattern", r"(spk\d+)",
                       "--no-progress"])
    make_folds.main(["--data-dir", str(data), "--groups", "source", "--n-folds", "2"])
    folds = read_folds(data)
    assert folds.groupby("source")["fold"].nunique().max() == 1          # no source on both sides of a fold
    test_labels = read_train_csv(data / "test_labels.csv")
    assert not set(test_labels["source"]) & set(folds["source"])        # nor in training and test

    train_folds.main(["--experiment", "small", "--data-dir", str(data), "--epochs", "1",
                      "--set", "epoch_size=64", "--no-progress"])
    predict_folds.main(["--experiment", "small", "--data-dir", str(data)])
    probs = pd.read_csv(data / "predictions" / "small" / "test" / "probs.csv").set_index("fname")
    classes = read_classes(data)
    assert sorted(probs.index) == sorted(test_labels["fname"])

    # score.py prints the lwlrap of those predictions against the held-out labels
    capsys.readouterr()
    score.main([str(data / "predictions" / "small" / "test" / "probs.csv"), str(data / "test_labels.csv")])
    truth = targets_matrix(test_labels.set_index("fname").loc[probs.index, "labels"].tolist(), classes)
    expected = lwlrap(truth, probs[classes].to_numpy())
    assert f"{expected:.4f}" in capsys.readouterr().out

    # Tag new files with the exported bundle: tag.py's CSV and the Python API give the same numbers
    bundle, out = tmp_path / "small.pt", tmp_path / "tags.csv"
    export.main(["--experiment", "small", "--data-dir", str(data), "--out", str(bundle)])
    new = sorted((rec / "Whistle").glob("*.wav"))[:2]
    assert tag.main(["--model", str(bundle), *map(str, new), "--out", str(out), "--no-progress"]) in (0, None)
    tags = pd.read_csv(out).set_index("path")
    tagger = AudioTagger.from_bundle(bundle, device="cpu")
    api = tagger.tag([str(p) for p in new])
    assert tagger.classes == classes
    np.testing.assert_allclose(tags.loc[[str(p) for p in new], classes].to_numpy(), api[classes].to_numpy(),
                               atol=1e-6)
