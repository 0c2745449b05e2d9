"""The parity pipeline for one twin pair: transfer, layer-wise, gradients, ONNX, determinism.

A :class:`ParityCase` says what to build (factories, model name, config),
on what input, and with which tolerances; :class:`TwinPair` runs each check
through a reference runner and a candidate runner and returns plain results
that the report module writes.  Nothing here knows the zoo.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from parity.adapters.common import INPUT_GRADIENT, ArrayFile, layer_key, output_key
from parity.compare import (CONTINUITY_PROBE, LayerwiseResult, bitwise_equal, compare, compare_named,
                            explained_by_discontinuity, explained_by_own_roundoff, on_global_scale, own_error)
from parity.runners import BuiltModel, FrameworkRunner, OnnxRuntimeRunner, discard
from spec import inputs as spec_inputs
from spec.tolerances import ToleranceSet
from spec.weights import load_canonical, save_canonical



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
    loss: str | tuple[str, ...] = "cross_entropy"  # one kind, or one per output (summed)
    seed: int = 0
    opset: int = 18
    reference: str = "torch"
    allow_square_input: bool = False  # only where the architecture fixes a square input
    slow: bool = False  # the full pipeline runs in the slow suite only (`make test-slow`)
    # check -> why it is known to fail (the tests mark it xfail(strict): it must keep failing)
    known_failures: dict = field(default_factory=dict)

    def losses(self, outputs: int) -> tuple[str, ...]:
        return (self.loss,) * outputs if isinstance(self.loss, str) else tuple(self.loss)

    def targets(self, output_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Fixed targets for each output, of the kind its loss takes."""
        rng = np.random.default_rng(self.seed + 1)
        targets = []
        for kind, shape in zip(self.losses(len(output_shapes)), output_shapes):
            if kind == "cross_entropy":
                targets.append(spec_inputs.class_targets(shape[0], shape[1], seed=self.seed + 1))
            elif kind in ("bce", "bce_logits"):
                targets.append((rng.random(shape) < 0.5).astype(np.float32))
            else:
                targets.append(rng.standard_normal(shape).astype(np.float32))
        return targets


class TwinPair:
    """Both twins of one case, built in their workers with the reference's weights transferred."""

    def __init__(self, case: ParityCase, runners: dict[str, FrameworkRunner]):
        if case.reference not in runners or len(runners) != 2:
            raise ValueError(f"need two runners including the reference {case.reference!r}, got {sorted(runners)}")
        misnamed = [name for name, runner in runners.items() if runner.framework != name]
        if misnamed:
            raise ValueError(f"runners must be keyed by their framework; check {misnamed}")
        self.case = case
        self.ref_name = case.reference
        self.other_name = next(n for n in runners if n != case.reference)
        self.ref, self.other = runners[self.ref_name], runners[self.other_name]
        self.x = spec_inputs.parity_input(case.input_shape, seed=case.seed, allow_square=case.allow_square_input)
        self.durations: dict[str, float] = {}
        self._handles = itertools.count()
        with self.timed("build"):
            built = self._concurrently({name: self._build_with_digest for name in (self.ref_name, self.other_name)})
            (self.ref_model, _), (self.other_model, _) = built[self.ref_name], built[self.other_name]
            self.initial = {name: digest for name, (_, (_, digest)) in built.items()}
            self.initial_paths = {name: path for name, (_, (path, _)) in built.items()}  # each twin's own init
            # the reference's initial weights are what both twins then hold
            self.weights_path, self.weights_digest = self.initial_paths[self.ref_name], self.initial[self.ref_name]
            self.audit = self.other.load_weights(self.other_model, self.weights_path)
        self._reference_run: tuple[dict, list[str]] | None = None
        self.rebuilt_digests: dict[str, str] = {}  # initial digests of later same-seed builds
        self._float64: tuple[LayerwiseResult, LayerwiseResult] | None = None
        self._float64_gradients: dict[str, ArrayFile] = {}

    def _build(self, runner: FrameworkRunner, dtype: str = "float32") -> BuiltModel:
        handle = f"{self.case.name}-{runner.framework}-{next(self._handles)}"
        return runner.build(self.case.factories[runner.framework], self.case.model, self.case.config,
                            seed=self.case.seed, handle=handle, dtype=dtype)

    def runner(self, name: str) -> FrameworkRunner:
        return self.ref if name == self.ref_name else self.other

    def model(self, name: str) -> BuiltModel:
        return self.ref_model if name == self.ref_name else self.other_model

    def _concurrently(self, work: dict) -> dict:
        """Run ``work[framework](runner)`` for each framework at once: the workers are separate
        processes, so two frameworks use two cores while this process only waits."""
        with ThreadPoolExecutor(len(work)) as pool:
            futures = {name: pool.submit(job, self.runner(name)) for name, job in work.items()}
            return {name: future.result() for name, future in futures.items()}

    def _on_both(self, job) -> dict:
        """``job(runner, model)`` on both twins at once."""
        return self._concurrently({name: (lambda runner, n=name: job(runner, self.model(n)))
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
                     "seed": case.seed, "loss": case.loss if isinstance(case.loss, str) else list(case.loss), "reference": case.reference, "factories": case.factories},
            "environment": {self.ref_name: self.ref.environment, self.other_name: self.other.environment},
            "durations": self.durations,
        }

    def close(self) -> None:
        for runner, model in ((self.ref, self.ref_model), (self.other, self.other_model)):
            runner.free(model)
        discard(*self.initial_paths.values())
        for arrays in self._float64_gradients.values():
            arrays.close()
        self._float64_gradients, self._reference_run = {}, None

    @staticmethod
    def _digest_and_discard(runner: FrameworkRunner, model: BuiltModel) -> str:
        path, digest = runner.save_weights(model)
        discard(path)
        return digest

    # -- contract and transfer ------------------------------------------------
    def contract(self) -> dict:
        """Canonical names and shapes, parameter counts and compared layers agree."""
        a, b = self.ref_model, self.other_model
        return {
            "parameters": {self.ref_name: a.parameters, self.other_name: b.parameters},
            "weights_only_in": {self.ref_name: sorted(set(a.weights) - set(b.weights)),
                                self.other_name: sorted(set(b.weights) - set(a.weights))},
            "shape_mismatches": {n: [a.weights[n], b.weights[n]] for n in sorted(set(a.weights) & set(b.weights))
                                 if a.weights[n] != b.weights[n]},
            "layers_only_in": {self.ref_name: sorted(set(a.layers) - set(b.layers)),
                               self.other_name: sorted(set(b.layers) - set(a.layers))},
        }

    def _build_with_digest(self, runner: FrameworkRunner) -> tuple[BuiltModel, tuple[str, str]]:
        model = self._build(runner)
        return model, runner.save_weights(model)

    def _fresh(self, runner: FrameworkRunner) -> tuple[BuiltModel, str]:
        """A new model from the case's seed; its initial digest doubles as the same-seed check."""
        model, (path, digest) = self._build_with_digest(runner)
        discard(path)
        self.rebuilt_digests[runner.framework] = digest
        return model, digest

    def check_transfer(self) -> dict:
        """Both directions, bit for bit: ref -> other -> ref and other -> ref -> other."""
        with self.timed("transfer"):
            ref, other = self.ref, self.other
            fresh = self._concurrently({name: self._fresh for name in (self.ref_name, self.other_name)})
            (fresh_ref, _), (fresh_other, other_digest) = fresh[self.ref_name], fresh[self.other_name]
            try:
                # ref init (already loaded into other_model) -> other -> ref
                there_path, there = other.save_weights(self.other_model)
                audit_back = ref.load_weights(fresh_ref, there_path)
                back = self._digest_and_discard(ref, fresh_ref)
                trips = [{"route": f"{ref.framework}->{other.framework}->{ref.framework}",
                          "bit_exact_there": there == self.weights_digest, "bit_exact_back": back == self.weights_digest,
                          "audits": [self.audit, audit_back]}]
                # other's own init -> ref -> other
                discard(there_path)
                own_path = other.save_weights(fresh_other)[0]
                audit_there = ref.load_weights(fresh_ref, own_path)
                there_path, there = ref.save_weights(fresh_ref)
                audit_back = other.load_weights(fresh_other, there_path)
                back = self._digest_and_discard(other, fresh_other)
                discard(own_path, there_path)
                trips.append({"route": f"{other.framework}->{ref.framework}->{other.framework}",
                              "bit_exact_there": there == other_digest, "bit_exact_back": back == other_digest,
                              "audits": [audit_there, audit_back]})
            finally:
                ref.free(fresh_ref)
                other.free(fresh_other)
            return {"audit": self.audit, "round_trips": trips}

    # -- forward comparisons ----------------------------------------------------
    def reference_run(self) -> tuple[dict, list[str]]:
        if self._reference_run is None:
            self._reference_run = self.ref.forward(self.ref_model, self.x, capture=True)
        return self._reference_run

    def check_layerwise(self, mode: str = "propagated") -> LayerwiseResult:
        """propagated: each framework runs the whole network; isolated: each layer of the
        candidate is fed the reference's input to that layer (local error only)."""
        with self.timed(f"layerwise_{mode}"):
            reference, order = self.reference_run()
            if mode == "propagated":
                actual, _ = self.other.forward(self.other_model, self.x, capture=True)
            elif mode == "isolated":
                actual = self.other.forward_isolated(self.other_model, reference, order)
            else:
                raise ValueError(f"layer-wise mode must be 'propagated' or 'isolated', got {mode!r}")
            tolerances = (self.case.isolated_tolerances or self.case.tolerances) if mode == "isolated" else self.case.tolerances
            return compare_named(actual, reference, order, tolerances, key=layer_key, mode=mode)

    def check_weights_file(self, path: str) -> LayerwiseResult:
        """Load a canonical file into a fresh candidate and compare it layer-wise with the reference."""
        model = self._build(self.other)
        try:
            self.other.load_weights(model, path)
            reference, order = self.reference_run()
            actual, _ = self.other.forward(model, self.x, capture=True)
            return compare_named(actual, reference, order, self.case.tolerances, key=layer_key, mode="propagated")
        finally:
            self.other.free(model)

    def check_float64(self) -> tuple[LayerwiseResult, LayerwiseResult]:
        """Both twins rebuilt in float64 with the same (float32) weights: every layer's output,
        then every gradient, compared at float64 tolerance.

        float32 round-off grows with depth; in float64 it is ~1e-9 times smaller, so any
        difference left at float64 tolerance is a semantic one, not rounding."""
        if self._float64 is not None:
            return self._float64
        with self.timed("float64"):
            x = self.x.astype("float64")
            targets = self._targets()

            def run(runner: FrameworkRunner, _model) -> tuple[dict, list[str], dict]:
                model = self._build(runner, dtype="float64")
                try:
                    runner.load_weights(model, self.weights_path)
                    arrays, order = runner.forward(model, x, capture=True)
                    return arrays, order, runner.gradients(model, x, targets, loss=self.case.loss)
                finally:
                    runner.free(model)

            runs = self._on_both(run)
            (reference, order, ref_grads), (actual, _, grads) = runs[self.ref_name], runs[self.other_name]
            strict = ToleranceSet.for_dtype("float64")
            outputs = self._output_keys()
            forward = compare_named(actual, reference, order + outputs, strict,
                                    key=lambda n: n if n in outputs else layer_key(n), mode="propagated_float64")
            backward = compare_named(grads, ref_grads, self._gradient_names(ref_grads), strict, mode="gradients_float64")
            # kept on disk for the re-judgement of failed float32 gradients, read one tensor at a time
            self._float64_gradients = {name: ArrayFile(self.ref.scratch(f"{self.case.name}-{name}-float64-grads", ".npz"),
                                                       arrays)
                                       for name, arrays in ((self.ref_name, ref_grads), (self.other_name, grads))}
            self._float64 = (forward, backward)
            return self._float64

    def _output_keys(self) -> list[str]:
        outputs = self.reference_run()[0]
        return [key for key in map(output_key, range(len(outputs))) if key in outputs]

    def _targets(self) -> list[np.ndarray]:
        outputs = self.reference_run()[0]
        return self.case.targets([outputs[key].shape for key in self._output_keys()])

    def _gradient_names(self, arrays: dict) -> list[str]:
        """Canonical (state_dict) order, so the first divergent tensor is the earliest in the
        network; the input's gradient last, as the end of the backward pass."""
        names = [key for name in self.ref_model.weights for key in (f"grad:{name}", f"state:{name}") if key in arrays]
        return names + [INPUT_GRADIENT] if INPUT_GRADIENT in arrays else names

    # -- gradients ----------------------------------------------------------------
    def check_gradients(self) -> tuple[LayerwiseResult, dict]:
        """One train-mode step (dropout off) in both; every parameter gradient, the input's
        gradient and the state after it (BN running statistics), in canonical layout.

        Once the float64 check has passed, a gradient outside its tolerance is re-judged on the
        model's gradient scale (``on_global_scale``), then by each framework's own float32
        error against its float64 gradient (``explained_by_own_roundoff``), which is reported,
        and last by how far the float64 gradient itself jumps when the input moves by round-off
        (``explained_by_discontinuity``: a ReLU input within round-off of zero)."""
        forward64, backward64 = self.check_float64()
        with self.timed("gradients"):
            targets = self._targets()
            runs = self._on_both(lambda runner, model: runner.gradients(model, self.x, targets, loss=self.case.loss))
            ref, other = runs[self.ref_name], runs[self.other_name]
            result = compare_named(other, ref, self._gradient_names(ref), self.case.tolerances, mode="gradients")
            if forward64.passed and backward64.passed:
                self._rejudge(result, ref, other)
            loss = compare(other["loss"], ref["loss"], self.case.tolerances.for_layer("loss"), "loss")
            result.rows.insert(0, loss)
            return result, {self.ref_name: float(ref["loss"]), self.other_name: float(other["loss"])}

    def _rejudge(self, result: LayerwiseResult, ref: dict, other: dict) -> None:
        """Re-judge failed parameter gradients: model scale, own round-off, then continuity."""
        float64 = self._float64_gradients
        scale = max(float(np.abs(v).max()) for k, v in ref.items() if k.startswith("grad:") and v.size)

        def failed(row) -> bool:
            return not row.passed and row.name.startswith("grad:") and row.name in float64[self.ref_name]

        for i, row in enumerate(result.rows):
            if failed(row):
                own = {name: own_error(run[row.name], float64[name][row.name])
                       for name, run in ((self.ref_name, ref), (self.other_name, other))}
                tolerance = self.case.tolerances.for_layer(row.name)
                result.rows[i] = explained_by_own_roundoff(on_global_scale(row, scale, tolerance), own, scale, tolerance)
                result.rows[i].own_float32_error = own
        if any(failed(row) for row in result.rows):
            jumps = self._float64_gradient_jumps()
            result.rows = [explained_by_discontinuity(row, jumps.get(row.name), scale, self.case.tolerances.for_layer(row.name))
                           if failed(row) else row for row in result.rows]

    def _float64_gradient_jumps(self, probes: int = 4) -> dict[str, float]:
        """How far the reference's float64 gradients move when the input moves by
        ``CONTINUITY_PROBE`` (relative, fixed seeds): the largest change per tensor."""
        runner, base = self.ref, self._float64_gradients[self.ref_name]
        x, targets = self.x.astype("float64"), self._targets()
        with self.timed("continuity"):
            model = self._build(runner, dtype="float64")
            try:
                runner.load_weights(model, self.weights_path)
                jumps: dict[str, float] = {}
                for probe in range(probes):
                    noise = np.random.default_rng(self.case.seed + 100 + probe).standard_normal(x.shape)
                    moved = runner.gradients(model, x * (1.0 + CONTINUITY_PROBE * noise), targets, loss=self.case.loss)
                    for name, value in moved.items():
                        if name.startswith("grad:"):
                            jumps[name] = max(jumps.get(name, 0.0), own_error(value, base[name]))
                return jumps
            finally:
                runner.free(model)

    # -- ONNX ------------------------------------------------------------------
    def check_onnx(self, workdir: str, keep_files: bool = False) -> dict:
        """Export both, run both in onnxruntime, and compare the four outputs pairwise.
        The ONNX files are removed afterwards unless ``keep_files`` (VGG's are 0.5 GB each)."""
        with self.timed("onnx"):
            def export_and_run(runner: FrameworkRunner, model: BuiltModel) -> tuple[dict, dict, dict]:
                start = time.perf_counter()
                path, info = runner.export_onnx(model, self.case.input_shape, opset=self.case.opset,
                                                path=f"{workdir}/{self.case.name}-{runner.framework}.onnx")
                seconds = round(time.perf_counter() - start, 2)
                session = OnnxRuntimeRunner(path)
                export = {**info, "path": path if keep_files else None, "export_seconds": seconds,
                          "bytes": Path(path).stat().st_size, "onnxruntime": session.settings}
                onnx_out = session.infer(self.x)
                del session
                if not keep_files:
                    discard(path)
                return export, runner.forward(model, self.x)[0], onnx_out

            outputs, exports = {}, {}
            for name, (export, native, onnx_out) in self._on_both(export_and_run).items():
                exports[name], outputs[name], outputs[f"{name}-onnx"] = export, native, onnx_out
            matrix = []
            for a, b in itertools.combinations(outputs, 2):
                keys = sorted(outputs[b])
                for key in keys:
                    row = compare(outputs[a].get(key), outputs[b][key], self.case.tolerances.for_layer(key), key)
                    matrix.append({"a": a, "b": b, **row.to_dict()})
            return {"exports": exports, "matrix": matrix, "passed": all(row["passed"] for row in matrix)}

    # -- determinism ---------------------------------------------------------------
    def check_determinism(self) -> dict:
        """Same seed -> bitwise-identical initial weights; two forward passes -> identical outputs."""
        with self.timed("determinism"):
            def check(runner: FrameworkRunner, model: BuiltModel) -> dict:
                if runner.framework not in self.rebuilt_digests:
                    runner.free(self._fresh(runner)[0])
                first, second = runner.forward(model, self.x)[0], runner.forward(model, self.x)[0]
                return {
                    "same_seed_same_weights": self.rebuilt_digests[runner.framework] == self.initial[runner.framework],
                    "repeat_forward_bitwise": all(bitwise_equal(first[k], second[k]) for k in first),
                    "threads": runner.environment["threads"],
                    "flags": runner.environment["flags"],
                }

            return self._on_both(check)


def corrupt_weights(source: str, target: str, name: str) -> None:
    """Write a copy of a canonical file with one conv kernel damaged as a converter
    that forgot the transpose damages it: the OIHW buffer reshaped to HWIO."""
    tensors = load_canonical(source)
    w = tensors[name]
    hwio = w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0])  # the bug: a reshape
    tensors[name] = np.ascontiguousarray(hwio.transpose(3, 2, 0, 1))  # as a correct loader reads it back
    save_canonical(target, tensors)


def run_case(pair: TwinPair, report, workdir: str) -> bool:
    """Every check of one pair, recorded in ``report``; True when all pass."""
    name = pair.case.name
    contract = pair.contract()
    transfer = pair.check_transfer()
    propagated, isolated = pair.check_layerwise("propagated"), pair.check_layerwise("isolated")
    float64, float64_gradients = pair.check_float64()
    gradients, losses = pair.check_gradients()
    onnx = pair.check_onnx(workdir)
    determinism = pair.check_determinism()
    for section, data in (("contract", contract), ("transfer", transfer), ("layerwise_propagated", propagated),
                          ("layerwise_isolated", isolated), ("layerwise_float64", float64),
                          ("gradients_float64", float64_gradients), ("gradients", gradients), ("losses", losses),
                          ("onnx", onnx), ("determinism", determinism), *pair.metadata().items()):
        report.record(name, section, data)
    return all((
        not any(contract["weights_only_in"].values()), not contract["shape_mismatches"],
        all(t["bit_exact_there"] and t["bit_exact_back"] for t in transfer["round_trips"]),
        propagated.passed, isolated.passed, float64.passed, float64_gradients.passed, gradients.passed, onnx["passed"],
        all(v for side in determinism.values() for v in side.values() if isinstance(v, bool)),
    ))
