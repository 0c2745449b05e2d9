"""``python -m impl_torch.summary MODEL ...``: parameter counts per block. Twin: impl_tf/summary.py."""

import sys

from impl_torch import create_model
from canon.summary import main


def count(name: str, config: dict) -> tuple[dict[str, int], dict[str, int]]:
    net = create_model(name, **config)
    trainable = {n: p.numel() for n, p in net.named_parameters()}
    buffers = {n: b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked")}
    return trainable, buffers


if __name__ == "__main__":
    sys.exit(main("torch", count))
