"""Port a checkpoint from one twin to the other through the canonical format, and prove it.

    torch checkpoint (e.g. torchvision's resnet18-f37072fd.pth)
        -> torch twin -> canonical .safetensors -> Keras twin -> .weights.h5
    then both twins run the same input and every layer is compared.

The worker processes keep the two frameworks apart, and run one after the other: the source's
worker reads the checkpoint (and fails on a bad one) before the target's starts.  Nothing is
written outside ``out_dir``, every file there is written atomically, and a failed port leaves
``out_dir`` as it found it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from parity import frameworks
from parity.protocol import layer_key, output_key
from parity.compare import compare, compare_named
from parity.runners import FrameworkRunner
from canon import inputs as spec_inputs
from canon import models as spec_models
from canon.errors import ConfigError
from canon.files import atomic_write_bytes
from canon.tolerances import ToleranceSet

def port_checkpoint(model: str, checkpoint: str, out_dir: str, factories: dict, config: dict | None = None,
                    source: str = frameworks.REFERENCE, target: str | None = None, input_shape: tuple[int, ...] | None = None,
                    tolerances: ToleranceSet | None = None, threads: int = 1, overwrite: bool = False,
                    call_timeout: float | None = None) -> dict:
    """Load ``checkpoint`` into the ``source`` twin, carry it to ``target``'s (by default the first
    other framework of ``factories``), check layer by layer.

    Returns (and writes as ``port.json``) the paths, the transfer audit and the comparison.
    ``call_timeout``: seconds a worker may take over one request (None: the worker default)."""
    config = dict(config or {})
    target = target or next(f for f in factories if f != source)
    if target == source:
        raise ValueError(f"the target framework must differ from the source ({source})")
    _check_options(model, config)
    _check_file(checkpoint)
    out = Path(out_dir)
    paths = {"canonical": out / f"{model}.safetensors", target: out / f"{model}{frameworks.get(target).native_suffix}",
             "report": out / "port.json"}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"refusing to overwrite {existing}; choose another --out or pass --overwrite")
    x = spec_inputs.parity_input(input_shape or _default_input_shape(model, config), seed=0, allow_square=True)
    # a checkpoint's activations reach tens: judged norm-wise (the error against the tensor's
    # largest value), as the zoo's deep networks are in parity (parity.zoo.NORMWISE), unless told
    tolerances = tolerances or _normwise()
    with _undone_on_failure(out, (source, target)):
        with _runner(source, out, threads, call_timeout) as src:
            a = src.build(factories[source], model, config)
            loaded = src.load_native(a, checkpoint)
            src.save_weights(a, str(paths["canonical"]), metadata={"ported_from": str(checkpoint), "model": model})
            reference, order = src.forward(a, x, capture=True)
        with _runner(target, out, threads, call_timeout) as dst:
            b = dst.build(factories[target], model, config)
            audit = dst.load_weights(b, str(paths["canonical"]))
            dst.save_native(b, str(paths[target]))
            actual, _ = dst.forward(b, x, capture=True)
        layers = compare_named(actual, reference, order, tolerances, key=layer_key, mode="propagated")
        outputs = [compare(actual.get(k), reference[k], tolerances.for_layer(k), k)
                   for k in map(output_key, range(len(reference))) if k in reference]
        result = {
            "model": model, "config": config, "source": source, "target": target, "checkpoint": str(checkpoint),
            "files": {k: str(v) for k, v in paths.items()}, "loaded": loaded, "audit": audit,
            "input_shape": list(x.shape), "layerwise": layers.to_dict(), "outputs": [row.to_dict() for row in outputs],
            "tolerances": {"default": vars(tolerances.default)},
            "beyond_tolerance": [row.name for row in layers.rows + outputs if not row.passed],
            "passed": layers.passed and all(row.passed for row in outputs),
        }
        atomic_write_bytes(str(paths["report"]), json.dumps(result, indent=2).encode())
    return result


def _normwise() -> ToleranceSet:
    from parity.zoo import NORMWISE

    return NORMWISE


def _check_options(model: str, config: dict) -> None:
    """A bad option fails here, before any worker starts.  A model the spec does not know is
    left to its factory (``port_checkpoint`` takes any pair of factories)."""
    if model not in spec_models.list_models():
        return
    try:
        spec_models.resolve(model, **config)
    except TypeError as error:  # a value of the wrong kind, e.g. {"widths": 5}, meets validate()'s arithmetic
        raise ConfigError(f"model {model!r}: an option in {config} has the wrong type ({error})") from None


def _check_file(checkpoint: str) -> None:
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if Path(checkpoint).stat().st_size == 0:  # torch.load's own word for it is an IndexError
        raise ValueError(f"checkpoint {checkpoint} is empty (0 bytes)")


def _default_input_shape(model: str, config: dict) -> tuple[int, ...]:
    """The zoo's parity input for this model, with the config's channel count."""
    from parity import zoo

    resolved = spec_models.resolve(model, **config)  # first: a misspelt model is named as such
    case = next((c for c in zoo.CASES.values() if c.model == model), None)
    if case is None:
        raise ValueError(f"no default input shape for {model!r}; pass input_shape")
    channels = getattr(resolved, "in_channels", case.input_shape[1])
    size = getattr(resolved, "input_size", case.input_shape[2:])  # models that fix their input size
    return (case.input_shape[0], channels, *size)


def _runner(framework: str, out: Path, threads: int, call_timeout: float | None) -> FrameworkRunner:
    return FrameworkRunner(framework, threads, workdir=str(out / f".work-{framework}"), call_timeout=call_timeout)


@contextlib.contextmanager
def _undone_on_failure(out: Path, frameworks):
    """Create ``out``; on every exit remove the workers' scratch folders in it.  On a failure
    also remove what this run added to ``out`` (its outputs so far, and the temporary a worker
    killed mid-write leaves), then the folders it created, if empty.  What was there before
    stays (a file replaced with --overwrite stays replaced); two ports into one folder at
    once are not supported."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    before = set(out.iterdir()) if out.is_dir() else set()
    out.mkdir(parents=True, exist_ok=True)
    done = False
    try:
        yield
        done = True
    finally:
        for framework in frameworks:
            shutil.rmtree(out / f".work-{framework}", ignore_errors=True)
        if not done:
            _remove_added(out, before, created)


def _remove_added(out: Path, before: set[Path], folders: list[Path]) -> None:
    for path in set(out.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for folder in folders:  # deepest first; one left non-empty keeps its parents
        try:
            folder.rmdir()
        except OSError:
            return
