"""Stage 2, data: the data folder, labels, label corrections, training sources, datasets, the demo set.

    layout.py        the Kaggle-layout folder: class list, test clips, sample submission, folds (one reader each)
    labels.py        train CSVs, label strings, multi-hot targets, corrections files
    corrections.py   which corrections file an experiment applies; the curated labels it sees (read_curated)
    sources.py       curated / noisy / corrected-noisy sources of a data folder, with features
    datasets.py      clips -> (image, target, noisy_flag) samples and loaders, for either augmentation path
    demo_data.py     the small procedural dataset in the Kaggle layout
"""
