"""FCNet: the second-level model, an MLP with a squeeze-excitation gate over its inputs.

The input is one clip's averaged first-level probabilities, all experiments side
by side (7 experiments x 80 classes = 560 features in the original). The gate
learns how much to trust each (experiment, class) feature for the clip at hand:

    gate = sigmoid(Linear(in, in // reduction) -> ReLU -> Linear(in // reduction, in))
    x    = x * gate
    x    -> Linear(in, 2 * base) -> PReLU -> Dropout
         -> Linear(2 * base, base) -> PReLU -> Dropout
         -> Linear(base, num_classes)                      logits

Every Linear has a bias and each PReLU a single shared slope (torch's default
`num_parameters=1`). That is what reproduces the original's parameter count:
with 560 inputs, 80 classes, base 512 and reduction 1,

    gate   2 x (560 * 560 + 560)  =   628,320
    fc1    560 * 1024 + 1024      =   574,464
    fc2    1024 * 512 + 512       =   524,800
    head   512 * 80 + 80          =    41,040
    PReLU  2 x 1                  =         2
    total                         = 1,768,626
"""
import torch
import torch.nn as nn


class SqueezeExcitation(nn.Module):
    """x * sigmoid(MLP(x)): a per-feature gate computed from the whole feature vector."""

    def __init__(self, in_features: int, reduction: int = 16):
        super().__init__()
        if reduction < 1 or in_features // reduction < 1:
            raise ValueError(f"SqueezeExcitation: reduction {reduction} leaves no hidden unit for "
                             f"{in_features} inputs")
        hidden = in_features // reduction
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, in_features)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(x))))


class FCNet(nn.Module):
    """(B, in_features) averaged first-level probabilities -> (B, num_classes) logits."""

    def __init__(self, in_features: int, num_classes: int, base_size: int = 512, reduction: int = 16,
                 dropout: float = 0.0):
        super().__init__()
        self.se = SqueezeExcitation(in_features, reduction)
        self.fc = nn.Sequential(
            nn.Linear(in_features, 2 * base_size),
            nn.PReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * base_size, base_size),
            nn.PReLU(),
            nn.Dropout(dropout),
            nn.Linear(base_size, num_classes),
        )

    def forward(self, x):
        return self.fc(self.se(x))
