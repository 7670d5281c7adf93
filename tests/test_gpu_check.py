"""bench/gpu_check.py --dry-run: every stage of the GPU check runs end to end on the CPU (tiny sizes),
so the script a GPU session runs once cannot rot in between."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["wheels", "cuda_tests", "train", "throughput", "inference", "throughput_channels_last",
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

    # The summary table names every stage; the log holds each stage's output.
    table = done.stdout[done.stdout.index("stage "):]
    assert all(name in table for name in STAGES)
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
