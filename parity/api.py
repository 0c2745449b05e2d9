"""Check any torch/Keras twin pair from Python: :func:`check_twins` and :func:`assert_twins`.

    from parity import check_twins
    result = check_twins(torch="mypkg.torch_net:create", keras="mypkg.keras_net:create",
                         input_shape=(2, 3, 48, 64))
    print(result)            # the table: every check, the first divergent layer, probable cause, coverage
    assert result.passed

Each factory is ``factory(name, **config)`` returning the model (``torch.nn.Module``; a
functional, ``Sequential`` or subclassed ``keras.Model``), given as ``"package.module:function"``
or as the function itself (it must be importable by that path: the frameworks run in worker
processes, which import it there).  The workers start once per Python process and are shared by
every call (:func:`close_workers` ends them; they end with the process anyway).
"""

from __future__ import annotations

import atexit
import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from parity import frameworks
from parity.verdict import CheckResult
from canon.inputs import InputSpec, load_input_file
from canon.tolerances import ToleranceSet

Factory = str | Callable


@dataclass
class TwinResult:
    """Every check of one pair, judged once: ``passed``, ``failures()``, a readable ``str`` (the
    table, the failures, the probable causes, what was not compared), ``to_dict()`` (JSON)."""

    name: str
    results: list[CheckResult]
    entry: dict = field(default_factory=dict)  # the report's record of this pair

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def failures(self) -> list[str]:
        return [line for result in self.results for line in result.failures()]

    def result(self, check: str) -> CheckResult:
        return next(r for r in self.results if r.check == check)

    @property
    def first_divergent(self) -> str | None:
        for check in ("layerwise_float64", "layerwise_isolated", "layerwise_propagated"):
            found = [r.first_divergent for r in self.results if r.check == check and r.first_divergent]
            if found:
                return found[0]
        return None

    @property
    def causes(self) -> list[dict]:
        return [cause for r in self.results for cause in r.details.get("probable_causes", [])]

    @property
    def coverage(self) -> dict:
        contract = next((r for r in self.results if r.check == "contract"), None)
        return contract.details.get("coverage", {}) if contract else {}

    def to_dict(self) -> dict:
        return {"name": self.name, "passed": self.passed, "failures": self.failures(),
                "first_divergent": self.first_divergent, "probable_causes": self.causes,
                "coverage": self.coverage, "checks": {r.check: r.to_dict() for r in self.results}}

    def __str__(self) -> str:
        from parity.report import describe_case

        return describe_case(self.name, self.entry or {r.check: r.to_dict() for r in self.results})

    def __bool__(self) -> bool:  # `if check_twins(...)` reads the verdict, as assert does
        return self.passed


def factory_path(factory: Factory, role: str) -> str:
    """``"module:function"`` for a factory given as a string or a function."""
    if isinstance(factory, str):
        if ":" not in factory:
            raise ValueError(f"{role} factory must look like 'package.module:function', got {factory!r}")
        return factory
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<locals>" in qualname:
        raise ValueError(f"{role} factory {factory!r} cannot be imported by a worker process: define it at the top "
                         "level of a module (not in __main__ or inside a function) or pass 'module:function'")
    return f"{module}:{qualname}"


def case_inputs(inputs=None, input_shape: Sequence[int] | None = None, input_dtype: str = "float32",
                input_range: tuple[float, float] | None = None, input_layout: str | Sequence[str] | None = None) -> dict:
    """The ParityCase fields for the inputs a user gives: explicit arrays (a list, a dict, or an
    ``.npz`` path) or a shape with dtype, range and layout."""
    layouts = [input_layout] if isinstance(input_layout, str) else list(input_layout or [])
    if inputs is None:
        if input_shape is None:
            raise ValueError("give input_shape (e.g. (2, 3, 48, 64)) or inputs (arrays or an .npz file)")
        shape = tuple(int(d) for d in input_shape)
        layout = layouts[0] if layouts else default_layout(shape, input_dtype)
        return {"inputs": (InputSpec(shape, input_dtype, layout, tuple(input_range) if input_range else None),)}
    if isinstance(inputs, (str, Path)):
        arrays = load_input_file(str(inputs))
    elif isinstance(inputs, Mapping):
        arrays = [np.asarray(v) for v in inputs.values()]
    elif isinstance(inputs, np.ndarray):
        arrays = [inputs]
    else:
        given = list(inputs)
        if given and all(isinstance(x, InputSpec) for x in given):
            return {"inputs": tuple(given)}
        arrays = [np.asarray(x) for x in given]
    layouts = layouts or [default_layout(a.shape, str(a.dtype)) for a in arrays]
    return {"inputs": tuple(arrays), "input_layouts": tuple(layouts)}


def default_layout(shape: Sequence[int], dtype: str) -> str:
    """Where the rank alone decides: a rank-4 float array is an image, integers and rank <= 2 are
    plain.  Rank 3 (a signal NCL, or a sequence (batch, tokens, features)?) and rank 5 must be
    declared: a guess would hide exactly the transposition bugs the check is for."""
    if np.dtype(dtype).kind in "iub" or len(shape) <= 2:
        return "plain"
    if len(shape) == 4:
        return "image"
    raise ValueError(f"an input of shape {tuple(shape)} could be a signal (N, C, L), a sequence (N, S, D) or a volume: "
                     "declare its layout (input_layout='signal' | 'sequence' | 'volume' | 'plain'; "
                     "--input-layout on the command line)")


# -- the workers, shared by every call in this process -------------------------------------

_RUNNERS: dict[str, Any] = {}


def workers(threads: int = 1, device: str = "cpu", names: tuple[str, ...] | None = None) -> dict:
    """The workers of ``names`` (default: the default matrix, ``frameworks.names()``), each started
    on first use and kept."""
    from parity.runners import FrameworkRunner

    names = names or frameworks.names()
    for name in names:
        runner = _RUNNERS.get(name)
        if runner is None or runner.worker.process.poll() is not None:
            _RUNNERS[name] = FrameworkRunner(name, threads, device)
    return {name: _RUNNERS[name] for name in names}


def close_workers() -> None:
    for runner in _RUNNERS.values():
        with contextlib.suppress(Exception):
            runner.close()
    _RUNNERS.clear()


atexit.register(close_workers)


def check_twins(torch: Factory, keras: Factory, *, name: str = "twin", config: dict | None = None,
                inputs=None, input_shape: Sequence[int] | None = None, input_dtype: str = "float32",
                input_range: tuple[float, float] | None = None, input_layout: str | Sequence[str] | None = None,
                loss: str | Sequence[str] = "auto", tolerances: ToleranceSet | None = None,
                isolated_tolerances: ToleranceSet | None = None, uncompared: dict | None = None,
                known_differences: Sequence[str] = (), seed: int = 0, onnx: bool = True, determinism: bool = True,
                report: str | Path | None = None, runners: dict | None = None,
                progress: Callable[[int, int, str], None] | None = None) -> TwinResult:
    """Every parity check of one pair; see the module docstring.  ``name`` is passed to both
    factories; ``uncompared`` declares modules without a counterpart (name -> why);
    ``known_differences`` accepts catalogued differences (``parity.causes``) where they fully
    explain a tensor; ``report`` merges the pair's record into a JSON report.  ``runners``: the
    reference's worker and one candidate's (default: torch and tf; ``workers(names=("torch",
    "keras-jax"))`` judges the Keras twin on the JAX backend)."""
    from parity.checks import run_checks
    from parity.pair import ParityCase, TwinPair
    from parity.report import ParityReport

    runners = runners or workers()
    candidates = [c for c in runners if c != frameworks.REFERENCE]
    if frameworks.REFERENCE not in runners or len(candidates) != 1:
        raise ValueError(f"check_twins judges one candidate against {frameworks.REFERENCE!r}: give their two workers "
                         f"(got {list(runners)}); check each row in a call of its own")
    case = ParityCase(
        name=name, model=name, config=dict(config or {}), seed=seed, loss=loss if isinstance(loss, str) else tuple(loss),
        factories={frameworks.REFERENCE: factory_path(torch, frameworks.get(frameworks.REFERENCE).title),
                   **{c: factory_path(keras, frameworks.get(c).title) for c in candidates}},
        tolerances=tolerances or ToleranceSet(), isolated_tolerances=isolated_tolerances,
        uncompared=dict(uncompared or {}), known_differences=tuple(known_differences),
        **case_inputs(inputs, input_shape, input_dtype, input_range, input_layout))
    skip = tuple(step for step, wanted in (("onnx", onnx), ("determinism", determinism)) if not wanted)
    with tempfile.TemporaryDirectory(prefix="twinframe-check-") as workdir:
        pair = TwinPair(case, runners)
        try:
            results = run_checks(pair, workdir, progress, skip)
            record = ParityReport(report or Path(workdir) / "parity.json")
            for result in results:
                record.record(name, result.check, result)
            for section, data in pair.metadata().items():
                record.record(name, section, data)
            if report:
                record.write()
        finally:
            pair.close()
    return TwinResult(name, results, record.cases[name])


def assert_twins(torch: Factory, keras: Factory, **options) -> TwinResult:
    """:func:`check_twins`, raising an ``AssertionError`` whose message is the result's table."""
    result = check_twins(torch, keras, **options)
    if not result.passed:
        raise AssertionError("\n" + str(result))
    return result
