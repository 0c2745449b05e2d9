"""An nn.Sequential MLP: its modules are named 0, 1, 2, ..."""

from torch import nn


def create(name: str = "mlp", features: int = 6, hidden: int = 10, num_classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, num_classes))
