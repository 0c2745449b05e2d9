"""Write tests/data/timm/*: timm's state_dict layouts and outputs (see tests/timm_reference.py).

Needs timm (and so torchvision), which does not import beside this project's CPU build of torch;
run it in a separate environment:
    python -m venv /tmp/timm && /tmp/timm/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.22 numpy
    PYTHONPATH=. /tmp/timm/bin/python tests/data/make_timm_references.py
"""

import importlib
import json
import os
import platform

import numpy as np
import torch

from canon.inputs import parity_input
from tests.timm_reference import DATA, FULL_SIZE, NOT_WEIGHTS, REDUCED, synthetic_weights


def build(reference):
    import timm

    if reference.timm_builder is None:
        return timm.create_model(reference.timm_name, pretrained=False, **reference.timm_options)
    module, function = reference.timm_builder.split(":")
    return getattr(importlib.import_module(module), function)(reference.timm_name, **reference.timm_options)


def layout(net) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in net.state_dict().items() if not k.endswith(NOT_WEIGHTS)}


def versions() -> dict:
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version()}


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for model, reference in REDUCED.items():
        os.environ.update(reference.environment)
        net = build(reference).eval()
        shapes = layout(net)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in synthetic_weights(shapes).items()}, strict=False)
        x = parity_input(reference.input_shape, seed=5, allow_square=True)
        with torch.no_grad():
            y = net(torch.from_numpy(x)).numpy()
        np.savez_compressed(DATA / f"{model}.npz", x=x, y=y)
        meta = {"model": model, "timm_name": reference.timm_name, "timm_options": reference.timm_options,
                **versions(), "state_dict": shapes}
        (DATA / f"{model}.json").write_text(json.dumps(meta, indent=1))
        print(model, len(shapes), "tensors, output", y.shape, "max", float(np.abs(y).max()))
    for model, options in FULL_SIZE.items():
        import timm

        net = timm.create_model(model, pretrained=False, **options)
        meta = {"model": model, "timm_options": options, **versions(), "state_dict": layout(net)}
        (DATA / f"{model}.layout.json").write_text(json.dumps(meta, indent=1))
        print(model, "layout:", len(meta["state_dict"]), "tensors")


if __name__ == "__main__":
    main()
