"""Write tests/data/torchvision/*: torchvision's state_dict layout and outputs (see tests/torchvision_reference.py).

Needs torchvision, which does not import beside this project's CPU build of torch; run it in a
separate environment:  python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
                       PYTHONPATH=. /tmp/tv/bin/python tests/data/make_torchvision_references.py
"""

import json
import platform

import numpy as np
import torch
import torchvision

from canon.inputs import parity_input
from tests.torchvision_reference import DATA, MODELS, NOT_WEIGHTS, synthetic_weights


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name, (options, shape) in MODELS.items():
        net = getattr(torchvision.models, name)(weights=None, **options).eval()
        shapes = {k: list(v.shape) for k, v in net.state_dict().items() if not k.endswith(NOT_WEIGHTS)}
        weights = synthetic_weights(shapes)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
        x = parity_input(shape, seed=5)
        with torch.no_grad():
            y = net(torch.from_numpy(x)).numpy()
        np.savez_compressed(DATA / f"{name}.npz", x=x, y=y)
        meta = {"model": name, "options": options, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "python": platform.python_version(), "state_dict": shapes}
        (DATA / f"{name}.json").write_text(json.dumps(meta, indent=1))
        print(name, len(shapes), "tensors, output", y.shape)


if __name__ == "__main__":
    main()
