"""Skip-connection + CBAM attention CNNs of the winning FSAT 2019 system.

Shared trunk (``SkipAttentionBackbone``), with b = ``base_size`` (64 = full size)::

    conv1: ConvBlock(3 -> b)     H/2,  W/2  --avgpool 8--> 3x3 conv -> 8b  (skip1)
    conv2: ConvBlock(b -> 2b)    H/4,  W/4  --avgpool 4--> 3x3 conv -> 8b  (skip2)
    conv3: ConvBlock(2b -> 4b)   H/8,  W/8  --avgpool 2--> 3x3 conv -> 8b  (skip3)
    conv4: ConvBlock(4b -> 8b)   H/16, W/16
    cat[conv4, skip1, skip2, skip3] (32b) -> CBAM -> 3x3 conv 32b -> 8b (merge)

All convs in the trunk are bias-free (each is followed by BatchNorm). Only the
ConvBlocks are Kaiming-initialised (see blocks.py); skip, merge and CBAM convs
keep PyTorch's default init, as in the original. Input
(B, 3, H, W) needs H and W divisible by 16 so all four branches end at the
same (H/16, W/16) resolution.

Published parameter counts for 80 classes and base 64, reproduced exactly:
AuxSkipAttention 17,326,950; SkipAttention 16,793,587 (7x7 spatial kernel) /
16,793,507 (3x3); RnnAuxSkipAttention 22,054,246. They decompose as trunk
4,687,296 (conv1-4) + skips 2,067,456 + CBAM 524,386 (bias-free MLP 524,288 +
bias-free 7x7 spatial conv 98) + merge 9,438,208, plus heads: 152,401 per
Aux head (Linear 512->256), 76,241 for the SkipAttention head (512->128),
and for the RNN variant a BiLSTM(512, 512) 4,202,496 + Linear(1024, 512) 524,800.
"""

import torch
import torch.nn as nn

from .blocks import CBAM, ClassifierHead, ConvBlock, ConvBnRelu


class SkipAttentionBackbone(nn.Module):
    """Four ConvBlocks + three pooled skip branches, fused by CBAM and a 3x3 conv.

    ``forward`` returns ``(merged, (skip1, skip2, skip3))``; every tensor is
    (B, 8b, H/16, W/16).
    """

    def __init__(self, base_size: int = 64, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        b = base_size
        self.conv1 = ConvBlock(3, b)
        self.conv2 = ConvBlock(b, b * 2)
        self.conv3 = ConvBlock(b * 2, b * 4)
        self.conv4 = ConvBlock(b * 4, b * 8)
        # Average-pool each earlier stage down to conv4's resolution, then
        # project to conv4's channel count.
        self.skip1 = nn.Sequential(nn.AvgPool2d(8), ConvBnRelu(b, b * 8))
        self.skip2 = nn.Sequential(nn.AvgPool2d(4), ConvBnRelu(b * 2, b * 8))
        self.skip3 = nn.Sequential(nn.AvgPool2d(2), ConvBnRelu(b * 4, b * 8))
        self.attention = CBAM(b * 32, ratio=ratio, kernel_size=kernel_size)
        self.merge = ConvBnRelu(b * 32, b * 8)
        self.out_channels = b * 8

    def forward(self, x: torch.Tensor):
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        x3 = self.conv3(x2)
        x4 = self.conv4(x3)
        s1, s2, s3 = self.skip1(x1), self.skip2(x2), self.skip3(x3)
        x = torch.cat([x4, s1, s2, s3], dim=1)
        x = self.merge(self.attention(x))
        return x, (s1, s2, s3)


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) mean over frequency and time."""
    return x.mean(dim=(2, 3))


class SkipAttention(nn.Module):
    """Skip-attention trunk + global average pool + one small head (512 -> 128).

    Returns logits (B, num_classes). Used with dropout 0.2 (second dropout 0.1)
    and spatial-attention ``kernel_size`` 7 or 3 in the original ensemble.
    """

    def __init__(self, num_classes: int = 80, base_size: int = 64,
                 dropout: float = 0.2, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        self.backbone = SkipAttentionBackbone(base_size, ratio, kernel_size)
        c = self.backbone.out_channels
        self.head = ClassifierHead(c, base_size * 2, num_classes, dropout)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features: what the head sees."""
        return global_avg_pool(self.backbone(x)[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))


class AuxSkipAttention(nn.Module):
    """Skip-attention trunk with a main head and three auxiliary heads.

    Main head: global average pool of the merged map -> 512 -> 256 -> classes.
    Aux heads: the same head shape on the globally pooled skip branches, so
    the early stages get a direct training signal (deep supervision).
    ``forward`` returns logits ``(main, aux3, aux2, aux1)``; the loss weights
    them 1.0, 0.4, 0.2, 0.1. Used with dropout 0.4.
    """

    def __init__(self, num_classes: int = 80, base_size: int = 64,
                 dropout: float = 0.4, ratio: int = 16, kernel_size: int = 7):
        super().__init__()
        self.backbone = SkipAttentionBackbone(base_size, ratio, kernel_size)
        c = self.backbone.out_channels
        hidden = base_size * 4
        self.head = ClassifierHead(c, hidden, num_classes, dropout)
        self.aux1 = ClassifierHead(c, hidden, num_classes, dropout)
        self.aux2 = ClassifierHead(c, hidden, num_classes, dropout)
        self.aux3 = ClassifierHead(c, hidden, num_classes, dropout)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Merged feature map (B, C, H', W') -> main-head input (B, C)."""
        return global_avg_pool(x)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C) pooled features: what the main head sees."""
        return self.pool(self.backbone(x)[0])

    def forward(self, x: torch.Tensor):
        x, (s1, s2, s3) = self.backbone(x)
        main = self.head(self.pool(x))
        aux1 = self.aux1(global_avg_pool(s1))
        aux2 = self.aux2(global_avg_pool(s2))
        aux3 = self.aux3(global_avg_pool(s3))
        return main, aux3, aux2, aux1


class RnnAuxSkipAttention(AuxSkipAttention):
    """AuxSkipAttention whose main branch models time with a bidirectional LSTM.

    Merged map (B, 8b, H', W') -> mean over frequency -> sequence (B, W', 8b)
    -> BiLSTM(8b, hidden 8b each way) -> Linear(16b, 8b) -> mean over time
    -> main head. Aux heads are unchanged. Returns ``(main, aux3, aux2, aux1)``.

    Note: TorchDynamo graph-breaks on ``nn.LSTM`` (unless
    ``torch._dynamo.config.allow_rnn``), so ``torch.compile(fullgraph=True)``
    fails for this model; plain ``torch.compile`` works.
    """

    def __init__(self, num_classes: int = 80, base_size: int = 64,
                 dropout: float = 0.4, ratio: int = 16, kernel_size: int = 7):
        super().__init__(num_classes, base_size, dropout, ratio, kernel_size)
        c = self.backbone.out_channels
        self.lstm = nn.LSTM(c, c, batch_first=True, bidirectional=True)
        self.lstm_proj = nn.Linear(c * 2, c)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=2).transpose(1, 2).contiguous()  # (B, W', C)
        x, _ = self.lstm(x)                              # (B, W', 2C)
        return self.lstm_proj(x).mean(dim=1)             # (B, C)
