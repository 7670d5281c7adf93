"""Stage 5, prediction: tiles over whole clips, prediction sets on disk, blending.

    predictor.py        Predictor: sliding-window tiles batched across clips, fold models
    prediction_sets.py  prediction folders (clip CSV + per-tile npy), geometric mean
    blending.py         load, check, align and blend experiments' predictions
"""
