"""The test clips of a data folder: sample_submission.csv order, or every audio file in test/."""
from pathlib import Path

from src.errors import InputFileNotFound
from src.data.labels import check_fnames, read_csv_columns

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def test_fnames(data_dir) -> list:
    """Test fnames in submission order; names are checked like every CSV's (plain file names, no duplicates)."""
    data_dir = Path(data_dir)
    sample = data_dir / "sample_submission.csv"
    if sample.is_file():
        fnames = read_csv_columns(sample, ("fname",), what="sample submission")["fname"].tolist()
        check_fnames(fnames, sample)
        return fnames
    folder = data_dir / "test"
    if not folder.is_dir():
        raise InputFileNotFound(f"{data_dir}: neither sample_submission.csv nor a test/ folder")
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
