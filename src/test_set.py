"""The test clips of a data folder: sample_submission.csv order, or every audio file in test/."""
from pathlib import Path

import pandas as pd

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def test_fnames(data_dir) -> list:
    data_dir = Path(data_dir)
    sample = data_dir / "sample_submission.csv"
    if sample.is_file():
        return pd.read_csv(sample, usecols=["fname"])["fname"].tolist()
    folder = data_dir / "test"
    if not folder.is_dir():
        raise FileNotFoundError(f"{data_dir}: neither sample_submission.csv nor a test/ folder")
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
