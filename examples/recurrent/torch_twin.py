"""An LSTM then a GRU over a feature sequence, in PyTorch, classifying from the last step."""

from torch import nn


class Recurrent(nn.Module):
    def __init__(self, features: int = 5, hidden: int = 8, num_classes: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x, _ = self.lstm(x)
        x, _ = self.gru(x)
        return self.head(x[:, -1])


def create(name: str = "recurrent", **config) -> nn.Module:
    return Recurrent(**config)
