"""Stage 3, augmentation: per-sample transforms and mixers (reference), or whole batches on the device.

    transforms.py   per-sample spectrogram transforms (crop, SpecAugment, resize, ...)
    mixers.py       per-sample mixing (RandomMixer, SigmoidConcatMixer, UseMixerWithProb)
    batch.py        the same augmentation as tensor ops over a batch (augment=device)
"""
