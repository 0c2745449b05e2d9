"""A transformer encoder on integer token ids, in PyTorch: embedding, a learned position
embedding (a free nn.Parameter), one pre-norm block (attention, GELU MLP), mean pooling, a head."""

import torch
from torch import nn


class PositionEmbedding(nn.Module):
    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, width) * 0.02)

    def forward(self, x):
        return x + self.pos_embed


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * width, width)

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Encoder(nn.Module):
    def __init__(self, vocabulary: int = 40, tokens: int = 7, width: int = 16, heads: int = 2, num_classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.pos = PositionEmbedding(tokens, width)
        self.block = Block(width, heads)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, ids):
        x = self.norm(self.block(self.pos(self.embed(ids))))
        return self.head(x.mean(dim=1))


def create(name: str = "encoder", **config) -> nn.Module:
    return Encoder(**config)
