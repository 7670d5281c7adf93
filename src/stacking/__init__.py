"""Second level (stacking): an MLP over the first-level experiments' out-of-fold tile predictions.

    fcnet.py        FCNet, registered in src.models.MODELS so FreesoundModel can build it
    datasets.py     stacked per-tile features and the tile-subset augmentation
    experiments.py  the named stacking configurations

`stacking_train.py` ties them to the first level's machinery (fit_fold, folds,
prediction sets). This package file imports nothing, so `src.models` can import
`src.stacking.fcnet` without a cycle.
"""
