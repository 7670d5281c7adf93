"""A labelled test set held out by source: make_dataset.py --test-share.

Whole sources go to the test side, so no test clip comes from a recording, speaker or kit
that training heard, with every class's share of test clips near the asked share
(src.data.folds.split_groups, the greedy of the grouped folds). A class with a single
source stays in training: held out, it could be tested but never learnt.
"""
import numpy as np

from src.data.folds import split_groups
from src.data.labels import targets_matrix
from src.errors import BadSetting

TRAIN, TEST = 0, 1


def hold_out_sources(labels, sources, classes, share, seed=42) -> np.ndarray:
    """True for the rows that go to the test set. labels: one 'A,B' string per row; sources: one per row."""
    if not 0 < share < 1:
        raise BadSetting(f"--test-share {share}: must be between 0 and 1 (the share of the clips held out)")
    targets = targets_matrix(list(labels), classes)
    sources = np.asarray(sources, dtype=object).astype(str)
    sources_of_class = [set(sources[targets[:, c] > 0]) for c in range(len(classes))]
    pinned = {source: TRAIN for c, found in enumerate(sources_of_class) if len(found) < 2 for source in found}
    part = split_groups(targets, sources, [1 - share, share], seed, pinned=pinned)
    if not (part == TEST).any():
        n_sources = len(set(sources))
        raise BadSetting(f"--test-share {share}: no source could be held out ({n_sources} source(s), "
                         f"{len(pinned)} of them the only source of a class, which stays in training); "
                         f"give more sources or a larger share")
    return part == TEST
