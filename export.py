"""Export a trained experiment: one self-contained bundle file, and/or one fold as TorchScript.

    python export.py --experiment corr_noisy_007 --out corr_noisy_007.pt
    python export.py --experiment demo --data-dir data/demo --out demo.pt --torchscript demo_fold0.ts.pt --fold 0
    python export.py --ensemble ensemble_2019 --out ensemble.pt     # the whole final blend, one file

--out writes a bundle for `tag.py --model` / `demo.py --model`, in the one bundle
format (an ensemble of one first-level member; bundles of the older one-experiment
format still load): audio settings, class list, yes/no thresholds, tile settings
(crop_size; tile_step = the experiment's test step), model name + kwargs and the
weights of every fold, as plain
dicts/lists/strings/numbers and tensors, so
`torch.load(path, weights_only=True)` reads it (no pickled code) and the
experiment folder is no longer needed.

--ensemble NAME (src/ensembles.py) writes one bundle of a whole ensemble:
audio settings, classes, the blend spec, and every fold of every first-level
and stacking experiment it needs (src.tagging.bundles.make_ensemble_bundle).
`tag.py --model ensemble.pt` and the offline kernel of make_kernel.py use it.

--torchscript traces one fold model (torch.jit.trace) into a file that runs
without this repo: input a batch of log-mel tiles (B, n_mels, crop_size) in dB
(the fixed tile size of the experiment), output the sigmoid probabilities of
the main head (B, n_classes). The delta/delta-delta channels and the /100
scaling are part of the traced graph. The class list, audio settings and input
shape travel inside the file as `meta.json` (torch.jit.load(...,
_extra_files={"meta.json": ""})). ONNX is not installed here, hence TorchScript.

While it runs, export holds a lock beside each file it writes (.NAME.lock,
src/locks.py): a second export to the same file stops at once, naming the first
one's pid.
"""
import argparse
import contextlib
import json
from pathlib import Path

import torch
from torch import nn

from src.models import main_output
from src.cli import run
from src.config import resolve_data_dir
from src.audio.deltas import DeltaStack
from src.ensembles import ENSEMBLES
from src.errors import BadSetting
from src.locks import exclusive_lock, lock_file_beside
from src.models import create_model
from src.tagging.bundles import make_bundle, make_ensemble_bundle
from src.files import torch_save_atomic


class SigmoidMainHead(nn.Module):
    """log-mel tiles (B, n_mels, frames) -> [log-mel, delta, delta-delta]/100 -> network -> sigmoid(main head).

    The delta filters are the (frames x frames) matrices of `src.audio.deltas.DeltaStack` (librosa's
    delta, edges included) stored as buffers, which fixes the tile width.
    """

    def __init__(self, net: nn.Module, frames: int):
        super().__init__()
        self.net, self.deltas = net, DeltaStack(frames)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(main_output(self.net(self.deltas(logmel))))


def trace_fold(bundle: dict, fold_index: int = 0) -> torch.jit.ScriptModule:
    """TorchScript of one fold model of an experiment's bundle, traced on CPU with a fixed (1, n_mels,
    crop_size) input."""
    part = bundle["first_level"][0]
    net = create_model(part["model"]["name"], **part["model"]["kwargs"])
    net.load_state_dict(part["state_dicts"][fold_index])
    wrapper = SigmoidMainHead(net, part["crop_size"]).eval()
    example = torch.zeros(1, bundle["audio_config"]["n_mels"], part["crop_size"])
    with torch.no_grad():
        return torch.jit.trace(wrapper, example)


def torchscript_meta(bundle: dict, fold: int) -> dict:
    crop_size = bundle["first_level"][0]["crop_size"]
    return {"name": bundle["name"], "fold": fold, "classes": bundle["classes"],
            "audio_config": bundle["audio_config"],
            "input": {"shape": ["batch", bundle["audio_config"]["n_mels"], crop_size],
                      "content": "log-mel dB (src.audio.fast_frontend.log_mel, = src.audio.frontend.log_mel), one tile of crop_size frames"},
            "output": "sigmoid probabilities of the main head, (batch, n_classes)"}


def save_bundle(bundle: dict, out):
    torch_save_atomic(lambda handle: torch.save(bundle, handle), out, suffix=".pt")
    print(f"bundle -> {out} ({Path(out).stat().st_size / 1e6:.1f} MB)")


def export_ensemble(args) -> int:
    bundle = make_ensemble_bundle(resolve_data_dir(args.data_dir), args.ensemble)
    for part in bundle["first_level"]:
        print(f"  {part['name']}: {part['model']['name']} folds {part['folds']}, tiles {part['crop_size']} "
              f"every {part['tile_step']} frames")
    for part in bundle["stacking"]:
        print(f"  {part['name']}: {part['model']['name']} folds {part['folds']} over {', '.join(part['inputs'])}")
    print(f"{args.ensemble}: geometric mean of {', '.join(bundle['ensemble']['members'])}; "
          f"{len(bundle['classes'])} classes")
    save_bundle(bundle, args.out)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--experiment", metavar="NAME", help="experiment folder under <data>/experiments/")
    what.add_argument("--ensemble", choices=sorted(ENSEMBLES),
                      help="a named ensemble (src/ensembles.py): every fold of every member in one bundle")
    parser.add_argument("--data-dir", help="data root (default: $FSAT_DATA_DIR or ./data)")
    parser.add_argument("--out", help="bundle file to write (e.g. model.pt) with every fold model")
    parser.add_argument("--torchscript", metavar="FOLD.pt", help="TorchScript file of one fold model")
    parser.add_argument("--fold", type=int, help="fold for --torchscript (default: the first trained fold)")
    args = parser.parse_args(argv)
    if not args.out and not args.torchscript:
        parser.error("nothing to do: give --out BUNDLE.pt and/or --torchscript FOLD.pt")
    if args.ensemble and (args.torchscript or not args.out):
        parser.error("--ensemble writes one bundle: give --out ENSEMBLE.pt (TorchScript is per fold model)")
    # One export at a time per output file: a second run stops at once, naming the first one's pid.
    with contextlib.ExitStack() as locks:
        for out in sorted({str(Path(p).resolve()) for p in (args.out, args.torchscript) if p}):
            locks.enter_context(exclusive_lock(lock_file_beside(out), f"export {out}"))
        return export_ensemble(args) if args.ensemble else export_experiment(args)


def export_experiment(args) -> int:
    bundle = make_bundle(resolve_data_dir(args.data_dir), args.experiment)
    part = bundle["first_level"][0]
    print(f"{args.experiment}: {part['model']['name']} folds {part['folds']}, {len(bundle['classes'])} classes, "
          f"tiles {part['crop_size']} every {part['tile_step']} frames")
    if args.out:
        save_bundle(bundle, args.out)
    if args.torchscript:
        fold = part["folds"][0] if args.fold is None else args.fold
        if fold not in part["folds"]:
            raise BadSetting(f"--fold {fold}: {args.experiment} has folds {part['folds']}")
        traced = trace_fold(bundle, part["folds"].index(fold))
        meta = {"meta.json": json.dumps(torchscript_meta(bundle, fold))}
        torch_save_atomic(lambda handle: torch.jit.save(traced, handle, _extra_files=meta), args.torchscript,
                          suffix=".pt")
        print(f"TorchScript of fold {fold} -> {args.torchscript} (input (B, {bundle['audio_config']['n_mels']}, "
              f"{part['crop_size']}) log-mel dB, output sigmoid probabilities)")
    return 0


if __name__ == "__main__":
    run(main)
