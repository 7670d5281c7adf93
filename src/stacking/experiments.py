"""Named stacking (second-level) experiments, as plain data like src/experiments.py.

`stacking_train.py --experiment NAME` looks the name up here. The keys the
first level also has mean the same thing (and `src.train.argus_model.argus_params`
turns model/loss/optimizer/amp into the argus params of both levels):

  inputs           first-level experiments whose out-of-fold tile predictions and test clip
                   predictions (<data>/predictions/NAME/{oof,test}) are stacked; order = feature order
  model            ('FCNet', kwargs) - in_features and num_classes are filled in at run time
  loss             ('bce', {}) - every stacking sample is curated (flag 0)
  optimizer        (torch.optim name, kwargs)
  batch_size, val_batch_size
  epoch_size       random clips per training epoch
  epochs           maximum number of epochs
  run_prob, subset_prob  TileSubsetMean: probabilities of its two independent steps (keep a
                   contiguous run of tiles; then keep a random subset of those left)
  plateau          ReduceLROnPlateau(patience, factor, min_lr) on val_lwlrap
  early_stopping   patience in epochs, on val_lwlrap
  curated_corrections  the curated labels' corrections, as in src/experiments.py: the inputs' training
                   labels (the 2019 stacking used curated_final, the last version)
  amp              'bf16' | 'fp16' | 'none' (CUDA only)
  channels_last, compile   as in src/experiments.py (the argus model honours them at both levels)

Every stacking experiment has every key (BASE is the first of them); a config.json
written before a key existed is completed from BASE (src.experiments.complete_config).

The three configurations of the original (docs/recipe.md, section 6) differ in
the gate's reduction, dropout, learning rate and plateau schedule; the odd
numbers come from the original's hyper-parameter search.
"""
import copy

# The seven first-level members of the final ensemble (src/experiments.py).
FIRST_LEVEL = ["auxiliary_016", "auxiliary_019", "corr_noisy_003", "corr_noisy_004", "corr_noisy_007",
               "corrections_002", "corrections_003"]


def _fcnet(reduction, dropout, lr, patience, factor) -> dict:
    return {
        "inputs": list(FIRST_LEVEL),
        "model": ("FCNet", {"base_size": 512, "reduction": reduction, "dropout": dropout}),
        "loss": ("bce", {}),
        "optimizer": ("Adam", {"lr": lr}),
        "batch_size": 128,
        "val_batch_size": 1024,
        "epoch_size": 32768,
        # The original allowed up to 700 epochs; early stopping (patience 30) ends runs long before.
        "epochs": 700,
        "run_prob": 0.5,
        "subset_prob": 0.5,
        "plateau": {"patience": patience, "factor": factor, "min_lr": 1e-8},
        "early_stopping": 30,
        "curated_corrections": "curated_final",
        "amp": "none",  # a small MLP: fp32 costs nothing and keeps the probabilities' small differences
        "channels_last": False,
        "compile": False,
    }


# The exact values of the 2019 runs (from their random search), not rounded.
BASE = _fcnet(reduction=16, dropout=0.0514108720891856, lr=4.5950585196710547e-05, patience=5,
              factor=0.657766056031002)


STACKING_EXPERIMENTS = {
    "stacking_008_fcnet_43040": copy.deepcopy(BASE),
    "stacking_008_fcnet_45041": _fcnet(reduction=2, dropout=0.48357033916143033, lr=3.897529465275052e-05,
                                       patience=9, factor=0.7953702239306087),
    "stacking_008_fcnet_50013": _fcnet(reduction=1, dropout=0.1662788540244386, lr=2.5814932060476834e-05,
                                       patience=7, factor=0.5537460438294733),
}

# CPU-sized stacking over the two demo first-level experiments (src/experiments.py 'demo', 'demo_skip'):
# a narrower net, a larger learning rate, short epochs and patience, so 5 folds train in about half a
# minute on 2 cores (most of it the per-epoch curves plot).
STACKING_EXPERIMENTS["stacking_demo"] = {
    **_fcnet(reduction=2, dropout=0.1, lr=2e-3, patience=2, factor=0.5),
    "inputs": ["demo", "demo_skip"],
    "model": ("FCNet", {"base_size": 128, "reduction": 2, "dropout": 0.1}),
    "batch_size": 64,
    "val_batch_size": 256,
    "epoch_size": 2048,
    "epochs": 12,
    "early_stopping": 4,
    "curated_corrections": "auto",  # the demo data's own corrections.json, if the user made one
}


def get_stacking_experiment(name: str) -> dict:
    """A deep copy of the named stacking experiment (safe to modify)."""
    if name not in STACKING_EXPERIMENTS:
        raise KeyError(f"Unknown stacking experiment {name!r}; known: {', '.join(sorted(STACKING_EXPERIMENTS))}")
    return copy.deepcopy(STACKING_EXPERIMENTS[name])
