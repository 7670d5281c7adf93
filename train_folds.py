"""Train the first-level models of a named experiment, one per fold.

    python train_folds.py --experiment corr_noisy_007                 # all 5 folds
    python train_folds.py --experiment corr_noisy_007 --folds 0 3     # a subset (spread folds over GPUs)
    python train_folds.py --experiment demo --data-dir data/demo      # CPU-sized demo
    python train_folds.py --experiment auxiliary_016 --set batch_size=64 --set optimizer.lr=5e-4
    torchrun --standalone --nproc_per_node 4 train_folds.py --experiment corr_noisy_007 --folds 0  # 4 GPUs, one fold
    python train_folds.py --experiment small --data-dir data/mine --jobs 2  # 2 folds at a time, 1 thread each

Experiments are named in src/experiments.py. Per fold this writes to
<data>/experiments/NAME/fold_K/: the best checkpoint by val_lwlrap
(model-EPOCH-SCORE.pth, an argus checkpoint), log.csv, log.txt, curves.png and
done.json, and last_state.pth (the full training state, rewritten every epoch);
the resolved experiment is saved as <data>/experiments/NAME/config.json.
An existing experiment folder is never silently overwritten: --resume skips
finished folds and continues unfinished ones from their last_state.pth;
files it cannot use are moved into fold_K/replaced-<time>/, never deleted;
--overwrite (the one way to discard results) starts the folds again. A fold is
trained by one run at a time: while a run trains it, it holds the lock file
<data>/experiments/NAME/.fold_K.lock, and a second run asking for the fold stops
with an error naming the fold and the holder's pid.

--jobs (src/train/jobs.py): on a CPU, the thin experiments (small, demo,
demo_skip) train one fold per single-threaded child process, all folds at once
(up to 4 per core; --jobs auto, the default): time-shared cores leave none idle
at the end, where one process per core would leave one idle while the fifth of
5 folds trains on 2 cores. This process first computes the
feature cache and prepares the experiment folder; the children only train, each
line of theirs printed with a [fold K] prefix. A fold trained so is identical to
the same fold trained alone with --threads 1 --workers 0.

--resume also compares what config.json recorded (settings, class list, audio
settings, corrections files' sha256, train_folds.csv's fold assignment) with this
run's: a change stops it, naming both values, unless --accept-changed ITEM
accepts it (src/provenance.py).

The recipe, top to bottom: curated folds (+ noisy and corrected-noisy clips)
-> random-source stream of `epoch_size` samples -> per-sample pad/crop/resized
crop/SpecAugment -> sigmoid-concat or add mixing -> AuxSkipAttention-style CNN
-> BCE on curated, L-soft on noisy, auxiliary heads weighted -> Adam with
reduce-on-plateau and early stopping on val lwlrap.

Under torchrun (WORLD_SIZE > 1) the ranks train each fold together with
DistributedDataParallel, keeping the global batch and epoch size (each rank
draws epoch_size / N samples in batches of batch_size / N); rank 0 alone writes
the outputs. See src/train/distributed.py.
"""
import argparse
import contextlib
import gc
import json
import os
import sys
import time
from pathlib import Path

from src.train import distributed
from src.train.argus_model import FreesoundModel, argus_params
from src.augment.settings import augment_mode, check_crop_settings
from src.cli import add_training_args, apply_training_args, run
from src.config import AUDIO, resolve_data_dir
from src.data.corrections import describe as describe_corrections
from src.data.layout import choose_folds
from src.data.sources import load_training_data, specs_and_targets
from src.data.datasets import experiment_train_dataset, experiment_val_dataset, make_loader
from src.experiments import EXPERIMENTS, data_settings, get_experiment, use_available_sources
from src.precision import resolve_precision
from src.provenance import fold_assignment
from src.experiment_folder import DONE_FILE, experiments_dir
from src.locks import exclusive_lock
from src.train.fit import fit_fold, prepare_experiment_dir, worker_count
from src.train.jobs import StopRequested, become_child, check_jobs, choose_jobs, parse_jobs, run_fold_jobs
from src.runtime import keep_freed_memory_for_reuse, seed_everything, set_cpu_threads


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(
        parser, EXPERIMENTS,
        workers_help="DataLoader worker processes per process (default: cores - 1, at most 8)",
        threads_help="torch CPU threads (default on CPU: the cores the workers leave; every core when the "
                     "experiment has augment=device, whose workers only cut crops)",
        set_example="--set epoch_size=4096 --set model.base_size=32", keys_file="src/experiments.py")
    parser.add_argument("--jobs", type=parse_jobs, default="auto", metavar="N|auto",
                        help="train the folds in N parallel child processes, each with one torch thread and no "
                             "loader workers (a fold comes out as when trained alone with --threads 1 --workers 0). "
                             "'auto' (default): one per fold to train (at most 4 per core; 1 on a one-core machine) for the thin "
                             "experiments on a CPU (model base_size <= 16 with augment=device: small, demo, "
                             "demo_skip), whose small convolutions gain less from a second thread than from a second "
                             "fold; else 1 (this process trains the folds one after another): on CUDA, under "
                             "torchrun, for the full-size experiments, and when --threads or --workers N>0 is given")
    # Internal: how this script runs as one of --jobs's children (its parent did the shared work).
    parser.add_argument("--fold-job", type=int, metavar="PARENT_PID", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resolve_experiment(args) -> dict:
    return apply_training_args(get_experiment(args.experiment), args)


def main(argv=None):
    args = parse_args(argv)
    if args.fold_job and not become_child(args.fold_job):
        return 130  # the parent is gone: nothing to train for
    data_dir = resolve_data_dir(args.data_dir)
    experiment = use_available_sources(resolve_experiment(args), data_dir)
    check_crop_settings(experiment, AUDIO.n_mels)   # before anything is computed or written
    # One process, or one rank of a torchrun launch (device cuda:LOCAL_RANK, process group joined).
    ddp = distributed.init_distributed(args.device)
    workers = worker_count(args.workers)
    # With augment="device" the workers only cut raw crops: torch may use every core.
    set_cpu_threads(ddp.device, workers, args.threads, light_workers=augment_mode(experiment) == "device")
    check_jobs(args.jobs, device=ddp.device, distributed=ddp.distributed, threads=args.threads, workers=args.workers)
    if ddp.device.type == "cpu":
        keep_freed_memory_for_reuse()  # each step reuses the last one's buffers: no page faults (src/runtime.py)
    # Per rank: the global batch and epoch are kept, split over the ranks (checked before anything is written).
    per_rank = {key: distributed.split_per_rank(experiment[key], ddp.world_size, key)
                for key in ("batch_size", "epoch_size")}

    # Rank 0 computes any missing feature cache first; the other ranks then read it.
    data = distributed.main_first(lambda: load_training_data(data_dir, **data_settings(experiment),
                                                             workers=args.workers))
    folds = choose_folds(args.folds, data.folds)
    exp_dir = experiments_dir(data_dir, args.experiment)
    if args.fold_job:  # a child of --jobs: the parent prepared the folder and holds the fold's lock
        return train_folds(args, experiment, data, folds, ddp, per_rank, workers, exp_dir)

    record = {"name": args.experiment, "experiment": experiment, "classes": data.classes,
              "audio_config": AUDIO.to_dict(), "seed": args.seed, "overrides": args.set,
              "world_size": ddp.world_size, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              # the experiment's amp as this device resolves it (src/precision.py): bf16, fp16 or fp32
              "precision": resolve_precision(experiment["amp"], ddp.device, training=True),
              "corrections": data.corrections,  # the files applied: name, path, sha256, matching entries
              "fold_assignment": fold_assignment(data_dir)}  # sha256 of train_folds.csv's fname -> fold
    with contextlib.ExitStack() as held:
        def lock_and_prepare():
            # Every requested fold locked for the whole run, before the folder is touched (src/locks.py);
            # --jobs children train under their parent's locks.
            for fold in folds:
                held.enter_context(lock_fold(exp_dir, args.experiment, fold))
            return prepare_experiment_dir(exp_dir, json.loads(json.dumps(record)), folds, args.resume,
                                          args.overwrite, accepted=args.accept_changed)
        # Only rank 0 locks and touches the folder (a refusal stops the other ranks too); every rank gets
        # the list of folds still to train.
        todo = distributed.run_on_main(lock_and_prepare)
        jobs = choose_jobs(args.jobs, folds=len(todo), device=ddp.device, distributed=ddp.distributed,
                           experiment=experiment, threads=args.threads, workers=args.workers)
        if ddp.is_main:
            print_plan(args.experiment, data, ddp, todo, exp_dir, jobs)
        if jobs > 1:
            del data  # each child loads its own copy from the feature cache
            results = train_in_jobs(args, data_dir, todo, jobs, exp_dir)
        else:
            results = train_folds(args, experiment, data, todo, ddp, per_rank, workers, exp_dir)
    if ddp.is_main:
        for fold, summary in results.items():
            print(f"  fold {fold}: val_lwlrap {summary['best_val_lwlrap']:.4f}")
    return results


def lock_fold(exp_dir, name, fold):
    """Held by the run that trains fold `fold` (src/locks.py); beside the fold folder, not in it, so that
    --overwrite and the moving aside of old files leave it alone."""
    return exclusive_lock(Path(exp_dir) / f".fold_{fold}.lock", f"fold {fold} of experiment {name}")


def train_folds(args, experiment, data, folds, ddp, per_rank, workers, exp_dir) -> dict:
    """Train `folds` one after another in this process; {fold: summary}. A --jobs child that is stopped
    (SIGINT from its parent) says so in one line and exits 130: its last_state.pth lets --resume continue."""
    try:
        return {fold: train_fold(args, experiment, data, fold, ddp, per_rank, workers, exp_dir) for fold in folds}
    except KeyboardInterrupt:
        if not args.fold_job:
            raise
        print(f"fold {', '.join(map(str, folds))}: stopped; --resume continues from its last finished epoch",
              file=sys.stderr)
        return 130


def train_in_jobs(args, data_dir, folds, jobs, exp_dir) -> dict:
    """Train each fold in a child process running this script, `jobs` at a time (src/train/jobs.py)."""
    script = str(Path(__file__).resolve())

    def command(fold):
        # The child resolves the same experiment from the same options; its --resume is the parent's, passed
        # on to fit_fold (the parent already made the folder ready: --overwrite and the moves are done).
        return [sys.executable, script, "--fold-job", str(os.getpid()), "--experiment", args.experiment,
                "--data-dir", str(data_dir), "--folds", str(fold), "--device", "cpu", "--threads", "1", "--workers", "0", "--jobs", "1",
                "--seed", str(args.seed), "--no-progress",
                *(["--epochs", str(args.epochs)] if args.epochs is not None else []),
                *[a for kv in args.set for a in ("--set", kv)], *(["--resume"] if args.resume else [])]

    run_fold_jobs(folds, jobs, command)
    return {fold: json.loads((exp_dir / f"fold_{fold}" / DONE_FILE).read_text()) for fold in folds}


def train_fold(args, experiment, data, fold, ddp, per_rank, workers, exp_dir) -> dict:
    """Train fold `fold`: the other folds (+ noisy sources) against this one, with fit_fold's callbacks."""
    rank_batch, rank_epoch = per_rank["batch_size"], per_rank["epoch_size"]
    seed = distributed.rank_seed(args.seed + fold, ddp.rank)  # rank 0: the one-process seed
    seed_everything(seed)
    train_part = data.curated.subset((data.folds != fold).nonzero()[0])
    val_part = data.curated.subset((data.folds == fold).nonzero()[0])
    # augment="device": the workers only pad and crop; the model augments whole batches on the device.
    train_dataset = experiment_train_dataset(experiment, specs_and_targets(train_part),
                                             specs_and_targets(data.noisy), specs_and_targets(data.corrected),
                                             epoch_size=rank_epoch)
    val_dataset = experiment_val_dataset(experiment, val_part.specs, val_part.targets)
    # Fresh workers each epoch, seeded from the loader's generator: --resume can then restore them.
    train_loader = make_loader(train_dataset, rank_batch, shuffle=True, workers=workers,
                               seed=seed, drop_last=True, persistent=False)
    val_loader = make_loader(val_dataset, experiment["val_batch_size"], shuffle=False, workers=workers,
                             seed=args.seed + fold, drop_last=False)

    model = FreesoundModel(argus_params(experiment, len(data.classes), ddp.device))
    distributed.wrap_ddp(model, ddp)  # no-op in a one-process run
    summary = fit_fold(model, train_loader, val_loader, exp_dir / f"fold_{fold}", experiment["epochs"],
                       experiment["plateau"], experiment["early_stopping"],
                       title=f"{args.experiment} fold {fold}", progress=not args.no_progress,
                       is_main=ddp.is_main, seed=seed, resume=args.resume,
                       extra_callbacks=[StopRequested()] if args.fold_job else [])
    if ddp.distributed:
        print(f"rank {ddp.rank}/{ddp.world_size} fold {fold}: {summary['epochs_run']} epochs of "
              f"{len(train_dataset)} samples in {len(train_loader)} batches of {rank_batch}, seed {seed}, "
              f"final lr {model.get_lr():.6g}, best val_lwlrap {summary['best_val_lwlrap']:.6f}")
    if ddp.is_main:
        print(f"fold {fold}: best val_lwlrap {summary['best_val_lwlrap']:.4f} at epoch {summary['best_epoch']} "
              f"({summary['epochs_run']} epochs, {summary['seconds']:.0f} s) -> {exp_dir / f'fold_{fold}'}")
    # Shut this fold's loader workers down here, in the parent: left to the garbage
    # collector, their iterators would be inherited by the next fold's forked workers.
    del train_loader, val_loader
    gc.collect()
    return summary


def print_plan(name, data, ddp, todo, exp_dir, jobs=1):
    """What is about to be trained, on what, from which clips and label corrections."""
    where = f"{ddp.world_size} x {ddp.device.type}" if ddp.distributed else str(ddp.device)
    if jobs > 1:
        where += f" ({jobs} single-threaded processes, one fold each)"
    print(f"experiment {name} on {where}: {len(data.curated)} curated clips"
          + (f", {len(data.noisy)} noisy" if data.noisy else "")
          + (f", {len(data.corrected)} corrected-noisy" if data.corrected else "")
          + f"; {len(data.classes)} classes; folds {todo}; output {exp_dir}")
    print("  " + describe_corrections(data.corrections["curated"], "curated", "train_folds.csv"))
    if data.noisy or data.corrected:
        print("  " + describe_corrections(data.corrections["noisy"], "noisy", "train_noisy.csv"))


if __name__ == "__main__":
    run(main, after=distributed.cleanup)
