"""Stage 3, augmentation: per-sample transforms and mixers (reference), or whole batches on the device.

    settings.py     which path an experiment uses (augment="sample" | "device") and what each reads;
                    plain data, no torch (src/experiments.py imports it)
    checks.py       the parameter checks both paths share
    transforms.py   per-sample spectrogram transforms (pad_and_crop, SpecAugment, resize, ...)
    mixers.py       per-sample mixing (RandomMixer, SigmoidConcatMixer, UseMixerWithProb)
    batch.py        the same augmentation as tensor ops over a batch (augment=device)

src.data.datasets.experiment_train_dataset builds an experiment's training stream in either mode.
This package file imports nothing, so importing settings.py stays light.
"""
