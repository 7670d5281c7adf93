"""bench/gpu_check.py --dry-run: every stage of the GPU check runs end to end on the CPU (tiny sizes),
so the script a GPU session runs once cannot rot in between."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["wheels", "cuda_tests", "train", "throughput", "inference", "kernel_time", "throughput_channels_last",
          "throughput_compiled"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done, out


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_writes_figures(dry_run):
    done, out = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert list(report["stages"]) == STAGES
    env = report["environment"]
    assert env["dry_run"] and env["torch"] and env["device_name"] == "CPU" and env["cpu_count"] >= 1
    stages = report["stages"]
    status = {name: stage["status"] for name, stage in stages.items()}
    # Only what needs CUDA (or minutes of CPU) is skipped, and each skip says why.
    assert status == {**{name: "ok" for name in STAGES}, "wheels": "skipped", "throughput_compiled": "skipped"}
    assert "dry run" in stages["wheels"]["reason"] and "torch.compile" in stages["throughput_compiled"]["reason"]

    tests = stages["cuda_tests"]["figures"]  # collected and skipped without a GPU, none failed
    assert tests["failed"] == 0 and tests["passed"] == 0 and tests["skipped"] >= 20
    assert any("test_full_size_training_steps" in name for name in tests["seconds_per_test"])
    assert any("test_crop_boxes_distributed" in name for name in tests["seconds_per_test"])

    train = stages["train"]["figures"]
    assert train["experiment"] == "corr_noisy_007" and train["epochs"] == 2 == len(train["val_lwlrap"])
    assert all(0 < v <= 1 for v in train["val_lwlrap"]) and 0 < train["chance_lwlrap"] < 1
    assert "augment=device" in train["settings"] and train["samples_per_s"] > 0

    for name in ("throughput", "throughput_channels_last"):
        figures = stages[name]["figures"]
        assert figures["model_step_samples_per_s"] > 0 and figures["gflop_per_sample"] > 0
        assert figures["end_to_end_samples_per_s"] > 0 and 0 <= figures["device_idle_share"] < 1
    assert stages["throughput"]["figures"]["batch_path_samples_per_s"] > 0
    assert stages["throughput_channels_last"]["figures"]["channels_last"] is True

    inference = stages["inference"]["figures"]
    assert inference["outputs_equal"] and inference["batched_clips_per_s"] > 0 and inference["per_clip_clips_per_s"] > 0

    # The whole 2019 ensemble's shape (tiny networks) in fp32, projected to Kaggle's 2019 test set.
    kernel = stages["kernel_time"]["figures"]
    assert kernel["tiny_networks"] and kernel["precision"] == "fp32" and kernel["amp"] == "none"
    assert kernel["models"] == 50 and kernel["first_level_models"] == 35 and kernel["tile_step"] == 128
    assert kernel["clips_timed"] == 4 and kernel["clips_per_s"] > 0 and kernel["test_set_clips"] == 4481
    assert kernel["projected_s"] == pytest.approx(4481 / kernel["clips_per_s"])
    assert kernel["within_limit"] == (kernel["projected_s"] <= 3600 == kernel["limit_s"])
    assert all(g > 0 for g in kernel["gflop_per_tile"].values()) and len(kernel["gflop_per_tile"]) == 7
    estimates = kernel["kaggle_estimates"]  # flagged as estimates, scaled by peak fp32 (placeholder 1 TFLOP/s)
    assert estimates["estimate"] is True and estimates["measured_device_peak_source"] == "--device-tflops"
    assert set(estimates["devices"]) == {"P100 PCIe", "T4"}
    for card in estimates["devices"].values():
        assert card["projected_s"] == pytest.approx(kernel["projected_s"] * 1.0 / card["peak_fp32_tflops"])

    # The summary table names every stage; the log holds each stage's output.
    table = done.stdout[done.stdout.index("stage "):]
    assert all(name in table for name in STAGES)
    assert "clips (limit 60); ESTIMATE P100 PCIe ~" in table
    log = (out / "gpu_check.log").read_text()
    assert all(f"===== {name}" in log for name in STAGES)


@pytest.mark.slow
def test_a_failing_stage_is_recorded_and_the_next_one_runs(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--dry-run", "--out", str(tmp_path),
               "--stages", "train,throughput_compiled", "--train-set", "no_such_setting=1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1  # a failed stage fails the run...
    stages = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert list(stages) == ["wheels", "train", "throughput_compiled"]
    assert stages["train"]["status"] == "failed" and "no_such_setting" in stages["train"]["log_tail"]
    assert stages["throughput_compiled"]["status"] == "skipped"  # ...and the stages after it still ran


# ---------------------------------------------------------------- bench/kernel_time.py's parts, without running it

def kernel_time_module():
    sys.path.insert(0, str(ROOT / "bench"))
    import kernel_time
    return kernel_time


def test_generated_clip_lengths_follow_the_documented_test_set():
    kt = kernel_time_module()
    assert kt.TEST_SET_CLIPS == 4481 and kt.TEST_SET_MEAN_S == pytest.approx(12.9 * 3600 / 4481)
    seconds = kt.test_set_seconds(20000)
    assert seconds.mean() == pytest.approx(kt.TEST_SET_MEAN_S, rel=0.01)  # fitted to the documented mean
    assert seconds.min() == 0.5 and seconds.max() <= 30.0  # 0.3-30 s, the front end's 0.5 s minimum
    few = kt.test_set_seconds(4)  # quantiles: even a few clips span the distribution
    assert few.min() < 6 < 14 < few.max() and len(set(few)) == 4
    assert list(kt.frames_of([0.5, 10.0])) == [1 + 22050 // 690, 1 + 441000 // 690]


def test_peak_table_and_kaggle_estimates():
    kt = kernel_time_module()
    names = {"NVIDIA H100 80GB HBM3": "H100 SXM", "NVIDIA H100 PCIe": "H100 PCIe", "NVIDIA H200": "H200",
             "Tesla P100-PCIE-16GB": "P100 PCIe", "Tesla T4": "T4", "NVIDIA H100 NVL": None, "CPU": None,
             "NVIDIA A100-SXM4-80GB": None}
    assert {name: kt.peak_key(name) for name in names} == names
    est = kt.kaggle_estimates(600.0, 67.0, "PEAK_FP32_TFLOPS")
    assert est["estimate"] is True
    assert est["devices"]["P100 PCIe"]["projected_s"] == pytest.approx(600 * 67 / 9.3)
    assert est["devices"]["T4"]["projected_s"] == pytest.approx(600 * 67 / 8.1)
    assert est["devices"]["T4"]["within_limit"] is False and est["devices"]["P100 PCIe"]["within_limit"] is False
    assert kt.kaggle_estimates(600.0, None, None)["devices"] is None  # unknown peak: no made-up estimate


def test_kernel_time_ensemble_is_fp32_explicitly():
    """amp 'none' reaches the Predictor as a setting that forces fp32 on every model (not None, "each
    model's own precision") and every bundle part, so a change of the defaults cannot move the
    kernel-time stage off fp32."""
    sys.path.insert(0, str(ROOT / "bench"))
    from ensemble_cost import build_ensemble

    ensemble, size, _ = build_ensemble("cpu", 16, amp="none", first_level_kwargs={"base_size": 4, "ratio": 2},
                                       stacking_kwargs={"base_size": 16})
    assert ensemble.n_models == 50 and 0 < size < 100e6 and ensemble.amp == "none"  # tiny: the full one is 2.6 GB
    for member in ensemble.first_level:
        predictor = ensemble.predictor(member)
        assert predictor.amp == "none" and set(predictor.precisions) == {"fp32"}
    assert all(model.precision == "fp32" for part in ensemble.stacking for model in part.models)
    assert {member.step for member in ensemble.first_level} == {128}
    assert "fp32" in ensemble.describe()
