"""One safe checkpoint loader: weights_only=True always, even with torch's opt-out variable set."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.train.checkpoints import load_checkpoint, read_checkpoint
from src.errors import BadCheckpoint
from src.predict.predictor import load_fold_models
from src.experiment_folder import best_checkpoint
from tests.helpers import make_experiment

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Run in a fresh interpreter with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which makes a plain torch.load
# (argus.load_model's) unpickle anything. The payload's __reduce__ would create the marker file.
CRAFT = r"""
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (open, (sys.argv[2], "w"))
fold_dir = sys.argv[1]
path = os.path.join(fold_dir, "model-099-0.999000.pth")
torch.save({"model_name": "FreesoundModel", "params": Payload(), "nn_state_dict": {}}, path)
"""
PLAIN_LOAD = CRAFT + "torch.load(path)\n"
OUR_LOAD = CRAFT + r"""
from src.errors import BadCheckpoint
from src.predict.predictor import load_fold_models
try:
    load_fold_models(os.path.dirname(fold_dir), "cpu")
except BadCheckpoint as exc:
    print("REFUSED", exc)
"""


def test_crafted_pickle_is_refused_even_with_weights_only_disabled_by_env(tmp_path):
    exp_dir = make_experiment(tmp_path, "tiny", folds=1)
    marker = tmp_path / "pwned"
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

    def run(script):
        return subprocess.run([sys.executable, "-c", script, str(exp_dir / "fold_0"), str(marker)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    # the check is meaningful: with the variable set, torch's default load does run the payload
    probe = run(PLAIN_LOAD)
    assert marker.exists(), probe.stderr
    marker.unlink()

    result = run(OUR_LOAD)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "REFUSED" in result.stdout and "model-099-0.999000.pth" in result.stdout
    assert "weights_only=True" in result.stdout


def test_load_checkpoint_round_trip(tmp_path):
    exp_dir = make_experiment(tmp_path, "tiny", folds=2)
    path = best_checkpoint(exp_dir / "fold_1")
    model = load_checkpoint(path, "cpu")
    saved = torch.load(path, map_location="cpu", weights_only=True)["nn_state_dict"]
    for key, value in model.get_nn_module().state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not model.nn_module.training
    models = load_fold_models(exp_dir, "cpu")
    assert sorted(models) == [0, 1]
    assert torch.equal(models[1].get_nn_module().state_dict()[key], saved[key])


def test_broken_checkpoints_name_the_file(tmp_path):
    truncated = tmp_path / "model-001-0.5.pth"
    exp_dir = make_experiment(tmp_path, "tiny", folds=1)
    truncated.write_bytes(best_checkpoint(exp_dir / "fold_0").read_bytes()[:100])
    with pytest.raises(BadCheckpoint, match=r"model-001-0\.5\.pth: cannot load"):
        read_checkpoint(truncated)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pth")
    with pytest.raises(BadCheckpoint, match=r"plain\.pth: not an argus checkpoint"):
        load_checkpoint(tmp_path / "plain.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_checkpoint(tmp_path / "absent.pth")


def test_readme_checkpoint_snippet_loads_a_training_checkpoint(tmp_path):
    """The line README.md's "Outputs" gives for loading a checkpoint, executed as written."""
    readme = (ROOT / "README.md").read_text()
    paragraph = readme[readme.index("Checkpoints are plain argus checkpoints"):].split("\n\n")[0]
    snippet, = [code for code in re.findall(r"`([^`]+)`", paragraph) if "model = " in code]
    assert "weights_only" not in snippet and "argus.load_model" not in snippet  # the repo's loader, not argus's
    exp_dir = make_experiment(tmp_path, "tiny", folds=1)  # saved with model.save, as training saves them
    path = best_checkpoint(exp_dir / "fold_0")
    namespace = {"path": path}
    exec(snippet, namespace)
    model = namespace["model"]
    saved = torch.load(path, map_location="cpu", weights_only=True)["nn_state_dict"]
    state = model.get_nn_module().state_dict()
    assert sorted(state) == sorted(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    assert not model.nn_module.training
    spec = torch.randn(2, 3, 128, 64)  # the networks take 3 input channels
    with torch.no_grad():
        assert model.predict(spec).shape == (2, 5)
