"""Stage 2, data: labels, label corrections, training sources, datasets, the generated demo set.

    labels.py        train CSVs, label strings, multi-hot targets, corrections files
    corrections.py   which corrections file an experiment applies
    sources.py       curated / noisy / corrected-noisy sources of a data folder, with features
    datasets.py      clips -> (image, target, noisy_flag) samples and loaders
    test_set.py      the test clips of a data folder
    demo_data.py     the small procedural dataset in the Kaggle layout
"""
