"""Model zoo: name -> class registry and a ``create_model`` factory."""

import torch.nn as nn

from .simple_kaggle import SimpleKaggle
from .skip_attention import AuxSkipAttention, RnnAuxSkipAttention, SkipAttention
from .fcnet import FCNet  # the second-level (stacking) model

MODELS = {
    'AuxSkipAttention': AuxSkipAttention,
    'SkipAttention': SkipAttention,
    'RnnAuxSkipAttention': RnnAuxSkipAttention,
    'SimpleKaggle': SimpleKaggle,
    'FCNet': FCNet,
}

# Spectrogram models (input (B, 3, n_mels, frames)); FCNet takes feature vectors instead.
IMAGE_MODELS = tuple(name for name in MODELS if name != 'FCNet')

# Models whose forward returns (main, aux3, aux2, aux1) instead of a tensor.
AUX_MODELS = ('AuxSkipAttention', 'RnnAuxSkipAttention')


def main_output(prediction):
    """Models with auxiliary heads return (main, aux3, aux2, aux1); predictions use the main head."""
    return prediction[0] if isinstance(prediction, (tuple, list)) else prediction


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model('SkipAttention', num_classes=80)``."""
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


__all__ = ['MODELS', 'IMAGE_MODELS', 'AUX_MODELS', 'create_model', 'main_output', 'SimpleKaggle',
           'AuxSkipAttention', 'SkipAttention', 'RnnAuxSkipAttention', 'FCNet']
