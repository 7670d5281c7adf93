"""The plain 4-block CNN from a public FSAT 2019 Kaggle kernel (baseline).

Four ConvBlocks (channels 3 -> b -> 2b -> 4b -> 8b, b = ``base_size``), then
mean over time, then max over frequency (the kernel's pooling, which the
original's baseline kept), then a small head
Dropout(p) -> Linear(8b, 2b) -> PReLU -> BatchNorm1d -> Dropout(p/2) -> Linear.

Matching the published 4,765,457 parameters (80 classes, base 64) pins down
two details: the block convs **have biases** (1,920 bias parameters; the
skip-attention models do not), and the head's hidden layer is **512 -> 128**
(a 512 -> 512 hidden layer would give 4,993,937). Count: conv trunk 4,689,216
+ head 76,241 = 4,765,457.
"""

import torch
import torch.nn as nn

from .blocks import ClassifierHead, ConvBlock


class SimpleKaggle(nn.Module):
    """Baseline CNN; returns logits (B, num_classes) for input (B, 3, H, W)."""

    def __init__(self, num_classes: int = 80, base_size: int = 64,
                 dropout: float = 0.2):
        super().__init__()
        b = base_size
        self.conv = nn.Sequential(
            ConvBlock(3, b, bias=True),
            ConvBlock(b, b * 2, bias=True),
            ConvBlock(b * 2, b * 4, bias=True),
            ConvBlock(b * 4, b * 8, bias=True),
        )
        self.head = ClassifierHead(b * 8, b * 2, num_classes, dropout)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features: what the head sees."""
        x = self.conv(x).mean(dim=3)            # mean over time: (B, C, F)
        return x.amax(dim=2)                    # max over frequency: (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))
