"""predict_folds.py writes its prediction tree whole or not at all, and only from finished folds."""
import errno
from pathlib import Path

import pytest

import predict_folds
import train_folds
from src.errors import BadInput
from src.predict import prediction_sets as predictions
from tests.helpers import demo_dataset, demo_fold0_args, torch_threads, tree_bytes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Fold 0 of the demo experiment, one tiny epoch, and a first set of its predictions."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("predict") / "data", seed=4, n_curated=30, n_noisy=6, n_test=8)
        train_folds.main(demo_fold0_args(root, epochs=1, epoch_size=32))
        predict_folds.main(["--experiment", "demo", "--data-dir", str(root), "--step", "32", "--threads", "1",
                            "--device", "cpu"])
        yield root


def predict(root, *extra):
    return predict_folds.main(["--experiment", "demo", "--data-dir", str(root), "--threads", "1", "--device", "cpu",
                              *extra])


def test_a_failure_mid_write_leaves_the_previous_predictions_untouched(trained, monkeypatch):
    out = trained / "predictions" / "demo"
    before = tree_bytes(out)
    assert {"oof/probs.csv", "test/probs.csv", "test/fold_0/probs.csv", "val_lwlrap.json"} <= before.keys()
    write = predictions.write_prediction_set

    def disk_full_at_test(folder, pred):  # the out-of-fold set is written, then the disk is full
        if Path(folder).name == "test":
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        write(folder, pred)

    monkeypatch.setattr(predictions, "write_prediction_set", disk_full_at_test)
    with pytest.raises(OSError, match="No space left"):
        predict(trained, "--step", "16")  # another step: a mix would show in oof/ and val_lwlrap.json
    assert tree_bytes(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == [".demo.lock", "demo"]  # no staging folder left behind


def test_a_successful_run_replaces_the_whole_tree(trained):
    out = trained / "predictions" / "demo"
    stale = out / "test" / "fold_9" / "probs.csv"  # e.g. a fold model that no longer exists
    stale.parent.mkdir()
    stale.write_text("fname\n")
    report = predict(trained, "--step", "16", "--no-test")
    assert report["oof_step"] == 16 and not (out / "test").exists()
    assert sorted(p.name for p in out.iterdir()) == ["oof", "per_class_lwlrap.png", "thresholds.json",
                                                     "val_lwlrap.json"]


def test_thresholds_are_chosen_on_the_out_of_fold_predictions(trained):
    """thresholds.json beside the predictions holds the rule's thresholds for the out-of-fold
    probabilities against the experiment's labels, and the F1 they give there."""
    import json

    import numpy as np

    from src.data.corrections import read_curated
    from src.data.labels import targets_matrix
    from src.thresholds import choose_thresholds, f1_scores, tags
    predict(trained, "--step", "16", "--no-test")
    out = trained / "predictions" / "demo"
    oof = predictions.read_prediction_set(out / "oof")
    from src.experiments import complete_config, data_settings
    record = json.loads((trained / "experiments" / "demo" / "config.json").read_text())
    experiment = complete_config(record["experiment"])
    labels = read_curated(trained, oof.classes, data_settings(experiment)["curated_corrections"]).kept
    truth_of = dict(zip(labels["fname"], targets_matrix(labels["labels"].tolist(), oof.classes)))
    rows = [i for i, f in enumerate(oof.fnames) if f in truth_of]
    truth, probs = np.stack([truth_of[oof.fnames[i]] for i in rows]), oof.probs[rows]
    record = json.loads((out / "thresholds.json").read_text())
    assert record["classes"] == oof.classes
    expected = choose_thresholds(truth, probs)
    assert np.allclose(record["thresholds"], expected, atol=1e-6)  # probs.csv keeps 7 digits
    assert record["oof_f1"] == pytest.approx(f1_scores(truth, tags(probs, expected)), abs=1e-3)


def test_unfinished_folds_are_refused_unless_allowed(trained, capsys):
    done = trained / "experiments" / "demo" / "fold_0" / "done.json"
    saved = done.read_bytes()
    done.unlink()
    try:
        with pytest.raises(BadInput, match=r"fold\(s\) \[0\] have not finished"):
            predict(trained, "--step", "32")
        report = predict(trained, "--step", "32", "--no-test", "--allow-unfinished")
        assert report["folds"] == [0]
        assert "fold(s) [0]" in capsys.readouterr().out
    finally:
        done.write_bytes(saved)


def test_prediction_sets_keep_the_models_precision_unless_asked(trained, monkeypatch):
    """On a CPU with native bf16, tag.py's default is bf16; the prediction sets on disk (CV, stacking
    inputs, the blend) stay in the precision the models trained in (fp32 on CPU) unless --amp says so."""
    import numpy as np
    monkeypatch.setattr("src.runtime.cpu_flags", lambda *args, **kwargs: {"avx512f", "avx512_bf16"})
    fp32 = predict(trained, "--step", "16", "--no-test")
    oof_fp32 = predictions.read_prediction_set(trained / "predictions" / "demo" / "oof").probs
    bf16 = predict(trained, "--step", "16", "--no-test", "--amp", "auto")
    oof_bf16 = predictions.read_prediction_set(trained / "predictions" / "demo" / "oof").probs
    assert (fp32["precision"]["oof"], bf16["precision"]["oof"]) == ("fp32", "bf16")
    assert np.abs(oof_bf16 - oof_fp32).max() > 1e-6  # really another precision
    np.testing.assert_allclose(oof_bf16, oof_fp32, atol=2e-2)


def test_test_predictions_default_to_fp32_and_are_recorded(trained, monkeypatch):
    """The 2019 kernel made every test prediction in fp32: even where --amp auto makes the out-of-fold
    set in bf16, the test set stays fp32 unless --test-amp says otherwise; val_lwlrap.json says which."""
    import json
    import numpy as np
    monkeypatch.setattr("src.runtime.cpu_flags", lambda *args, **kwargs: {"avx512f", "avx512_bf16"})
    out = trained / "predictions" / "demo"
    report = predict(trained, "--step", "32", "--amp", "auto")
    assert report["precision"] == {"oof": "bf16", "test": "fp32"}
    assert json.loads((out / "val_lwlrap.json").read_text())["precision"] == {"oof": "bf16", "test": "fp32"}
    test_fp32 = predictions.read_prediction_set(out / "test").probs
    report = predict(trained, "--step", "32", "--test-amp", "bf16")
    assert report["precision"] == {"oof": "fp32", "test": "bf16"}
    test_bf16 = predictions.read_prediction_set(out / "test").probs
    assert np.abs(test_bf16 - test_fp32).max() > 1e-6


def test_cv_lwlrap_is_scored_on_both_label_sets(trained):
    """'lwlrap' on the experiment's corrected labels; 'lwlrap_given_labels' on train_curated.csv as given,
    over every out-of-fold clip (how the 2019 CV figure was scored): both recomputed here from the files."""
    import json
    import numpy as np
    import pandas as pd
    from src.data.labels import targets_matrix
    from src.metrics import lwlrap
    oof = predictions.read_prediction_set(trained / "predictions" / "demo" / "oof")
    curated = pd.read_csv(trained / "train_curated.csv").set_index("fname")
    # A corrections file (the demo experiment reads <data>/corrections.json): one clip removed, one relabelled.
    removed, relabelled = oof.fnames[0], oof.fnames[1]
    new_label = next(c for c in oof.classes if c not in curated.loc[relabelled, "labels"].split(","))
    corrections = trained / "corrections.json"
    corrections.write_text(json.dumps({removed: "remove", relabelled: new_label}))
    try:
        # Added after training: predict_folds refuses it unless accepted (src/provenance.py).
        report = predict(trained, "--step", "32", "--no-test", "--accept-changed", "corrections")
    finally:
        corrections.unlink()
    oof = predictions.read_prediction_set(trained / "predictions" / "demo" / "oof")
    given = targets_matrix(curated.loc[oof.fnames, "labels"].tolist(), oof.classes)
    assert report["clips_given_labels"] == len(oof.fnames)  # every clip, the removed one too
    assert report["lwlrap_given_labels"] == pytest.approx(lwlrap(given, oof.probs), abs=1e-12)
    corrected = given.copy()
    corrected[oof.fnames.index(relabelled)] = targets_matrix([new_label], oof.classes)[0]
    keep = [i for i, f in enumerate(oof.fnames) if f != removed]
    assert report["lwlrap"] == pytest.approx(lwlrap(corrected[keep], oof.probs[keep]), abs=1e-12)
    assert not np.isclose(report["lwlrap"], report["lwlrap_given_labels"])
    saved = json.loads((trained / "predictions" / "demo" / "val_lwlrap.json").read_text())
    assert saved["lwlrap_given_labels"] == report["lwlrap_given_labels"]
    assert "2019" in saved["labels"]["lwlrap_given_labels"]


def test_training_records_name_the_precision(trained):
    """config.json and done.json say what training ran in (src/precision.py; a CPU trains in fp32)."""
    import json
    exp_dir = trained / "experiments" / "demo"
    assert json.loads((exp_dir / "config.json").read_text())["precision"] == "fp32"
    assert json.loads((exp_dir / "fold_0" / "done.json").read_text())["precision"] == "fp32"
