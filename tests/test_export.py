"""export.py: single-file bundles (weights_only loadable, same predictions as the experiment) and TorchScript."""
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

import export
import tag
from src.train.checkpoints import load_checkpoint
from src.audio.deltas import stack_deltas
from src.errors import UserError
from src.tagging import read_bundle
from src.experiment_folder import best_checkpoint
from tests.helpers import CLASSES, SR, make_experiment, sound

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (tests/conftest.py)

AUX = ("AuxSkipAttention", {"base_size": 4, "dropout": 0.4, "ratio": 2, "kernel_size": 7})


def _plain_types_only(obj, where="bundle"):
    """Walk the bundle: only what torch's weights_only unpickler and JSON-minded readers expect."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, str), f"{where}: key {key!r}"
            _plain_types_only(value, f"{where}[{key!r}]")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _plain_types_only(value, f"{where}[{i}]")
    else:
        assert isinstance(obj, (torch.Tensor, str, int, float, bool)) or obj is None, f"{where}: {type(obj)}"


@pytest.fixture
def experiment(tmp_path):
    make_experiment(tmp_path, "tiny", model=AUX, folds=2, crop_size=32, tile_step=16, test_tile_step=8)
    return tmp_path


def test_bundle_is_weights_only_and_complete(experiment, tmp_path):
    out = tmp_path / "model.pt"
    assert export.main(["--experiment", "tiny", "--data-dir", str(experiment), "--out", str(out)]) == 0
    bundle = torch.load(out, map_location="cpu", weights_only=True)
    _plain_types_only(bundle)
    # the one bundle format: an ensemble of one first-level member, tagging in tag.py's precision
    assert bundle["format"] == "fsat2019-ensemble-bundle" and bundle["test_amp"] == "auto"
    assert bundle["ensemble"] == {"members": ["tiny"], "weights": None, "test_tile_step": None}
    assert bundle["stacking"] == [] and len(bundle["first_level"]) == 1
    part = bundle["first_level"][0]
    assert bundle["classes"] == CLASSES and part["folds"] == [0, 1]
    assert part["crop_size"] == 32 and part["tile_step"] == 8  # the test step: a bundle only tags
    assert part["model"] == {"name": "AuxSkipAttention", "kwargs": {**AUX[1], "num_classes": len(CLASSES)}}
    assert bundle["audio_config"]["hop_length"] == 690 and bundle["audio_config"]["n_mels"] == 128
    for fold, state_dict in zip(part["folds"], part["state_dicts"]):
        checkpoint = torch.load(best_checkpoint(experiment / "experiments" / "tiny" / f"fold_{fold}"),
                                weights_only=True)["nn_state_dict"]
        assert state_dict.keys() == checkpoint.keys()
        assert all(torch.equal(state_dict[k], checkpoint[k]) for k in checkpoint)
    assert not torch.equal(part["state_dicts"][0]["backbone.conv1.conv1.0.weight"],
                           part["state_dicts"][1]["backbone.conv1.conv1.0.weight"])


def old_tagger_bundle(bundle: dict) -> dict:
    """What export.py --experiment wrote before the one bundle format (a 'fsat2019-tagger-bundle', version 1)."""
    part = bundle["first_level"][0]
    return {"format": "fsat2019-tagger-bundle", "version": 1, "name": bundle["name"], "classes": bundle["classes"],
            "audio_config": bundle["audio_config"], "crop_size": part["crop_size"], "tile_step": part["tile_step"],
            "amp": part["amp"], "trained_precision": part["trained_precision"], "model": part["model"],
            "folds": part["folds"], "state_dicts": part["state_dicts"]}


def test_bundles_of_the_older_format_still_load_and_tag_the_same(experiment, tmp_path):
    from src.tagging import load_bundle, load_experiment
    out, old = tmp_path / "model.pt", tmp_path / "old.pt"
    export.main(["--experiment", "tiny", "--data-dir", str(experiment), "--out", str(out)])
    torch.save(old_tagger_bundle(torch.load(out, weights_only=True)), old)
    rng = np.random.default_rng(0)
    specs = [rng.uniform(-80, 0, (128, frames)).astype(np.float32) for frames in (20, 90)]
    expected = load_experiment(experiment, "tiny", "cpu").predict(specs)
    for path in (out, old):
        ensemble = load_bundle(path, "cpu")
        assert ensemble.amp == "auto" and ensemble.describe().startswith("tiny (2 fold models, tiles 32 every 8")
        np.testing.assert_allclose(ensemble.predict(specs), expected, atol=1e-6)


def test_tag_with_bundle_equals_tag_with_experiment(experiment, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "long.wav", sound(5.0, seed=1), SR)       # several tiles
    sf.write(clips / "short.flac", sound(0.6, 32000, seed=2), 32000)
    bundle = tmp_path / "model.pt"
    export.main(["--experiment", "tiny", "--data-dir", str(experiment), "--out", str(bundle)])
    argv = [str(clips), "--no-progress"]
    assert tag.main(argv + ["--experiment", "tiny", "--data-dir", str(experiment),
                            "--out", str(tmp_path / "exp.json")]) == 0
    shutil.rmtree(experiment / "experiments")  # the bundle alone must be enough
    assert tag.main(argv + ["--model", str(bundle), "--out", str(tmp_path / "bundle.json")]) == 0
    from_exp = json.loads((tmp_path / "exp.json").read_text())
    from_bundle = json.loads((tmp_path / "bundle.json").read_text())
    assert [i["path"] for i in from_exp] == [i["path"] for i in from_bundle]
    for a, b in zip(from_exp, from_bundle):
        assert np.allclose(list(a["probs"].values()), list(b["probs"].values()), atol=1e-6)
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]


def test_torchscript_matches_pytorch(experiment, tmp_path):
    out = tmp_path / "fold1.ts.pt"
    assert export.main(["--experiment", "tiny", "--data-dir", str(experiment), "--torchscript", str(out),
                        "--fold", "1"]) == 0
    extra = {"meta.json": ""}
    traced = torch.jit.load(str(out), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["meta.json"])
    assert meta["classes"] == CLASSES and meta["fold"] == 1 and meta["input"]["shape"][1:] == [128, 32]

    model = load_checkpoint(best_checkpoint(experiment / "experiments" / "tiny" / "fold_1"), device="cpu")
    logmel = torch.from_numpy(np.random.default_rng(0).uniform(-90, -10, (3, 128, 32)).astype(np.float32))
    expected = model.predict(stack_deltas(logmel))  # sigmoid of the main head
    with torch.no_grad():
        got = traced(logmel)
    assert got.shape == (3, len(CLASSES))
    assert torch.max(torch.abs(got - expected)).item() < 1e-4
    # a different fold is a different model: the export really picked fold 1
    fold0 = load_checkpoint(best_checkpoint(experiment / "experiments" / "tiny" / "fold_0"), device="cpu")
    assert torch.max(torch.abs(fold0.predict(stack_deltas(logmel)) - got)).item() > 1e-3


def test_export_errors(experiment, tmp_path):
    with pytest.raises(SystemExit):
        export.main(["--experiment", "tiny", "--data-dir", str(experiment)])  # nothing to do
    with pytest.raises(UserError, match="fold 7"):
        export.main(["--experiment", "tiny", "--data-dir", str(experiment), "--torchscript",
                     str(tmp_path / "x.pt"), "--fold", "7"])
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        export.main(["--experiment", "absent", "--data-dir", str(experiment), "--out", str(tmp_path / "x.pt")])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "not_a_bundle.pt")
    with pytest.raises(ValueError, match="not a model bundle written by export.py"):
        read_bundle(tmp_path / "not_a_bundle.pt")
