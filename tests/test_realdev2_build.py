"""The parts of bench/realdev2/build.py that need no download: its reader of Qt resource files (.rcc, where
GCompris keeps its sounds), on files written here by the format's rules, and its check that no test clip
is a training clip at another gain."""
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf

from bench.realdev2.build import copies_across_split, read_rcc


def write_rcc(path, spec, version=2):
    """A minimal .rcc: `spec` maps a name to bytes (a file; (bytes, True) stores it zlib-compressed, as
    qCompress does: uncompressed size, then the zlib stream) or to a dict (a directory)."""
    names, data, nodes = bytearray(), bytearray(), [{"name": 0, "dir": spec}]

    def add_name(name):
        offset = len(names)
        names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))   # the hash is not read
        return offset

    i = 0
    while i < len(nodes):   # breadth-first, as rcc lays them out: a directory's children are consecutive
        node = nodes[i]
        if "dir" in node:
            node["first"], node["count"] = len(nodes), len(node["dir"])
            for name, value in sorted(node["dir"].items()):
                child = {"name": add_name(name)}
                if isinstance(value, dict):
                    child["dir"] = value
                else:
                    blob, compressed = value if isinstance(value, tuple) else (value, False)
                    stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compressed else blob
                    child["flags"], child["data"] = int(compressed), len(data)
                    data.extend(struct.pack(">I", len(stored)) + stored)
                nodes.append(child)
        i += 1
    tree = bytearray()
    for node in nodes:
        if "dir" in node:
            tree += struct.pack(">IHII", node["name"], 2, node["count"], node["first"])
        else:   # country and language 0
            tree += struct.pack(">IHHHI", node["name"], node["flags"], 0, 0, node["data"])
        if version >= 2:
            tree += bytes(8)   # last modified
    tree_at = 20
    data_at = tree_at + len(tree)
    names_at = data_at + len(data)
    path.write_bytes(b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at) + tree + data + names)


@pytest.mark.parametrize("version", [1, 2])
def test_read_rcc_finds_every_file_under_its_path_and_inflates_compressed_ones(tmp_path, version):
    wav, ogg, other = b"RIFF....WAVEfmt " * 3, b"OggS" + bytes(range(200)), b"x"
    write_rcc(tmp_path / "a.rcc", {"gcompris": {"src": {"resource": {"dog.ogg": (ogg, True), "drip.wav": wav}},
                                                "qmldir": other}}, version)
    assert read_rcc(tmp_path / "a.rcc") == {"gcompris/src/resource/dog.ogg": ogg,
                                            "gcompris/src/resource/drip.wav": wav,
                                            "gcompris/qmldir": other}


def test_read_rcc_refuses_a_file_that_is_not_a_resource_file(tmp_path):
    (tmp_path / "b.rcc").write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(ValueError, match="not a Qt resource file"):
        read_rcc(tmp_path / "b.rcc")


def test_copies_across_split_finds_a_test_clip_that_is_a_training_clip_at_another_gain(tmp_path):
    # GMRockKit's kick layers are one sample at five gains: the check that keeps such copies out of the test set
    rng = np.random.default_rng(0)
    hit, other = rng.normal(0, 0.1, 44100), rng.normal(0, 0.1, 44100)
    for split in ("train_curated", "train_noisy", "test"):
        (tmp_path / split).mkdir()
    sf.write(tmp_path / "train_curated" / "a.wav", hit, 44100, subtype="PCM_16")
    sf.write(tmp_path / "train_noisy" / "b.wav", other, 44100, subtype="PCM_16")
    sf.write(tmp_path / "test" / "t.wav", 0.5 * other[:20000], 44100, subtype="PCM_16")
    sf.write(tmp_path / "test" / "u.wav", rng.normal(0, 0.1, 44100), 44100, subtype="PCM_16")
    assert copies_across_split(tmp_path) == [("t.wav", "train_noisy/b.wav")]
