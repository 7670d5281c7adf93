"""Second level (stacking): an MLP over the first-level experiments' out-of-fold tile predictions.

    datasets.py     stacked per-tile features and the tile-subset augmentation
    experiments.py  the named stacking configurations

The model itself, FCNet, lives with the other networks (src/models/fcnet.py).
`stacking_train.py` ties these to the first level's machinery (fit_fold, folds,
prediction sets).
"""
