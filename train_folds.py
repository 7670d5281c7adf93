"""Train the first-level models of a named experiment, one per fold.

    python train_folds.py --experiment corr_noisy_007                 # all 5 folds
    python train_folds.py --experiment corr_noisy_007 --folds 0 3     # a subset (spread folds over GPUs)
    python train_folds.py --experiment demo --data-dir data/demo      # CPU-sized demo
    python train_folds.py --experiment auxiliary_016 --set batch_size=64 --set optimizer.lr=5e-4
    torchrun --standalone --nproc_per_node 4 train_folds.py --experiment corr_noisy_007 --folds 0  # 4 GPUs, one fold

Experiments are named in src/experiments.py. Per fold this writes to
<data>/experiments/NAME/fold_K/: the best checkpoint by val_lwlrap
(model-EPOCH-SCORE.pth, an argus checkpoint), log.csv, log.txt, curves.png and
done.json, and last_state.pth (the full training state, rewritten every epoch);
the resolved experiment is saved as <data>/experiments/NAME/config.json.
An existing experiment folder is never silently overwritten: --resume skips
finished folds and continues unfinished ones from their last_state.pth;
files it cannot use are moved into fold_K/replaced-<time>/, never deleted;
--overwrite (the one way to discard results) starts the folds again.
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
import gc
import json
import time

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
from src.experiment_folder import experiments_dir
from src.train.fit import fit_fold, prepare_experiment_dir, worker_count
from src.utils import seed_everything, set_cpu_threads


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(
        parser, EXPERIMENTS,
        workers_help="DataLoader worker processes per process (default: cores - 1, at most 8)",
        threads_help="torch CPU threads (default on CPU: the cores the workers leave; every core when the "
                     "experiment has augment=device, whose workers only cut crops)",
        set_example="--set epoch_size=4096 --set model.base_size=32", keys_file="src/experiments.py")
    return parser.parse_args(argv)


def resolve_experiment(args) -> dict:
    return apply_training_args(get_experiment(args.experiment), args)


def main(argv=None):
    args = parse_args(argv)
    data_dir = resolve_data_dir(args.data_dir)
    experiment = use_available_sources(resolve_experiment(args), data_dir)
    check_crop_settings(experiment, AUDIO.n_mels)   # before anything is computed or written
    # One process, or one rank of a torchrun launch (device cuda:LOCAL_RANK, process group joined).
    ddp = distributed.init_distributed(args.device)
    workers = worker_count(args.workers)
    # With augment="device" the workers only cut raw crops: torch may use every core.
    set_cpu_threads(ddp.device, workers, args.threads, light_workers=augment_mode(experiment) == "device")
    # Per rank: the global batch and epoch are kept, split over the ranks (checked before anything is written).
    per_rank = {key: distributed.split_per_rank(experiment[key], ddp.world_size, key)
                for key in ("batch_size", "epoch_size")}

    # Rank 0 computes any missing feature cache first; the other ranks then read it.
    data = distributed.main_first(lambda: load_training_data(data_dir, **data_settings(experiment),
                                                             workers=args.workers))
    folds = choose_folds(args.folds, data.folds)
    exp_dir = experiments_dir(data_dir, args.experiment)
    record = {"name": args.experiment, "experiment": experiment, "classes": data.classes,
              "audio_config": AUDIO.to_dict(), "seed": args.seed, "overrides": args.set,
              "world_size": ddp.world_size, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              # the experiment's amp as this device resolves it (src/precision.py): bf16, fp16 or fp32
              "precision": resolve_precision(experiment["amp"], ddp.device, training=True),
              "corrections": data.corrections,  # the files applied: name, path, sha256, matching entries
              "fold_assignment": fold_assignment(data_dir)}  # sha256 of train_folds.csv's fname -> fold
    # Only rank 0 touches the folder; every rank gets the list of folds still to train.
    todo = distributed.run_on_main(lambda: prepare_experiment_dir(exp_dir, json.loads(json.dumps(record)), folds,
                                                                  args.resume, args.overwrite,
                                                                  accepted=args.accept_changed))
    if ddp.is_main:
        print_plan(args.experiment, data, ddp, todo, exp_dir)

    results = {fold: train_fold(args, experiment, data, fold, ddp, per_rank, workers, exp_dir) for fold in todo}
    if ddp.is_main:
        for fold, summary in results.items():
            print(f"  fold {fold}: val_lwlrap {summary['best_val_lwlrap']:.4f}")
    return results


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
                       is_main=ddp.is_main, seed=seed, resume=args.resume)
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


def print_plan(name, data, ddp, todo, exp_dir):
    """What is about to be trained, on what, from which clips and label corrections."""
    where = f"{ddp.world_size} x {ddp.device.type}" if ddp.distributed else str(ddp.device)
    print(f"experiment {name} on {where}: {len(data.curated)} curated clips"
          + (f", {len(data.noisy)} noisy" if data.noisy else "")
          + (f", {len(data.corrected)} corrected-noisy" if data.corrected else "")
          + f"; {len(data.classes)} classes; folds {todo}; output {exp_dir}")
    print("  " + describe_corrections(data.corrections["curated"], "curated", "train_folds.csv"))
    if data.noisy or data.corrected:
        print("  " + describe_corrections(data.corrections["noisy"], "noisy", "train_noisy.csv"))


if __name__ == "__main__":
    run(main, after=distributed.cleanup)
