"""Named ensembles and the whole ensemble as one predictor (blend.py, tag.py, export.py, make_kernel.py)."""
import json

import numpy as np
import pandas as pd
import pytest

import blend
from src.ensembles import ENSEMBLES, check_ensemble, get_ensemble
from src.experiments import EXPERIMENTS
from src.predict.prediction_sets import predictions_dir
from src.stacking.experiments import FIRST_LEVEL, STACKING_EXPERIMENTS
from tests.test_blend import CLASSES, TEST, data_dir, random_probs, write_split  # noqa: F401 (fixture)


# ----------------------------------------------------------------------------- blend specs

def test_every_ensemble_names_known_experiments_and_valid_settings():
    for name, spec in ENSEMBLES.items():
        check_ensemble(spec, name)
        for member in spec["members"]:
            assert member in EXPERIMENTS or member in STACKING_EXPERIMENTS, (name, member)
    final = get_ensemble("ensemble_2019")
    assert final["members"][:7] == FIRST_LEVEL and final["weights"] is None and final["test_tile_step"] == 128
    assert [m for m in final["members"] if m in STACKING_EXPERIMENTS] == [
        "stacking_008_fcnet_43040", "stacking_008_fcnet_45041", "stacking_008_fcnet_50013"]
    for stack in final["members"][7:]:  # the stacking models read exactly the seven first-level members
        assert STACKING_EXPERIMENTS[stack]["inputs"] == FIRST_LEVEL
    assert get_ensemble("demo")["members"] == ["demo", "demo_skip", "stacking_demo"]
    get_ensemble("demo")["members"].clear()
    assert ENSEMBLES["demo"]["members"]  # a copy: the table itself is untouched
    with pytest.raises(ValueError, match="weights"):
        check_ensemble({"members": ["a", "b"], "weights": [1], "test_tile_step": None})


def write_demo_members(data_dir, test_step=32):
    frames = {}
    for seed, name in enumerate(get_ensemble("demo")["members"]):
        frames[name] = random_probs(seed, TEST, CLASSES)
        write_split(data_dir, name, "test", frames[name])
        level = {"level": 2} if name.startswith("stacking") else {"test_step": test_step}
        (predictions_dir(data_dir, name) / "val_lwlrap.json").write_text(json.dumps(level))
    return frames


def test_blend_ensemble_is_the_blend_of_its_members(data_dir):
    frames = write_demo_members(data_dir)
    by_name = blend.main(["--ensemble", "demo", "--data-dir", str(data_dir), "--out", str(data_dir / "e.csv")])
    by_list = blend.main(["--experiments", "demo", "demo_skip", "stacking_demo", "--data-dir", str(data_dir),
                          "--out", str(data_dir / "l.csv")])
    assert by_name["ensemble"] == "demo" and by_name["experiments"] == by_list["experiments"]
    a, b = pd.read_csv(data_dir / "e.csv"), pd.read_csv(data_dir / "l.csv")
    pd.testing.assert_frame_equal(a, b)
    expected = np.cbrt(frames["demo"] * frames["demo_skip"] * frames["stacking_demo"])
    np.testing.assert_allclose(a.set_index("fname").loc[TEST, CLASSES].to_numpy(), expected.to_numpy(), rtol=1e-5)


def test_blend_ensemble_refuses_predictions_with_another_test_step(data_dir, capsys):
    write_demo_members(data_dir, test_step=64)
    with pytest.raises(SystemExit, match=r"'demo' predicted its test clips with tiles every 64 frames.*uses 32"):
        blend.main(["--ensemble", "demo", "--data-dir", str(data_dir)])
    assert not (data_dir / "predictions" / "blend").exists()
    with pytest.raises(SystemExit):
        blend.main(["--ensemble", "demo", "--weights", "1", "1", "1", "--data-dir", str(data_dir)])
    assert "brings its own weights" in capsys.readouterr().err
