"""Named ensembles and the whole ensemble as one predictor (blend.py, tag.py, export.py, make_kernel.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import blend
from src.ensembles import ENSEMBLES, check_ensemble, get_ensemble
from src.experiments import EXPERIMENTS
from src.predict.prediction_sets import predictions_dir
from src.stacking.experiments import FIRST_LEVEL, STACKING_EXPERIMENTS
from tests.test_blend import CLASSES, TEST, data_dir, random_probs, write_split  # noqa: F401 (fixture)


# ----------------------------------------------------------------------------- blend specs

def test_every_ensemble_names_known_experiments_and_valid_settings():
    for name, spec in ENSEMBLES.items():
        check_ensemble(spec, name)
        for member in spec["members"]:
            assert member in EXPERIMENTS or member in STACKING_EXPERIMENTS, (name, member)
    final = get_ensemble("ensemble_2019")
    assert final["members"][:7] == FIRST_LEVEL and final["weights"] is None and final["test_tile_step"] == 128
    assert [m for m in final["members"] if m in STACKING_EXPERIMENTS] == [
        "stacking_008_fcnet_43040", "stacking_008_fcnet_45041", "stacking_008_fcnet_50013"]
    for stack in final["members"][7:]:  # the stacking models read exactly the seven first-level members
        assert STACKING_EXPERIMENTS[stack]["inputs"] == FIRST_LEVEL
    assert get_ensemble("demo")["members"] == ["demo", "demo_skip", "stacking_demo"]
    get_ensemble("demo")["members"].clear()
    assert ENSEMBLES["demo"]["members"]  # a copy: the table itself is untouched
    with pytest.raises(ValueError, match="weights"):
        check_ensemble({"members": ["a", "b"], "weights": [1], "test_tile_step": None})


def write_demo_members(data_dir, test_step=32):
    frames = {}
    for seed, name in enumerate(get_ensemble("demo")["members"]):
        frames[name] = random_probs(seed, TEST, CLASSES)
        write_split(data_dir, name, "test", frames[name])
        level = {"level": 2} if name.startswith("stacking") else {"test_step": test_step}
        (predictions_dir(data_dir, name) / "val_lwlrap.json").write_text(json.dumps(level))
    return frames


def test_blend_ensemble_is_the_blend_of_its_members(data_dir):
    frames = write_demo_members(data_dir)
    by_name = blend.main(["--ensemble", "demo", "--data-dir", str(data_dir), "--out", str(data_dir / "e.csv")])
    by_list = blend.main(["--experiments", "demo", "demo_skip", "stacking_demo", "--data-dir", str(data_dir),
                          "--out", str(data_dir / "l.csv")])
    assert by_name["ensemble"] == "demo" and by_name["experiments"] == by_list["experiments"]
    a, b = pd.read_csv(data_dir / "e.csv"), pd.read_csv(data_dir / "l.csv")
    pd.testing.assert_frame_equal(a, b)
    expected = np.cbrt(frames["demo"] * frames["demo_skip"] * frames["stacking_demo"])
    np.testing.assert_allclose(a.set_index("fname").loc[TEST, CLASSES].to_numpy(), expected.to_numpy(), rtol=1e-5)


def test_blend_ensemble_refuses_predictions_with_another_test_step(data_dir, capsys):
    write_demo_members(data_dir, test_step=64)
    with pytest.raises(SystemExit, match=r"'demo' predicted its test clips with tiles every 64 frames.*uses 32"):
        blend.main(["--ensemble", "demo", "--data-dir", str(data_dir)])
    # Refused before writing anything: only the hidden lock file of the run (src/locks.py) is there.
    assert [p.name for p in (data_dir / "predictions" / "blend").iterdir()] == [".submission.csv.lock"]
    with pytest.raises(SystemExit):
        blend.main(["--ensemble", "demo", "--weights", "1", "1", "1", "--data-dir", str(data_dir)])
    assert "brings its own weights" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the whole demo ensemble

TINY = ["--workers", "0", "--no-progress", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def demo_ensemble(tmp_path_factory):
    """The demo ensemble trained for one tiny epoch on 2 folds, predicted and blended on disk."""
    import make_folds
    import predict_folds
    import stacking_train
    import train_folds
    from src.data.demo_data import generate_demo_dataset

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ensemble") / "demo"
    generate_demo_dataset(root, seed=8, n_curated=24, n_noisy=8, n_test=10, progress=False)
    make_folds.main(["--data-dir", str(root), "--n-folds", "2"])
    for name in ("demo", "demo_skip"):
        train_folds.main(["--experiment", name, "--data-dir", str(root), "--epochs", "2", *TINY,
                          "--set", "epoch_size=192", "--set", "batch_size=16"])
        predict_folds.main(["--experiment", name, "--data-dir", str(root), "--device", "cpu", "--threads", "1",
                            "--amp", "none"])  # fp32 everywhere: bf16 CPUs would round differently per batch
    stacking_train.main(["--experiment", "stacking_demo", "--data-dir", str(root), *TINY,
                         "--set", "epochs=2", "--set", "epoch_size=1024", "--set", "batch_size=32"])
    blend.main(["--ensemble", "demo", "--data-dir", str(root)])
    yield root
    torch.set_num_threads(threads)


def submission_probs(path, fnames, classes) -> np.ndarray:
    return pd.read_csv(path).set_index("fname").loc[fnames, classes].to_numpy(np.float64)


@pytest.mark.slow  # trains the demo ensemble (tiny, 2 folds): an end-to-end run
def test_blend_tag_bundle_and_kernel_give_the_same_probabilities(demo_ensemble, tmp_path):
    import export
    import make_kernel
    import score
    import tag

    root, d = demo_ensemble, str(demo_ensemble)
    sample = pd.read_csv(root / "sample_submission.csv")
    fnames, classes = sample["fname"].tolist(), list(sample.columns[1:])
    on_disk = submission_probs(root / "predictions" / "blend" / "submission.csv", fnames, classes)

    assert tag.main(["--ensemble", "demo", "--data-dir", d, str(root / "test"), "--out", str(tmp_path / "tag.csv"),
                     "--device", "cpu", "--no-progress", "--amp", "none"]) == 0
    bundle = tmp_path / "ensemble.pt"
    assert export.main(["--ensemble", "demo", "--data-dir", d, "--out", str(bundle)]) == 0
    assert tag.main(["--model", str(bundle), str(root / "test"), "--out", str(tmp_path / "bundle.csv"),
                     "--device", "cpu", "--no-progress", "--amp", "none"]) == 0
    assert make_kernel.main(["--bundle", str(bundle), "--out", str(tmp_path / "kernel.py")]) == 0
    # The kernel on its own: another folder, no repo on its path, sample_submission.csv beside test/.
    env = {**os.environ, "FSAT_TEST_DIR": str(root / "test"), "FSAT_BUNDLE": str(bundle),
           "FSAT_SUBMISSION": str(tmp_path / "kaggle" / "submission.csv"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-I", str(tmp_path / "kernel.py"), "--amp", "none"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "clips/s" in done.stdout

    results = {"tag.py --ensemble": submission_probs(tmp_path / "tag.csv", fnames, classes),
               "tag.py --model bundle": submission_probs(tmp_path / "bundle.csv", fnames, classes),
               "kernel": submission_probs(tmp_path / "kaggle" / "submission.csv", fnames, classes)}
    kernel_sub = pd.read_csv(tmp_path / "kaggle" / "submission.csv")
    assert list(kernel_sub.columns) == list(sample.columns) and kernel_sub["fname"].tolist() == fnames
    # The blend is of trained-for-one-epoch models: not constant, so equality means something.
    assert on_disk.std(axis=0).max() > 1e-2
    expected, _ = score.score(root / "predictions" / "blend" / "submission.csv", root / "test_labels.csv")
    for what, probs in results.items():
        np.testing.assert_allclose(probs, on_disk, atol=1e-5, rtol=0, err_msg=what)
        frame = pd.DataFrame(probs, columns=classes)
        frame.insert(0, "fname", fnames)
        frame.to_csv(tmp_path / "scored.csv", index=False)
        assert score.score(tmp_path / "scored.csv", root / "test_labels.csv")[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow  # trains the demo ensemble (tiny, 2 folds): an end-to-end run
def test_ensemble_bundle_is_weights_only_and_holds_every_fold(demo_ensemble, tmp_path):
    import export
    from tests.test_export import _plain_types_only

    bundle_path = tmp_path / "ensemble.pt"
    export.main(["--ensemble", "demo", "--data-dir", str(demo_ensemble), "--out", str(bundle_path)])
    bundle = torch.load(bundle_path, map_location="cpu", weights_only=True)
    _plain_types_only(bundle)
    assert bundle["ensemble"] == get_ensemble("demo")
    assert [p["name"] for p in bundle["first_level"]] == ["demo", "demo_skip"]
    assert [(p["name"], p["inputs"]) for p in bundle["stacking"]] == [("stacking_demo", ["demo", "demo_skip"])]
    assert all(p["folds"] == [0, 1] and len(p["state_dicts"]) == 2 for p in bundle["first_level"] + bundle["stacking"])
    assert all(p["tile_step"] == 32 and p["crop_size"] == 64 for p in bundle["first_level"])
    assert bundle["stacking"][0]["model"]["kwargs"]["in_features"] == 2 * len(bundle["classes"])
    # yes/no thresholds: the rule (src/thresholds.py) on the members' blended out-of-fold predictions
    from src.data.corrections import read_curated
    from src.predict.blending import cv_scores, load_experiments
    from src.thresholds import choose_thresholds
    classes = bundle["classes"]
    labels = read_curated(demo_ensemble, classes, need_folds=False)
    blended, _ = cv_scores(load_experiments(demo_ensemble, get_ensemble("demo")["members"], "oof"), labels,
                           classes=classes)
    keep, truth = labels.targets(blended.fnames, classes)
    assert bundle["thresholds"]["classes"] == classes
    np.testing.assert_allclose(bundle["thresholds"]["thresholds"], choose_thresholds(truth, blended.probs[keep]))


def test_kernel_embeds_no_training_code():
    import make_kernel

    modules = make_kernel.module_closure()
    needed = {"src.predict.ensemble", "src.predict.predictor", "src.audio.fast_frontend", "src.models.fcnet"}
    assert needed <= set(modules)
    assert not [m for m in modules if m.startswith(("src.train", "src.tagging", "src.data"))]
    assert not any("import argus" in text for text in modules.values())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FSAT_FULL_ENSEMBLE") != "1",
                    reason="writes a 2.6 GB bundle and holds ~5 GB in memory: FSAT_FULL_ENSEMBLE=1 runs it")
def test_full_size_2019_ensemble_bundle_loads_weights_only_and_predicts(tmp_path):
    """ensemble_2019 at full size, random weights: 7 x 5 first-level networks and 3 x 5 stacking MLPs.

    FSAT_FULL_ENSEMBLE=1 pytest -m slow tests/test_ensemble.py -s   (prints the bundle's size and clips/s)
    """
    from src.config import AUDIO
    from src.predict.ensemble import load_ensemble_bundle
    from src.tagging.bundles import random_ensemble_bundle

    classes = [f"class_{i}" for i in range(80)]
    path = tmp_path / "ensemble_2019.pt"
    bundle = random_ensemble_bundle("ensemble_2019", classes)
    torch.save(bundle, path)
    del bundle
    print(f"full-size ensemble_2019 bundle: {path.stat().st_size / 1e6:.0f} MB")
    ensemble = load_ensemble_bundle(path, "cpu")  # torch.load(weights_only=True) inside
    assert [e.name for e in ensemble.first_level] == FIRST_LEVEL and len(ensemble.stacking) == 3
    assert ensemble.n_models == 50 and all(e.step == 128 and e.tile_size == 256 for e in ensemble.first_level)
    rng = np.random.default_rng(0)
    specs = [rng.uniform(-80, 0, (AUDIO.n_mels, frames)).astype(np.float32) for frames in (150, 420)]
    probs = ensemble.predict(specs)
    assert probs.shape == (2, 80) and np.isfinite(probs).all() and (probs > 0).all() and (probs < 1).all()
    # The blend is the geometric mean of its ten members, each computed from the same fold means.
    members = ensemble.member_probs(ensemble.fold_means(specs))
    expected = np.exp(np.mean([np.log(np.clip(members[n], 1e-7, 1)) for n in ensemble.blend], axis=0))
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    print(ensemble.throughput())


@pytest.mark.slow  # trains the demo ensemble (tiny, 2 folds): an end-to-end run
def test_a_long_file_in_chunks_equals_the_whole_file_through_the_ensemble(demo_ensemble):
    """tag_long_file hands the fold models' clip means to the ensemble (stacking and blend included)."""
    import soundfile as sf

    from src.audio.fast_frontend import log_mel, read_audio
    from src.tagging.chunked import tag_long_file
    from src.tagging.loading import load_ensemble

    ensemble = load_ensemble(demo_ensemble, "demo", "cpu")
    clips = sorted((demo_ensemble / "test").glob("*.wav"))[:3]
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in clips])
    path = demo_ensemble.parent / "joined.wav"
    sf.write(path, audio, 44100)
    whole = ensemble.predict([log_mel(read_audio(path, ensemble.audio_config), ensemble.audio_config)])[0]
    chunked = tag_long_file(ensemble, path, chunk_seconds=0.7, in_memory_seconds=0.5)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


# ----------------------------------------------------------------------------- precision of test predictions

def test_ensemble_test_predictions_default_to_fp32(monkeypatch, tmp_path):
    """The 2019 kernel made every test prediction in fp32: an ensemble (bundle, named, kernel) does too, even
    on a CPU where tag.py's 'auto' would pick bf16; --amp still chooses another precision."""
    import argparse

    from src.config import AUDIO
    from src.predict.ensemble import ensemble_from_bundle
    from src.tagging.bundles import random_ensemble_bundle
    from src.tagging.options import load_tagger
    from tests.helpers import make_experiment

    monkeypatch.setattr("src.runtime.cpu_flags", lambda *args, **kwargs: {"avx512f", "avx512_bf16"})
    bundle = random_ensemble_bundle("demo", [f"c{i}" for i in range(6)], AUDIO, n_folds=1)
    assert bundle["test_amp"] == "none"
    assert all(p["trained_precision"] == "untrained" for p in bundle["first_level"] + bundle["stacking"])
    assert ensemble_from_bundle(bundle, "cpu").precision == "fp32"
    assert ensemble_from_bundle(bundle, "cpu", amp="auto").precision == "bf16"
    older = {k: v for k, v in bundle.items() if k != "test_amp"}  # written before the key existed
    assert ensemble_from_bundle(older, "cpu").precision == "fp32"
    # tag.py: --amp left out keeps each predictor's default; given, it applies to either kind
    path = tmp_path / "ensemble.pt"
    torch.save(bundle, path)
    make_experiment(tmp_path, "tiny")

    def args(**kw):
        base = dict(experiment=[], model=[], ensemble=None, data_dir=str(tmp_path), device="cpu", step=None,
                    batch_size=16, amp=None)
        return argparse.Namespace(**{**base, **kw})

    assert load_tagger(args(model=[str(path)])).precision == "fp32"
    assert load_tagger(args(model=[str(path)], amp="bf16")).precision == "bf16"
    tagger = load_tagger(args(experiment=["tiny"]))
    assert tagger.amp == "auto" and tagger.predictor(tagger.members[0]).precision == "bf16"


def readme_block(after: str) -> list:
    """The command lines of the first ```bash block of README.md after the line containing `after`."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text[text.index(after):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow  # trains the demo ensemble (tiny, 2 folds): an end-to-end run
def test_readme_local_kernel_run_works_and_equals_the_blend(demo_ensemble):
    """The README's local kernel example, line by line (data/demo -> the trained demo ensemble): every
    command succeeds with its defaults (fp32 test predictions everywhere) and the kernel's submission
    equals the blend on disk."""
    from pathlib import Path

    lines = readme_block("To try the same route locally")
    assert len(lines) == 4 and lines[0].startswith("python export.py --ensemble demo")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    for line in lines:
        words = line.replace("data/demo", str(demo_ensemble)).split()
        assert words[0] == "python"
        done = subprocess.run([sys.executable, *words[1:]], cwd=root, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (line, done.stderr[-2000:])
    assert "lwlrap" in done.stdout  # score.py printed the score
    sample = pd.read_csv(demo_ensemble / "sample_submission.csv")
    fnames, classes = sample["fname"].tolist(), list(sample.columns[1:])
    np.testing.assert_allclose(submission_probs(demo_ensemble / "kernel_submission.csv", fnames, classes),
                               submission_probs(demo_ensemble / "predictions" / "blend" / "submission.csv",
                                                fnames, classes), atol=1e-5, rtol=0)
