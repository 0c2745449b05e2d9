"""Port a checkpoint from one twin to the other through the canonical format, and prove it.

    torch checkpoint (e.g. torchvision's resnet18-f37072fd.pth)
        -> torch twin -> canonical .safetensors -> Keras twin -> .weights.h5
    then both twins run the same input and every layer is compared.

The worker processes keep the two frameworks apart; nothing is written outside ``out_dir``,
and every file there is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from parity.adapters.common import layer_key, output_key
from parity.compare import compare, compare_named
from parity.runners import FrameworkRunner
from spec import inputs as spec_inputs
from spec import models as spec_models
from spec.tolerances import ToleranceSet
from spec.weights import atomic_write_bytes

NATIVE_SUFFIX = {"torch": ".pth", "tf": ".weights.h5"}


def port_checkpoint(model: str, checkpoint: str, out_dir: str, factories: dict, config: dict | None = None,
                    source: str = "torch", input_shape: tuple[int, ...] | None = None,
                    tolerances: ToleranceSet | None = None, threads: int = 1, overwrite: bool = False) -> dict:
    """Load ``checkpoint`` into the ``source`` twin, carry it to the other, check layer by layer.

    Returns (and writes as ``port.json``) the paths, the transfer audit and the comparison."""
    config = dict(config or {})
    target = next(f for f in factories if f != source)
    if model in spec_models.list_models():
        spec_models.resolve(model, **config)  # a bad option fails here, before any worker starts
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    out = Path(out_dir)
    paths = {"canonical": out / f"{model}.safetensors", target: out / f"{model}{NATIVE_SUFFIX[target]}",
             "report": out / "port.json"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"refusing to overwrite {existing}; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    x = spec_inputs.parity_input(input_shape or _default_input_shape(model, config), seed=0, allow_square=True)
    tolerances = tolerances or ToleranceSet()
    with FrameworkRunner(source, threads, workdir=str(out / f".work-{source}")) as src, \
            FrameworkRunner(target, threads, workdir=str(out / f".work-{target}")) as dst:
        a = src.build(factories[source], model, config)
        loaded = src.load_native(a, checkpoint)
        src.save_weights(a, str(paths["canonical"]), metadata={"ported_from": str(checkpoint), "model": model})
        b = dst.build(factories[target], model, config)
        audit = dst.load_weights(b, str(paths["canonical"]))
        dst.save_native(b, str(paths[target]))
        reference, order = src.forward(a, x, capture=True)
        actual, _ = dst.forward(b, x, capture=True)
    _remove_scratch(out, (source, target))
    layers = compare_named(actual, reference, order, tolerances, key=layer_key, mode="propagated")
    outputs = [compare(actual.get(k), reference[k], tolerances.for_layer(k), k)
               for k in map(output_key, range(len(reference))) if k in reference]
    result = {
        "model": model, "config": config, "source": source, "target": target, "checkpoint": str(checkpoint),
        "files": {k: str(v) for k, v in paths.items()}, "loaded": loaded, "audit": audit,
        "input_shape": list(x.shape), "layerwise": layers.to_dict(), "outputs": [row.to_dict() for row in outputs],
        "passed": layers.passed and all(row.passed for row in outputs),
    }
    atomic_write_bytes(str(paths["report"]), json.dumps(result, indent=2).encode())
    return result


def _default_input_shape(model: str, config: dict) -> tuple[int, ...]:
    """The zoo's parity input for this model, with the config's channel count."""
    from parity import zoo

    case = next((c for c in zoo.CASES.values() if c.model == model), None)
    if case is None:
        raise ValueError(f"no default input shape for {model!r}; pass input_shape")
    resolved = spec_models.resolve(model, **config)
    channels = getattr(resolved, "in_channels", case.input_shape[1])
    size = getattr(resolved, "input_size", case.input_shape[2:])  # models that fix their input size
    return (case.input_shape[0], channels, *size)


def _remove_scratch(out: Path, frameworks) -> None:
    import shutil

    for framework in frameworks:
        shutil.rmtree(out / f".work-{framework}", ignore_errors=True)
