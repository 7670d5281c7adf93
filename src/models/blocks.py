"""Building blocks shared by the CNN models.

Parameter-count findings (checked against the original system's published
counts, see tests/test_models.py):

* ``ConvBlock`` convolutions have **no bias** in the skip-attention models
  (the BatchNorm right after makes a bias redundant), but **do** have a bias in
  the plain public-kernel baseline (``SimpleKaggle``); hence the ``bias`` flag.
* Skip-branch and merge convolutions (``ConvBnRelu``) have no bias.
* CBAM: the channel-attention MLP is two 1x1 convs **without bias**
  (C -> C/ratio -> C) shared by the avg- and max-pooled descriptors; the
  spatial-attention conv (2 -> 1 channels, k x k) has **no bias** either
  (7x7 = 98 weights, 3x3 = 18 weights, which is exactly the 80-parameter gap
  between the two published SkipAttention variants).
* ``ClassifierHead`` uses a single-parameter ``nn.PReLU`` and its second
  dropout is half of the first (0.4 -> 0.2 for Aux models, 0.2 -> 0.1 for
  SkipAttention and the baseline).

Initialisation, as in the original: only the ``ConvBlock`` convolutions get
Kaiming-normal weights (fan-in, ReLU gain: std sqrt(2 / fan_in); biases 0, its
BatchNorms weight 1 / bias 0). Everything else -- skip and merge convs, the CBAM
convs, heads, LSTM -- keeps PyTorch's default init (convs and linears:
uniform within +-1 / sqrt(fan_in)).
"""

import torch
import torch.nn as nn


class ConvBnRelu(nn.Sequential):
    """``k x k`` conv (same padding) -> BatchNorm2d -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int = 3, bias: bool = False):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size,
                      padding=kernel_size // 2, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvBlock(nn.Module):
    """[3x3 conv -> BN -> ReLU] x 2, then 2x2 average pooling (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False):
        super().__init__()
        self.conv1 = ConvBnRelu(in_channels, out_channels, bias=bias)
        self.conv2 = ConvBnRelu(out_channels, out_channels, bias=bias)
        self.pool = nn.AvgPool2d(2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs (biases 0), BatchNorm weight 1 / bias 0: this block only."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)  # fan_in, gain sqrt(2)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv2(self.conv1(x)))


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))).

    The MLP is shared between the two descriptors and built from bias-free
    1x1 convs (C -> C // ratio -> C). Returns the (B, C, 1, 1) gate.
    """

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = channels // ratio
        if hidden < 1:
            raise ValueError(f"ChannelAttention: channels={channels} is too small "
                             f"for ratio={ratio} (hidden size would be 0)")
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: sigmoid(conv_kxk([mean_c(x), max_c(x)])).

    Returns the (B, 1, H, W) gate. ``kernel_size`` must be odd (same padding).
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention: kernel_size must be a positive "
                             f"odd integer, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(dim=1, keepdim=True),
                          x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018).

    Channel attention first, then spatial attention on the re-weighted map;
    output has the input's shape.
    """

    def __init__(self, channels: int, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel_attention = ChannelAttention(channels, ratio)
        self.spatial_attention = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel_attention(x)
        return x * self.spatial_attention(x)


class ClassifierHead(nn.Sequential):
    """Dropout(p) -> Linear -> PReLU -> BatchNorm1d -> Dropout(p / 2) -> Linear.

    Takes pooled features (B, in_features), returns logits (B, num_classes).
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int,
                 dropout: float):
        super().__init__(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.PReLU(),
            nn.BatchNorm1d(hidden),
            nn.Dropout(dropout / 2),
            nn.Linear(hidden, num_classes),
        )
