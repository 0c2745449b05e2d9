"""Write a model's initial weights, as one framework initialises them, to a canonical file.

    python repro/init_weights.py --framework torch --model resnet18 --config '{"num_classes": 10}' \\
        --seed 153 --out init.safetensors

Trajectory parity (run.py --parity) starts both frameworks from torch's initialisation; the TF
run gets it from this script in a process of its own (never torch and TF in one process).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parity import frameworks  # noqa: E402
from repro.backends import Backend  # noqa: E402

PARITY_INIT_FRAMEWORK = frameworks.REFERENCE  # whose initialisation both parity runs start from


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python repro/init_weights.py", description=__doc__.split("\n")[0])
    p.add_argument("--framework", choices=frameworks.names(), default=PARITY_INIT_FRAMEWORK)
    p.add_argument("--model", required=True)
    p.add_argument("--config", default="{}", help="model options as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="canonical safetensors file to write")
    args = p.parse_args(argv)
    backend = Backend(args.framework)
    backend.build(args.model, json.loads(args.config), args.seed)
    print(backend.save_weights(args.out, {"init_framework": args.framework, "seed": str(args.seed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
