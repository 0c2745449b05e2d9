"""``python -m impl_tf.summary MODEL ...``: parameter counts per block. Twin: impl_torch/summary.py."""

import sys

from impl_tf import create_model
from canon.summary import main


def count(name: str, config: dict) -> tuple[dict[str, int], dict[str, int]]:
    net = create_model(name, **config)
    # variable paths are "<layer name>/<variable>": the layer name is the canonical block path
    canonical = lambda v: v.path.replace("/", ".")
    trainable = {canonical(v): int(v.numpy().size) for v in net.trainable_weights}
    buffers = {canonical(v): int(v.numpy().size) for v in net.non_trainable_weights}
    return trainable, buffers


if __name__ == "__main__":
    sys.exit(main("tf", count))
