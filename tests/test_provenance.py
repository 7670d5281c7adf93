"""Provenance (src/provenance.py): train_folds.py --resume, predict_folds.py and stacking_train.py compare what
training recorded in config.json with what they are about to use; a change stops them, naming the recorded and
the current value, unless --accept-changed ITEM accepts it (never for the class list)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import predict_folds
import stacking_train
import train_folds
from src.config import AUDIO
from src.errors import BadSetting
from src.experiments import get_experiment
from src.provenance import fold_assignment
from src.train.fit import prepare_experiment_dir
from tests.helpers import demo_dataset, demo_fold0_args, torch_threads
from tests.test_stacking import run_args as stacking_args, write_fake_data

CLASSES = ["Bark", "Chime", "Hum"]


def record(**changes) -> dict:
    """A config.json record as train_folds.py writes it, with every recorded item."""
    experiment = json.loads(json.dumps(get_experiment("demo")))
    experiment["epochs"] = 2
    corrections = {"setting": "auto", "name": "corrections.json", "path": "/d/corrections.json", "sha256": "aaa1",
                   "entries": 3, "matched": 3, "relabel": 2, "remove": 1}
    return {"name": "demo", "experiment": experiment, "classes": list(CLASSES), "audio_config": AUDIO.to_dict(),
            "seed": 42, "corrections": {"curated": corrections, "noisy": None}, "fold_assignment": "f0ld5",
            **changes}


def changed(item) -> dict:
    """A record as the next run would make it, with `item` changed."""
    now = record()
    if item == "settings":
        now["experiment"]["epochs"] = 5
    elif item == "classes":
        now["classes"] = CLASSES[::-1]
    elif item == "audio":
        now["audio_config"]["n_mels"] = 64
    elif item == "corrections":
        now["corrections"]["curated"]["sha256"] = "bbb2"
    else:
        now["fold_assignment"] = "f0ld6"
    return now


# Each item, and what its refusal says: both values.
NAMED = {"settings": r"settings changed since training: epochs recorded 2, now 5",
         "classes": r"classes changed since training: the same 3 classes in another order: recorded "
                    r"\[\"Bark\", \"Chime\", \"Hum\"\], now \[\"Hum\", \"Chime\", \"Bark\"\]",
         "audio": r"audio changed since training: n_mels recorded 128, now 64",
         "corrections": r"corrections changed since training: curated corrections recorded /d/corrections.json "
                        r"\(sha256 aaa1\), now /d/corrections.json \(sha256 bbb2\)",
         "folds": r"folds changed since training: train_folds.csv's fname -> fold mapping recorded sha256 f0ld5, "
                  r"now f0ld6"}


def experiment_dir(tmp_path):
    exp = tmp_path / "experiments" / "demo"
    (exp / "fold_0").mkdir(parents=True)
    (exp / "config.json").write_text(json.dumps(record()))
    return exp


@pytest.mark.parametrize("item", sorted(NAMED))
def test_resume_refuses_a_changed_item_naming_both_values(tmp_path, item):
    exp = experiment_dir(tmp_path)
    config = (exp / "config.json").read_bytes()
    flag = "" if item == "classes" else rf".*or pass --accept-changed {item} to use them anyway"
    with pytest.raises(BadSetting, match=rf"config.json: {NAMED[item]}\. --resume would mix two recipes: use "
                                         rf"--overwrite or another --data-dir{flag}"):
        prepare_experiment_dir(exp, changed(item), [0], resume=True, overwrite=False)
    assert (exp / "config.json").read_bytes() == config


@pytest.mark.parametrize("item", ["settings", "audio", "corrections", "folds"])
def test_resume_accepts_a_change_named_by_the_flag_and_records_it(tmp_path, capsys, item):
    exp = experiment_dir(tmp_path)
    now = changed(item)
    assert prepare_experiment_dir(exp, now, [0], resume=True, overwrite=False, accepted=[item]) == [0]
    assert "accepted with --accept-changed " + item in capsys.readouterr().out
    config = json.loads((exp / "config.json").read_text())
    key = {"settings": "experiment", "audio": "audio_config", "corrections": "corrections",
           "folds": "fold_assignment"}[item]
    assert config[key] == now[key]  # the folds trained from now on use the current value...
    [change] = config["accepted_changes"]  # ...and the record says what changed, and for which folds
    assert (change["item"], change["recorded"], change["current"], change["folds"]) == \
        (item, record()[key], now[key], [0])


def test_the_flag_accepts_only_what_it_names(tmp_path):
    exp = experiment_dir(tmp_path)
    now = {**changed("folds"), "audio_config": changed("audio")["audio_config"]}
    with pytest.raises(BadSetting, match=r"audio changed .*n_mels recorded 128, now 64\. .*--accept-changed audio"):
        prepare_experiment_dir(exp, now, [0], resume=True, overwrite=False, accepted=["folds"])


def test_items_an_older_record_lacks_are_not_compared(tmp_path):
    exp = experiment_dir(tmp_path)
    old = record()
    for key in ("audio_config", "corrections", "fold_assignment"):
        del old[key]
    (exp / "config.json").write_text(json.dumps(old))
    assert prepare_experiment_dir(exp, changed("folds"), [0], resume=True, overwrite=False) == [0]


def test_fold_assignment_is_the_fname_to_fold_mapping_only(tmp_path):
    frame = pd.DataFrame({"fname": ["a.wav", "b.wav", "c.wav"], "labels": ["Bark", "Hum", "Chime"], "fold": [0, 1, 1]})
    frame.to_csv(tmp_path / "train_folds.csv", index=False)
    first = fold_assignment(tmp_path)
    frame.iloc[::-1].assign(labels="Bark").to_csv(tmp_path / "train_folds.csv", index=False)
    assert fold_assignment(tmp_path) == first  # row order and labels do not count
    frame.assign(fold=[0, 0, 1]).to_csv(tmp_path / "train_folds.csv", index=False)
    assert fold_assignment(tmp_path) != first  # a clip in another fold does


# ----------------------------------------------------------------------------- trained for real

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Fold 0 of the demo experiment, one tiny epoch."""
    with torch_threads(1):
        root = demo_dataset(tmp_path_factory.mktemp("provenance") / "data", seed=4, n_curated=30, n_noisy=6,
                            n_test=8)
        train_folds.main(demo_fold0_args(root, epochs=1, epoch_size=32))
        yield root


def copy_of(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "data")


def move_one_clip(data_dir):
    """Another fold assignment: the first clip of fold 0 moves to fold 1."""
    folds = pd.read_csv(data_dir / "train_folds.csv")
    folds.loc[folds.index[folds["fold"] == 0][0], "fold"] = 1
    folds.to_csv(data_dir / "train_folds.csv", index=False)


def test_training_records_the_fold_assignment(trained):
    config = json.loads((trained / "experiments" / "demo" / "config.json").read_text())
    assert config["fold_assignment"] == fold_assignment(trained)


def test_train_folds_resume_refuses_another_fold_assignment(trained, tmp_path):
    data = copy_of(trained, tmp_path)
    recorded = fold_assignment(data)
    move_one_clip(data)
    with torch_threads(1), pytest.raises(BadSetting, match=rf"folds changed since training: .*recorded sha256 "
                                                           rf"{recorded}, now {fold_assignment(data)}"):
        train_folds.main(demo_fold0_args(data, "--resume", epochs=1, epoch_size=32))


PREDICT = ["--experiment", "demo", "--step", "32", "--threads", "1", "--device", "cpu", "--no-progress", "--no-test"]


def change_for_predict(data, item) -> str:
    """Change `item` between training and prediction; returns what the refusal says about it."""
    config_path = data / "experiments" / "demo" / "config.json"
    config = json.loads(config_path.read_text())
    if item == "audio":  # as if trained with other audio settings (the features would differ)
        config["audio_config"]["n_mels"] = 64
        config_path.write_text(json.dumps(config))
        return r"audio changed since training: n_mels recorded 64, now 128"
    if item == "corrections":  # a corrections file appeared (or was edited) since
        (data / "corrections.json").write_text("{}\n")
        return (rf"corrections changed since training: curated corrections recorded none, now "
                rf"{data / 'corrections.json'} \(sha256 [0-9a-f]{{64}}\)")
    if item == "folds":
        recorded = fold_assignment(data)
        move_one_clip(data)
        return rf"folds changed since training: .*recorded sha256 {recorded}, now {fold_assignment(data)}"
    config["classes"] = config["classes"][::-1]
    config_path.write_text(json.dumps(config))
    return r"classes changed since training: the same \d+ classes in another order"


@pytest.mark.parametrize("item", ["audio", "corrections", "folds"])
def test_predict_folds_refuses_a_change_since_training_unless_accepted(trained, tmp_path, item):
    data = copy_of(trained, tmp_path)
    named = change_for_predict(data, item)
    with torch_threads(1):
        with pytest.raises(BadSetting, match=rf"{named}\. Train demo again \(train_folds.py --overwrite\), or "
                                             rf"pass --accept-changed {item} to use them anyway"):
            predict_folds.main(PREDICT + ["--data-dir", str(data)])
        assert not (data / "predictions" / "demo").exists()
        report = predict_folds.main(PREDICT + ["--data-dir", str(data), "--accept-changed", item])
    assert [change["item"] for change in report["accepted_changes"]] == [item]
    written = json.loads((data / "predictions" / "demo" / "val_lwlrap.json").read_text())
    assert written["accepted_changes"] == report["accepted_changes"]


def test_predict_folds_refuses_another_class_list_without_a_way_round(trained, tmp_path, capsys):
    data = copy_of(trained, tmp_path)
    named = change_for_predict(data, "classes")
    with torch_threads(1), pytest.raises(BadSetting, match=rf"{named}.*\. Train demo again \(train_folds.py "
                                                           rf"--overwrite\)$"):
        predict_folds.main(PREDICT + ["--data-dir", str(data)])
    with pytest.raises(SystemExit):  # not a choice of the flag
        predict_folds.main(PREDICT + ["--data-dir", str(data), "--accept-changed", "classes"])
    assert "invalid choice: 'classes'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- stacking

def test_stacking_refuses_inputs_trained_on_another_fold_assignment_unless_accepted(tmp_path, capsys):
    write_fake_data(tmp_path, np.random.default_rng(0))
    for name in ("demo", "demo_skip"):  # the inputs' experiment folders, as train_folds.py left them
        config = tmp_path / "experiments" / name / "config.json"
        config.parent.mkdir(parents=True)
        config.write_text(json.dumps({"name": name, "classes": list(pd.read_csv(tmp_path / "sample_submission.csv")
                                                                     .columns[1:]),
                                      "fold_assignment": "of-another-train_folds.csv"}))
    now = fold_assignment(tmp_path)
    fast = ["--folds", "0", "--no-test", "--set", "epochs=1", "--set", "epoch_size=64"]
    with pytest.raises(BadSetting, match=rf"experiments/demo/config.json: folds changed since training: .*recorded "
                                         rf"sha256 of-another-train_folds.csv, now {now}\. Train demo again and "
                                         rf"predict it \(predict_folds.py\), or pass --accept-changed folds"):
        stacking_train.main(stacking_args(tmp_path, *fast))
    assert not (tmp_path / "experiments" / "stacking_demo").exists()
    report = stacking_train.main(stacking_args(tmp_path, *fast, "--accept-changed", "folds"))
    assert report["folds"] == [0]
    assert json.loads((tmp_path / "experiments" / "stacking_demo" / "config.json").read_text())[
        "fold_assignment"] == now
