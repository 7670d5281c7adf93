"""Stage 4, training: losses, the argus model, the fit loop of one fold, resume, checkpoints, DDP.

    losses.py        BCE, L-soft, Lq, noisy-aware and auxiliary-head losses
    argus_model.py   FreesoundModel: network + loss + Adam + sigmoid, mixed precision
    fit.py           fit_fold: callbacks, checkpoints, logs, curves
    resume.py        the per-epoch training state and how a fold resumes from it
    checkpoints.py   the one safe checkpoint loader (weights_only=True)
    distributed.py   one fold over several GPUs (torchrun)
"""
