"""One prepared check of the CUDA path, with its figures: what a session with a GPU runs once.

    bash bench/gpu_check.sh --out $OUT     # on a CUDA machine (budgeted at about 8 minutes: --budget 480)
    bash bench/gpu_check.sh --dry-run      # anywhere: tiny sizes on the CPU, every stage end to end

Stages, in order (each in its own process with its own timeout; a failed or timed-out stage is
recorded and the next one runs; the whole run stops starting stages when --budget is spent):

  wheels                    install the carried wheels of .whl/ into /tmp/site (the GPU image lacks
                            librosa, pytorch-argus, soundfile, ...; list: bench/gpu_wheels.txt)
  cuda_tests                pytest -m cuda: tests/test_cuda.py (bf16 and fp16 steps of the seven
                            full-size models, channels-last and compiled steps vs the plain one,
                            CUDA vs CPU prediction, NCCL + DDP, a torchrun launch of train_folds.py)
                            and tests/test_batch_augment.py's distribution tests drawn on CUDA
  train                     corr_noisy_007 at full size (AuxSkipAttention base 64, batch 128, 256-frame
                            crops, bf16, augment=device, 32,768-sample epochs) on generated data, fold 0,
                            a few epochs: val lwlrap per epoch against chance, seconds and samples/s
                            per epoch (train_folds.py end to end, loading included)
  throughput                bench/train_throughput.py: data pipelines, model step (TFLOP/s vs the bf16
                            peak), end to end with the device's idle share (time waiting for batches)
  inference                 bench/inference.py: batched vs one-clip-at-a-time clips/s, same outputs
  kernel_time               bench/kernel_time.py: the whole 2019 ensemble (7 experiments x 5 folds + 3
                            stacking MLPs x 5 folds, random full-size weights) in fp32 (the 2019 kernel's
                            precision; TF32 off) on clips whose lengths follow Kaggle's 2019 test set, tiles
                            every 128 frames: clips/s, the projected time for --test-set-clips clips
                            (default 4,481, the 2019 test set) against Kaggle's 1-hour limit, and an
                            ESTIMATE for Kaggle's P100 and T4 scaled by published peak fp32 FLOP/s
  throughput_channels_last  model step and end to end, channels-last
  throughput_compiled       model step and end to end, torch.compile

Output: <out>/gpu_check.json (device name, torch / CUDA / cuDNN versions, every stage's status,
seconds and figures) and <out>/gpu_check.log (every stage's full output); a summary table is
printed at the end. --out defaults to $OUT when set, else data/gpu_check/.

--dry-run: the same stages on the CPU in fp32 at tiny sizes (a network of base 4, 64-frame crops,
a few batches; the kernel-time stage: the same 50 networks at base 4, 4 clips, a placeholder peak of
1 TFLOP/s for the CPU so the estimate's arithmetic runs), so CI exercises the script end to end
(tests/test_gpu_check.py). Skipped there,
and said so in the JSON: the wheels (the venv has the packages), the CUDA tests' bodies (skipped by
pytest without a GPU) and the compiled throughput (torch.compile takes minutes on a CPU).

The training stage's settings are in TRAIN_SETTINGS below; --train-set KEY=VALUE adds more (as
train_folds.py --set), e.g. if the experiment's correction files change name:
    bash bench/gpu_check.sh --out $OUT --stages train --train-set corr_noisy_prob=0.42

Preparing a GPU session (the GPU machine cannot reach a package index):
    bash bench/fetch_gpu_wheels.sh          # here: the wheels of bench/gpu_wheels.txt into .whl/ (~2.3 MB)
then one call of the device tool's `run`, from the checkout the session was started in (the tool
sends that checkout, so .whl/ must be there), with carry [".whl"] and timeout_s 540:
    PYTHONUNBUFFERED=1 bash bench/gpu_check.sh --out $OUT
and, if a stage failed and was fixed, rerun only that stage: ... --stages cuda_tests (the wheels
stage always runs).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.cli import run  # noqa: E402
from src.errors import BadSetting  # noqa: E402
WHEELS_DIR, SITE = ROOT / ".whl", Path("/tmp/site")

# (name, timeout in seconds on a GPU, timeout in a dry run); run in this order.
STAGES = [
    ("wheels", 120, 60),
    ("cuda_tests", 240, 120),
    ("train", 210, 180),
    ("throughput", 120, 120),
    ("inference", 90, 90),
    ("kernel_time", 240, 120),
    ("throughput_channels_last", 90, 120),
    ("throughput_compiled", 200, 120),
]
# The training check: corr_noisy_007 as named, on generated data (12 classes). The shipped noisy
# corrections name Kaggle clips, so it takes the generated data's own noisy_corrections.json
# (noisy_corrections=auto): the corrected-noisy stream is then drawn as in the recipe.
TRAIN_EXPERIMENT, TRAIN_EPOCHS = "corr_noisy_007", 3
TRAIN_SETTINGS = ["augment=device", "amp=bf16", "noisy_corrections=auto"]
# The dry run's 64-frame crops also take the resized-crop ratio scaled to them (stage_train: CROP_64_RATIO).
TRAIN_DRY = ["model.base_size=4", "model.ratio=2", "crop_size=64", "batch_size=16", "val_batch_size=16",
             "epoch_size=64"]
DEMO_COUNTS = {"full": dict(n_curated=300, n_noisy=300, n_test=10), "dry": dict(n_curated=30, n_noisy=20, n_test=3)}
TINY_THROUGHPUT = ["--device", "cpu", "--set", "model.base_size=4", "--set", "model.ratio=2", "--set", "crop_size=64",
                   "--batch-size", "8", "--model-batch-size", "8", "--clips", "8", "--iters", "2",
                   "--model-iters", "2", "--workers", "0", "--end-to-end", "--threads", "1"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="output folder (default: $OUT when set, else data/gpu_check)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole run; no stage starts after it and each stage's timeout is "
                             "cut to what is left (default 480)")
    parser.add_argument("--stages", help=f"comma-separated subset of: {', '.join(s[0] for s in STAGES)}")
    parser.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for the training stage's train_folds.py run (repeatable)")
    parser.add_argument("--train-epochs", type=int, help=f"epochs of the training stage (default {TRAIN_EPOCHS})")
    parser.add_argument("--test-set-clips", type=int,
                        help="test-set size the kernel-time stage projects to (default 4481: Kaggle's 2019 test set)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)       # internal: run one stage in this process
    parser.add_argument("--stage-json", help=argparse.SUPPRESS)  # internal: where that stage writes figures
    parser.add_argument("--work", help=argparse.SUPPRESS)        # internal: scratch folder
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the stages (each runs in a child process)

def stage_cuda_tests(args, work: Path) -> dict:
    import xml.etree.ElementTree as ET

    import pytest

    report = work / "cuda_tests.xml"
    code = pytest.main(["-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider", f"--junitxml={report}",
                        str(ROOT / "tests" / "test_cuda.py"), str(ROOT / "tests" / "test_batch_augment.py")])
    cases = ET.parse(report).getroot().iter("testcase")
    results = {"passed": 0, "failed": 0, "skipped": 0}
    failures, durations = [], {}
    for case in cases:
        name = case.get("name")
        durations[name] = round(float(case.get("time", 0)), 2)
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            results["failed"] += 1
            failures.append({"test": f"{case.get('classname')}::{name}", "message": (problem.get("message") or "")[:500]})
        elif case.find("skipped") is not None:
            results["skipped"] += 1
        else:
            results["passed"] += 1
    figures = {**results, "pytest_exit_code": int(code), "failures": failures, "seconds_per_test": durations}
    if results["failed"] or int(code) != 0:
        raise StageFailed(f"{results['failed']} CUDA test(s) failed (pytest exit {int(code)})", figures)
    if not results["passed"]:
        figures["note"] = "every CUDA test skipped: torch sees no GPU"
    return figures


def stage_train(args, work: Path) -> dict:
    import numpy as np
    import pandas as pd

    import make_folds
    import train_folds
    from src.data.layout import read_classes
    from src.data.demo_data import generate_demo_dataset
    from src.data.labels import targets_matrix
    from src.experiments import CROP_64_RATIO
    from src.metrics import lwlrap

    dry = args.dry_run
    data = work / "demo"
    start = time.perf_counter()
    generate_demo_dataset(data, seed=0, overwrite=True, progress=False, **DEMO_COUNTS["dry" if dry else "full"])
    make_folds.main(["--data-dir", str(data)])
    generate_s = time.perf_counter() - start
    epochs = args.train_epochs or (2 if dry else TRAIN_EPOCHS)
    dry_settings = TRAIN_DRY + [f"transforms.resize_ratio={CROP_64_RATIO}"]
    settings = TRAIN_SETTINGS + (dry_settings if dry else []) + args.train_set
    argv = ["--experiment", TRAIN_EXPERIMENT, "--data-dir", str(data), "--folds", "0", "--epochs", str(epochs),
            "--device", "cpu" if dry else "cuda", "--overwrite", "--no-progress"]
    argv += ["--workers", "0", "--threads", "1"] if dry else []
    for setting in settings:
        argv += ["--set", setting]
    start = time.perf_counter()
    summary = train_folds.main(argv)[0]
    train_s = time.perf_counter() - start

    exp_dir = data / "experiments" / TRAIN_EXPERIMENT
    experiment = json.loads((exp_dir / "config.json").read_text())["experiment"]
    log = pd.read_csv(exp_dir / "fold_0" / "log.csv")
    ends = pd.to_datetime(log["time"])
    # Epoch k (k >= 1) lasted from the end of epoch k-1 to its own end: training plus validation.
    epoch_s = [float(s) for s in ends.diff().dt.total_seconds().iloc[1:]]
    folds = pd.read_csv(data / "train_folds.csv")
    truth = targets_matrix(folds.loc[folds["fold"] == 0, "labels"].tolist(), read_classes(data))
    rng = np.random.default_rng(0)
    chance = float(np.mean([lwlrap(truth, rng.random(truth.shape)) for _ in range(50)]))
    val = [float(v) for v in log["val_lwlrap"]]
    figures = {
        "experiment": TRAIN_EXPERIMENT, "settings": settings, "epochs": len(val), "epoch_size": experiment["epoch_size"],
        "batch_size": experiment["batch_size"], "crop_size": experiment["crop_size"], "model": experiment["model"],
        "classes": int(truth.shape[1]), "val_clips": int(truth.shape[0]), "val_lwlrap": val,
        "best_val_lwlrap": max(val), "chance_lwlrap": chance, "above_chance": max(val) > chance + 0.05,
        "epoch_seconds_after_first": epoch_s, "train_seconds": train_s, "data_generation_seconds": generate_s,
        "samples_per_s": experiment["epoch_size"] / float(np.median(epoch_s)) if epoch_s else None,
        "fold_summary": summary,
    }
    if not dry and not figures["above_chance"]:
        raise StageFailed(f"val lwlrap {max(val):.3f} did not rise above chance {chance:.3f} + 0.05", figures)
    return figures


def run_bench(module_name, argv) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    module = __import__(module_name)
    return module.main(argv)


def stage_throughput(args, work: Path, extra=()) -> dict:
    argv = (TINY_THROUGHPUT if args.dry_run else ["--device", "cuda", "--workers", "8"]) + list(extra)
    return run_bench("train_throughput", argv)


def stage_throughput_channels_last(args, work: Path) -> dict:
    return stage_throughput(args, work, ["--channels-last", "--skip-data"])


def stage_throughput_compiled(args, work: Path) -> dict:
    return stage_throughput(args, work, ["--compile", "--skip-data"])


# Stages a dry run skips, and why (decided here, without starting a stage process).
DRY_RUN_SKIPS = {"wheels": "dry run: the local environment has the packages",
                 "throughput_compiled": "dry run: torch.compile of the network takes minutes on a CPU"}


def stage_inference(args, work: Path) -> dict:
    argv = (["--device", "cpu", "--clips", "3", "--base-size", "4", "--step", "128"] if args.dry_run
            else ["--device", "cuda", "--clips", "300"])
    figures = run_bench("inference", argv)
    if not figures["outputs_equal"]:
        raise StageFailed("batched and one-clip-at-a-time predictions differ", figures)
    return figures


# The kernel-time stage: on a GPU the full ensemble, timed over up to 448 clips (a tenth of the test set)
# or 90 s; in a dry run tiny networks, 4 clips, and a placeholder peak for the CPU (the estimate's
# arithmetic runs; its figures mean nothing there).
KERNEL_TIME = {"full": ["--device", "cuda", "--clips", "448", "--max-seconds", "90"],
               "dry": ["--device", "cpu", "--tiny", "--clips", "4", "--threads", "1", "--device-tflops", "1"]}


def stage_kernel_time(args, work: Path) -> dict:
    argv = KERNEL_TIME["dry" if args.dry_run else "full"]
    argv = argv + (["--test-set-clips", str(args.test_set_clips)] if args.test_set_clips else [])
    return run_bench("kernel_time", argv)


class StageFailed(Exception):
    def __init__(self, message, figures=None):
        super().__init__(message)
        self.figures = figures or {}


def run_stage_here(args):
    """Child process: run one stage, write {status, figures, error} to --stage-json."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    result = {"status": "ok", "figures": {}}
    try:
        result["figures"] = globals()[f"stage_{args.stage}"](args, work)
    except StageFailed as failure:
        result = {"status": "failed", "error": str(failure), "figures": failure.figures}
    Path(args.stage_json).write_text(json.dumps(result, default=str))
    return 0 if result["status"] != "failed" else 1


# ---------------------------------------------------------------- the driver

def environment(dry_run) -> dict:
    import platform

    import torch

    cuda = torch.cuda.is_available()
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "cuda_available": cuda,
            "gpus": torch.cuda.device_count() if cuda else 0,
            "device_name": torch.cuda.get_device_name(0) if cuda else "CPU", "cpu_count": os.cpu_count(),
            "dry_run": dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_memory_gib=round(props.total_memory / 2 ** 30, 1), multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}")
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def install_wheels(args, log, timeout) -> dict:
    """pip install --target /tmp/site the carried wheels; children find them through PYTHONPATH."""
    wheels = sorted(WHEELS_DIR.glob("*.whl"))
    if not wheels:
        return {"status": "skipped", "reason": f"no wheels in {WHEELS_DIR} (make them with bench/fetch_gpu_wheels.sh)"}
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--target", str(SITE)] + [str(w) for w in wheels]
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))
    if done.returncode:
        return {"status": "failed", "error": f"pip exited {done.returncode}", "figures": {"wheels": len(wheels)}}
    return {"status": "ok", "figures": {"wheels": [w.name for w in wheels]}}


def run_child(args, name, timeout, work, log) -> dict:
    stage_json = work / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--stage-json", str(stage_json),
               "--work", str(work / name)]
    command += ["--dry-run"] if args.dry_run else []
    command += [f"--train-set={s}" for s in args.train_set]
    command += ["--train-epochs", str(args.train_epochs)] if args.train_epochs else []
    command += ["--test-set-clips", str(args.test_set_clips)] if args.test_set_clips else []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.dry_run:  # tiny tensors: one thread each is fastest, and CI machines are small and busy
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # Its own process group, so a timeout also ends its loader workers and torchrun children.
    child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return {"status": "timeout", "error": f"stopped after {timeout:.0f} s"}
    if stage_json.is_file():
        return json.loads(stage_json.read_text())
    return {"status": "failed", "error": f"exited {code} without a result (see the log)"}


def log_tail(path, lines=30) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def headline(name, result) -> str:
    """The stage's key figures in one line, for the summary table."""
    f = result.get("figures") or {}
    if result["status"] not in ("ok", "failed") or not f:
        return result.get("reason") or result.get("error") or ""
    if name == "cuda_tests":
        return f"{f['passed']} passed, {f['failed']} failed, {f['skipped']} skipped"
    if name == "train":
        rate = f"{f['samples_per_s']:.0f} samples/s/epoch" if f.get("samples_per_s") else "n/a samples/s"
        return (f"val lwlrap {', '.join(f'{v:.3f}' for v in f['val_lwlrap'])} (chance {f['chance_lwlrap']:.3f}); "
                f"{rate}")
    if name.startswith("throughput"):
        parts = []
        if "batch_path_samples_per_s" in f:
            parts.append(f"batch path {f['batch_path_samples_per_s']:.0f}/s")
        if "model_step_samples_per_s" in f:
            peak = f" ({100 * f['model_step_share_of_peak']:.1f}% of peak)" if f.get("model_step_share_of_peak") else ""
            parts.append(f"step {f['model_step_samples_per_s']:.0f}/s {f['model_step_tflops']:.1f} TFLOP/s{peak}")
        if "end_to_end_samples_per_s" in f:
            parts.append(f"e2e {f['end_to_end_samples_per_s']:.0f}/s, idle {100 * f['device_idle_share']:.1f}%")
        return "; ".join(parts)
    if name == "inference":
        return (f"batched {f['batched_clips_per_s']:.1f} vs per clip {f['per_clip_clips_per_s']:.1f} clips/s "
                f"({f['speedup']:.1f}x), max diff {f['max_abs_difference']:.1e}")
    if name == "kernel_time":
        est = f["kaggle_estimates"]
        guess = ", ".join(f"{key} ~{d['projected_s'] / 60:.0f} min" for key, d in (est["devices"] or {}).items())
        basis = f" (peak scaling; this device {est['measured_device_peak_fp32_tflops']:g} TFLOP/s from " \
                f"{est['measured_device_peak_source']})" if guess else ""
        return (f"fp32 {f['clips_per_s']:.2f} clips/s -> {f['projected_s'] / 60:.1f} min for {f['test_set_clips']} "
                f"clips (limit 60){'; ESTIMATE ' + guess + basis if guess else ''}")
    if name == "wheels":
        return f"{len(f['wheels'])} wheels" if isinstance(f.get("wheels"), list) else ""
    return ""


def main(argv=None):
    args = parse_args(argv)
    if args.stage:
        return run_stage_here(args)
    out = Path(args.out or os.environ.get("OUT") or ROOT / "data" / "gpu_check")
    names = [s[0] for s in STAGES]
    wanted = names if not args.stages else ["wheels"] + [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise BadSetting(f"--stages: unknown stage(s) {unknown}; known: {', '.join(names)}")
    if out.exists() and not out.is_dir():
        raise BadSetting(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    # Generated data, checkpoints and the stages' result files: scratch, outside --out ($OUT brings back
    # only a few files), removed at the end.
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))

    deadline = time.monotonic() + args.budget
    report = {"environment": environment(args.dry_run), "budget_s": args.budget, "stages": {}}
    log_path = out / "gpu_check.log"
    env = report["environment"]
    print(f"gpu_check: {env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}, "
          f"{'dry run' if args.dry_run else 'full run'}; log {log_path}", flush=True)
    with open(log_path, "w") as log:
        for name, gpu_timeout, dry_timeout in STAGES:
            if name not in wanted:
                continue
            left = deadline - time.monotonic()
            if left < 10:
                report["stages"][name] = {"status": "skipped", "reason": "the run's --budget was spent"}
                continue
            timeout = min(dry_timeout if args.dry_run else gpu_timeout, left)
            log.write(f"\n===== {name} (timeout {timeout:.0f} s) =====\n")
            log.flush()
            start = time.perf_counter()
            try:
                if args.dry_run and name in DRY_RUN_SKIPS:
                    result = {"status": "skipped", "reason": DRY_RUN_SKIPS[name]}
                elif name == "wheels":
                    result = install_wheels(args, log, timeout)
                else:
                    result = run_child(args, name, timeout, work, log)
            except Exception as error:  # a broken stage must not stop the others
                result = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
            result["seconds"] = round(time.perf_counter() - start, 1)
            if result["status"] in ("failed", "timeout"):
                log.flush()
                result["log_tail"] = log_tail(log_path)
            report["stages"][name] = result
            print(f"  {name:26s} {result['status']:8s} {result['seconds']:6.1f} s  {headline(name, result)}",
                  flush=True)
    shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(args.budget - (deadline - time.monotonic()), 1)
    tmp = out / ".gpu_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, out / "gpu_check.json")

    print(f"\n{'stage':26s} {'status':8s} {'seconds':>7s}  figures")
    for name, result in report["stages"].items():
        print(f"{name:26s} {result['status']:8s} {result.get('seconds', 0):7.1f}  {headline(name, result)}")
    print(f"total {report['seconds']:.0f} s; JSON {out / 'gpu_check.json'}")
    failed = [n for n, r in report["stages"].items() if r["status"] in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    run(main)  # main's status (1 when a stage failed) is the exit status
