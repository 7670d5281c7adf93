"""The experiment folder has one owner (src/experiment_folder.py): prediction and tagging reach it without
the training loop."""
import ast
from pathlib import Path

import pytest

from src.errors import InputFileNotFound
from src.experiment_folder import (best_checkpoint, experiments_dir, read_experiment_record, trained_folds,
                                   unfinished_folds)
from tests.helpers import ROOT, make_experiment

# What prediction may take from src/train/: the network's argus wrapper and reading its checkpoints.
ALLOWED_FROM_TRAIN = {"src.train.argus_model", "src.train.checkpoints"}


def imported_modules(path) -> set:
    tree = ast.parse(Path(path).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for folder in ("src/predict", "src/tagging")
                                        for p in (ROOT / folder).glob("*.py")) + ["predict_folds.py", "tag.py"])
def test_prediction_and_tagging_do_not_import_the_training_loop(path):
    from_train = {m for m in imported_modules(ROOT / path) if m.startswith("src.train")}
    assert from_train <= ALLOWED_FROM_TRAIN, (path, from_train - ALLOWED_FROM_TRAIN)


def test_the_folder_layout(tmp_path):
    exp_dir = make_experiment(tmp_path, "tiny", folds=3)
    assert exp_dir == experiments_dir(tmp_path, "tiny")
    assert trained_folds(exp_dir) == [0, 1, 2] and unfinished_folds(exp_dir) == [0, 1, 2]  # no done.json
    (exp_dir / "fold_1" / "done.json").write_text("{}")
    assert unfinished_folds(exp_dir) == [0, 2]
    (exp_dir / "fold_0" / "model-002-0.900000.pth").write_bytes(b"")
    assert best_checkpoint(exp_dir / "fold_0").name == "model-002-0.900000.pth"  # the best val_lwlrap
    record = read_experiment_record(exp_dir)
    assert record["classes"] and "tile_step" in record["experiment"]
    with pytest.raises(InputFileNotFound, match="config.json not found: train the experiment first"):
        read_experiment_record(experiments_dir(tmp_path, "absent"))
