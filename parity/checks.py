"""The parity pipeline for one twin pair: transfer, layer-wise, gradients, ONNX, determinism.

A :class:`ParityCase` says what to build (factories, model name, config),
on what input, and with which tolerances; :class:`TwinPair` runs each check
through a reference runner and a candidate runner and returns plain results
that the report module writes.  Nothing here knows the zoo.
"""

from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from parity.compare import LayerwiseResult, bitwise_equal, compare, compare_named
from parity.runners import BuiltModel, FrameworkRunner, OnnxRuntimeRunner
from spec import inputs as spec_inputs
from spec.tolerances import ToleranceSet
from spec.weights import load_canonical, save_canonical

OUTPUT = "output:0"


@dataclass(frozen=True)
class ParityCase:
    """One twin pair to check. ``factories`` maps framework -> "module:function"."""

    name: str
    model: str
    factories: dict
    config: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] = (2, 3, 64, 80)
    tolerances: ToleranceSet = field(default_factory=ToleranceSet)
    loss: str = "cross_entropy"
    seed: int = 0
    opset: int = 18
    reference: str = "torch"
    allow_square_input: bool = False  # only where the architecture fixes a square input

    def targets(self, output_shape: tuple[int, ...]) -> np.ndarray:
        if self.loss == "cross_entropy":
            return spec_inputs.class_targets(output_shape[0], output_shape[1], seed=self.seed + 1)
        return np.random.default_rng(self.seed + 1).standard_normal(output_shape).astype(np.float32)


def _layer(name: str) -> str:
    return f"layer:{name}"


class TwinPair:
    """Both twins of one case, built in their workers with the reference's weights transferred."""

    def __init__(self, case: ParityCase, runners: dict[str, FrameworkRunner]):
        if case.reference not in runners or len(runners) != 2:
            raise ValueError(f"need two runners including the reference {case.reference!r}, got {sorted(runners)}")
        self.case = case
        self.ref_name = case.reference
        self.other_name = next(n for n in runners if n != case.reference)
        self.ref, self.other = runners[self.ref_name], runners[self.other_name]
        self.x = spec_inputs.parity_input(case.input_shape, seed=case.seed, allow_square=case.allow_square_input)
        self.durations: dict[str, float] = {}
        self._handles = itertools.count()
        with self.timed("build"):
            self.ref_model = self._build(self.ref)
            self.other_model = self._build(self.other)
            self.initial = {
                self.ref_name: self.ref.save_weights(self.ref_model)[1],
                self.other_name: self.other.save_weights(self.other_model)[1],
            }
            self.weights_path, self.weights_digest = self.ref.save_weights(self.ref_model)
            self.audit = self.other.load_weights(self.other_model, self.weights_path)
        self._reference_run: tuple[dict, list[str]] | None = None

    def _build(self, runner: FrameworkRunner) -> BuiltModel:
        handle = f"{self.case.name}-{runner.framework}-{next(self._handles)}"
        return runner.build(self.case.factories[runner.framework], self.case.model, self.case.config,
                            seed=self.case.seed, handle=handle)

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
                     "seed": case.seed, "loss": case.loss, "reference": case.reference, "factories": case.factories},
            "environment": {self.ref_name: self.ref.environment, self.other_name: self.other.environment},
            "durations": self.durations,
        }

    def close(self) -> None:
        for runner, model in ((self.ref, self.ref_model), (self.other, self.other_model)):
            runner.free(model)

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

    def _round_trip(self, source: FrameworkRunner, target: FrameworkRunner) -> dict:
        """source init -> target -> source, bit for bit, on fresh models."""
        first, back = self._build(source), self._build(target)
        again = self._build(source)
        try:
            path, digest = source.save_weights(first)
            audit_there = target.load_weights(back, path)
            path_there, digest_there = target.save_weights(back)
            audit_back = source.load_weights(again, path_there)
            digest_back = source.save_weights(again)[1]
        finally:
            for runner, model in ((source, first), (target, back), (source, again)):
                runner.free(model)
        route = f"{source.framework}->{target.framework}->{source.framework}"
        return {"route": route, "bit_exact_there": digest_there == digest, "bit_exact_back": digest_back == digest,
                "audits": [audit_there, audit_back]}

    def check_transfer(self) -> dict:
        with self.timed("transfer"):
            return {"audit": self.audit, "round_trips": [self._round_trip(self.ref, self.other),
                                                         self._round_trip(self.other, self.ref)]}

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
            return compare_named(actual, reference, order, self.case.tolerances, key=_layer, mode=mode)

    def check_weights_file(self, path: str, mode: str = "propagated") -> LayerwiseResult:
        """Load a canonical file into a fresh candidate and compare it layer-wise with the reference."""
        model = self._build(self.other)
        try:
            self.other.load_weights(model, path)
            reference, order = self.reference_run()
            actual, _ = self.other.forward(model, self.x, capture=True)
            return compare_named(actual, reference, order, self.case.tolerances, key=_layer, mode=mode)
        finally:
            self.other.free(model)

    # -- gradients ----------------------------------------------------------------
    def check_gradients(self) -> tuple[LayerwiseResult, dict]:
        """One train-mode step (dropout off) in both; every parameter gradient and the
        state after it (BN running statistics), in canonical layout."""
        with self.timed("gradients"):
            reference_out = self.reference_run()[0][OUTPUT]
            targets = self.case.targets(reference_out.shape)
            ref = self.ref.gradients(self.ref_model, self.x, targets, loss=self.case.loss)
            other = self.other.gradients(self.other_model, self.x, targets, loss=self.case.loss)
            # canonical (state_dict) order: the first divergent tensor is the earliest in the network
            names = [key for name in self.ref_model.weights for key in (f"grad:{name}", f"state:{name}") if key in ref]
            result = compare_named(other, ref, names, self.case.tolerances, mode="gradients")
            loss = compare(other["loss"], ref["loss"], self.case.tolerances.for_layer("loss"), "loss")
            result.rows.insert(0, loss)
            return result, {self.ref_name: float(ref["loss"]), self.other_name: float(other["loss"])}

    # -- ONNX ------------------------------------------------------------------
    def check_onnx(self, workdir: str) -> dict:
        """Export both, run both in onnxruntime, and compare the four outputs pairwise."""
        with self.timed("onnx"):
            outputs, exports = {}, {}
            for name, runner, model in ((self.ref_name, self.ref, self.ref_model),
                                        (self.other_name, self.other, self.other_model)):
                path, info = runner.export_onnx(model, self.case.input_shape, path=f"{workdir}/{self.case.name}-{name}.onnx",
                                                opset=self.case.opset)
                session = OnnxRuntimeRunner(path)
                exports[name] = {**info, "path": path, "onnxruntime": session.settings}
                outputs[name] = runner.forward(model, self.x)[0]
                outputs[f"{name}-onnx"] = session.infer(self.x)
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
            result = {}
            for name, runner, model in ((self.ref_name, self.ref, self.ref_model),
                                        (self.other_name, self.other, self.other_model)):
                again = self._build(runner)
                try:
                    same_init = runner.save_weights(again)[1] == self.initial[name]
                finally:
                    runner.free(again)
                first, second = runner.forward(model, self.x)[0], runner.forward(model, self.x)[0]
                result[name] = {
                    "same_seed_same_weights": same_init,
                    "repeat_forward_bitwise": all(bitwise_equal(first[k], second[k]) for k in first),
                    "threads": runner.environment["threads"],
                    "flags": runner.environment["flags"],
                }
            return result


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
    gradients, losses = pair.check_gradients()
    onnx = pair.check_onnx(workdir)
    determinism = pair.check_determinism()
    for section, data in (("contract", contract), ("transfer", transfer), ("layerwise_propagated", propagated),
                          ("layerwise_isolated", isolated), ("gradients", gradients), ("losses", losses),
                          ("onnx", onnx), ("determinism", determinism), *pair.metadata().items()):
        report.record(name, section, data)
    return all((
        not any(contract["weights_only_in"].values()), not contract["shape_mismatches"],
        all(t["bit_exact_there"] and t["bit_exact_back"] for t in transfer["round_trips"]),
        propagated.passed, isolated.passed, gradients.passed, onnx["passed"],
        all(v for side in determinism.values() for v in side.values() if isinstance(v, bool)),
    ))
