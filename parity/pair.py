"""One twin pair: what to build (:class:`ParityCase`) and the pair built, with the
reference's weights transferred (:class:`TwinPair`).

The pair only builds, transfers and runs; the checks in :mod:`parity.checks` judge what it
produces.  Nothing here knows the zoo.
"""

from __future__ import annotations

import copy
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from parity import frameworks
from parity.coverage import Coverage, compared_layers, coverage
from parity.protocol import ArrayFile, input_gradient_key, output_key
from parity.runners import BuiltModel, FrameworkRunner, discard
from canon import inputs as spec_inputs
from canon.tolerances import ToleranceSet
from canon.weights import load_canonical, save_canonical


@dataclass(frozen=True)
class ParityCase:
    """One twin pair to check. ``factories`` maps framework -> "module:function"."""

    name: str
    model: str
    factories: dict
    config: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = (2, 3, 64, 80)
    # whole-network checks (propagated, gradients, outputs); isolated (one layer) may be stricter
    tolerances: ToleranceSet = field(default_factory=ToleranceSet)
    isolated_tolerances: ToleranceSet | None = None
    float64_tolerances: ToleranceSet | None = None  # the float64 check's (default: float64's dtype default)
    loss: str | tuple[str, ...] = "cross_entropy"  # one kind, or one per output (summed)
    seed: int = 0
    opset: int = 18
    reference: str = frameworks.REFERENCE
    allow_square_input: bool = False  # only where the architecture fixes a square input
    slow: bool = False  # the full pipeline runs in the slow suite only (`make test-slow`)
    full_size: bool = False  # a paper-size timm model: `make test-full-size` only, one case at a time
    # check -> why it is known to fail (the tests mark it xfail(strict): it must keep failing)
    known_failures: dict = field(default_factory=dict)
    # the model's inputs, when not one image of input_shape: InputSpec entries (made from the
    # seed), or arrays (real data, token ids, masks) with one layout each in input_layouts
    inputs: tuple = ()
    input_layouts: tuple[str, ...] = ()
    # module name -> why it is not compared (a weight-holding module without counterpart fails otherwise)
    uncompared: dict = field(default_factory=dict)
    # catalogued differences (parity.causes keys) accepted where they explain a tensor fully
    known_differences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        specs = [x for x in self.inputs if isinstance(x, spec_inputs.InputSpec)]
        if specs and len(specs) != len(self.inputs):
            raise ValueError(f"case {self.name!r}: inputs are all InputSpec or all arrays, not a mix")
        if self.inputs and not specs:
            layouts = self.input_layouts or tuple("plain" for x in self.inputs if np.ndim(x) < 3)
            spec_inputs.check_inputs([np.asarray(x) for x in self.inputs], layouts, f"case {self.name!r}")
            object.__setattr__(self, "input_layouts", tuple(layouts))

    def input_specs(self) -> list[dict]:
        """``{shape, dtype, layout}`` of each model input, for the workers."""
        if not self.inputs:
            return [{"shape": list(self.input_shape), "dtype": "float32", "layout": "image"}]
        if isinstance(self.inputs[0], spec_inputs.InputSpec):
            return [{"shape": list(s.shape), "dtype": s.dtype, "layout": s.layout} for s in self.inputs]
        return [{"shape": list(np.shape(x)), "dtype": str(np.asarray(x).dtype), "layout": layout}
                for x, layout in zip(self.inputs, self.input_layouts)]

    def make_inputs(self) -> list[np.ndarray]:
        if not self.inputs:
            return [spec_inputs.parity_input(self.input_shape, seed=self.seed, allow_square=self.allow_square_input)]
        if isinstance(self.inputs[0], spec_inputs.InputSpec):
            return spec_inputs.make_inputs(self.inputs, self.seed)
        return [np.asarray(x) for x in self.inputs]

    def losses(self, output_shapes: list[tuple[int, ...]]) -> tuple[str, ...]:
        """One loss kind per output; ``"auto"``: cross-entropy on (batch, classes) logits, else MSE."""
        if self.loss == "auto":
            return tuple("cross_entropy" if len(shape) == 2 else "mse" for shape in output_shapes)
        return (self.loss,) * len(output_shapes) if isinstance(self.loss, str) else tuple(self.loss)

    def targets(self, output_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Fixed targets for each output, of the kind its loss takes."""
        rng = np.random.default_rng(self.seed + 1)
        targets = []
        for kind, shape in zip(self.losses(output_shapes), output_shapes):
            if kind == "cross_entropy":
                targets.append(spec_inputs.class_targets(shape[0], shape[1], seed=self.seed + 1))
            elif kind in ("bce", "bce_logits"):
                targets.append((rng.random(shape) < 0.5).astype(np.float32))
            else:
                targets.append(rng.standard_normal(shape).astype(np.float32))
        return targets


class TwinPair:
    """The twins of one case, built in their workers with the reference's weights transferred:
    one reference and one or more candidates.  The checks look at the reference and one
    candidate, ``other`` (the first); :meth:`versus` gives the same built pair seen with another
    candidate, so a third framework is one more row of the matrix, not another pair to build."""

    def __init__(self, case: ParityCase, runners: dict[str, FrameworkRunner]):
        if case.reference not in runners or len(runners) < 2:
            raise ValueError(f"need the reference {case.reference!r} and at least one candidate, got {sorted(runners)}")
        misnamed = [name for name, runner in runners.items() if runner.framework != name]
        if misnamed:
            raise ValueError(f"runners must be keyed by their framework; check {misnamed}")
        self.case, self.runners = case, dict(runners)
        self.ref_name = case.reference
        self.candidates = tuple(name for name in runners if name != case.reference)
        self.x = case.make_inputs()  # the model's inputs, canonical layout
        self.durations: dict[str, float] = {}
        self._handles = itertools.count()
        with self.timed("build"):
            built = self.concurrently({name: self.build_with_digest for name in runners})
            self.models = {name: model for name, (model, _) in built.items()}
            self.initial = {name: digest for name, (_, (_, digest)) in built.items()}
            self.initial_paths = {name: path for name, (_, (path, _)) in built.items()}  # each twin's own init
            # the reference's initial weights are what every twin then holds
            self.weights_path, self.weights_digest = self.initial_paths[self.ref_name], self.initial[self.ref_name]
            self.audits = self.concurrently({name: (lambda runner, n=name: runner.load_weights(self.models[n],
                                                                                                self.weights_path))
                                             for name in self.candidates})
        # one reference pass for every candidate, recording the layers any candidate shares with it
        shared = set().union(*(compared_layers(self.models[self.ref_name].modules, self.models[c].modules)
                               for c in self.candidates))
        self._shared: dict = {"reference_run": None,
                              "recorded": [m["name"] for m in self.models[self.ref_name].modules if m["name"] in shared]}
        self._views: list[TwinPair] = []
        self._look_at(self.candidates[0])
        self._shared["views"] = {self.candidates[0]: self}  # one view per candidate, whoever asks

    def _look_at(self, candidate: str) -> None:
        self.other_name = candidate
        self.ref, self.other = self.runners[self.ref_name], self.runners[candidate]
        self.ref_model, self.other_model = self.models[self.ref_name], self.models[candidate]
        self.audit = self.audits[candidate]
        self.compared = compared_layers(self.ref_model.modules, self.other_model.modules)
        self.rebuilt_digests: dict[str, str] = {}  # initial digests of later same-seed builds
        self.results: dict = {}  # what a check computed once and another reuses (the float64 run)
        self.float64_gradients: dict[str, ArrayFile] = {}  # on disk, for re-judging float32 gradients

    def versus(self, candidate: str) -> "TwinPair":
        """This pair seen with ``candidate`` as the other side; its models and the reference's
        pass are shared, each view's results are its own.  A candidate has one view: asked for
        again (by any view), it is the same one, with what its checks computed (the float64 run
        the gradients check re-judges by).  Closing this pair closes its views."""
        if candidate not in self.candidates:
            raise ValueError(f"{candidate!r} is not a candidate of {self.case.name!r}; candidates: {self.candidates}")
        views = self._shared["views"]
        if candidate not in views:
            view = copy.copy(self)
            view.durations = {}
            view._look_at(candidate)
            self._views.append(view)
            views[candidate] = view
        return views[candidate]

    def build(self, runner: FrameworkRunner, dtype: str = "float32") -> BuiltModel:
        handle = f"{self.case.name}-{runner.framework}-{next(self._handles)}"
        return runner.build(self.case.factories[runner.framework], self.case.model, self.case.config,
                            seed=self.case.seed, handle=handle, dtype=dtype, inputs=self.case.input_specs())

    def runner(self, name: str) -> FrameworkRunner:
        return self.runners[name]

    def model(self, name: str) -> BuiltModel:
        return self.models[name]

    def concurrently(self, work: dict) -> dict:
        """Run ``work[framework](runner)`` for each framework at once: the workers are separate
        processes, so two frameworks use two cores while this process only waits."""
        with ThreadPoolExecutor(len(work)) as pool:
            futures = {name: pool.submit(job, self.runner(name)) for name, job in work.items()}
            return {name: future.result() for name, future in futures.items()}

    def on_both(self, job) -> dict:
        """``job(runner, model)`` on both twins at once."""
        return self.concurrently({name: (lambda runner, n=name: job(runner, self.model(n)))
                                   for name in (self.ref_name, self.other_name)})

    @contextmanager
    def timed(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.durations[step] = round(self.durations.get(step, 0.0) + time.perf_counter() - start, 3)

    def metadata(self) -> dict:
        """What was checked and where: the case, both environments, and time per step."""
        case = self.case
        return {
            "case": {"model": case.model, "config": case.config, "input_shape": list(case.input_shape),
                     "inputs": case.input_specs(),
                     "seed": case.seed, "loss": case.loss if isinstance(case.loss, str) else list(case.loss), "reference": case.reference, "factories": case.factories},
            "environment": {self.ref_name: self.ref.environment, self.other_name: self.other.environment},
            "durations": self.durations,
        }

    def close(self) -> None:
        for view in (self, *self._views):
            for arrays in view.float64_gradients.values():
                arrays.close()
            view.float64_gradients, view.results = {}, {}
        for name, model in self.models.items():
            self.runners[name].free(model)
        discard(*self.initial_paths.values())
        if self._shared["reference_run"] is not None:
            self._shared["reference_run"][0].close()
        self._shared["reference_run"] = None
        self._shared["views"] = {}

    @staticmethod
    def digest_and_discard(runner: FrameworkRunner, model: BuiltModel) -> str:
        path, digest = runner.save_weights(model)
        discard(path)
        return digest

    def build_with_digest(self, runner: FrameworkRunner) -> tuple[BuiltModel, tuple[str, str]]:
        model = self.build(runner)
        return model, runner.save_weights(model)

    def fresh(self, runner: FrameworkRunner) -> tuple[BuiltModel, str]:
        """A new model from the case's seed; its initial digest doubles as the same-seed check."""
        model, (path, digest) = self.build_with_digest(runner)
        discard(path)
        self.rebuilt_digests[runner.framework] = digest
        return model, digest

    def reference_run(self) -> tuple[dict, list[str]]:
        if self._shared["reference_run"] is None:
            # kept on disk: read one layer at a time, and handed to the isolated check by path
            self._shared["reference_run"] = self.ref.forward(self.ref_model, self.x, capture=self._shared["recorded"],
                                                             keep=True)
        return self._shared["reference_run"]

    def output_keys(self) -> list[str]:
        outputs = self.reference_run()[0]
        return [key for key in map(output_key, range(len(outputs))) if key in outputs]

    def output_shapes(self) -> list[tuple[int, ...]]:
        outputs = self.reference_run()[0]
        return [outputs[key].shape for key in self.output_keys()]

    def targets(self) -> list[np.ndarray]:
        return self.case.targets(self.output_shapes())

    @property
    def loss(self) -> list[str]:
        """The case's loss, one kind per output of the reference."""
        return list(self.case.losses(self.output_shapes()))

    def gradient_names(self, arrays: dict) -> list[str]:
        """Canonical (state_dict) order, so the first divergent tensor is the earliest in the
        network; the input's gradient last, as the end of the backward pass."""
        names = [key for name in self.ref_model.weights for key in (f"grad:{name}", f"state:{name}") if key in arrays]
        return names + [key for key in map(input_gradient_key, range(len(self.x))) if key in arrays]

    def coverage(self) -> Coverage:
        """The compared layers, and every module of either twin that is not, with the reason."""
        return coverage({self.ref_name: self.ref_model.modules, self.other_name: self.other_model.modules},
                        self.compared, self.case.uncompared)

    def lossy(self) -> list[list[str]]:
        """The canonical tensors either twin's mapping adds together."""
        return [group for model in (self.ref_model, self.other_model) for group in model.lossy]

    def inputs_as(self, dtype: str) -> list[np.ndarray]:
        """The inputs with their floating arrays cast (integer ids and masks stay as they are)."""
        return [x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x for x in self.x]


def corrupt_weights(source: str, target: str, name: str) -> None:
    """Write a copy of a canonical file with one conv kernel damaged as a converter
    that forgot the transpose damages it: the OIHW buffer reshaped to HWIO."""
    tensors = load_canonical(source)
    w = tensors[name]
    hwio = w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0])  # the bug: a reshape
    tensors[name] = np.ascontiguousarray(hwio.transpose(3, 2, 0, 1))  # as a correct loader reads it back
    save_canonical(target, tensors)
