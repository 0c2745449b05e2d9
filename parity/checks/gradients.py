"""Float64 (the semantic proof) and the float32 train step (gradients and state).

In float64 with the same weights, every layer, every output and every gradient must agree at
float64 tolerance: float32 round-off is ~1e-9 times smaller there, so a difference left is a
semantic one.  The float32 step is then judged at the case's tolerances, and a gradient outside
them is re-judged only once the float64 check has passed (see :func:`check_gradients`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from parity.checks import explain
from parity.protocol import ArrayFile, layer_key
from parity.compare import (CONTINUITY_PROBE, LayerwiseResult, compare, compare_named, explained_by_discontinuity,
                            explained_by_own_roundoff, on_global_scale, own_error)
from parity.pair import TwinPair
from parity.runners import FrameworkRunner
from parity.verdict import CheckResult, require
from canon.tolerances import ToleranceSet

# float64 twins' outputs agree to this norm-wise relative error (measured: 1e-15 to 1e-13)
FLOAT64_OUTPUTS_MAX_REL = 1e-12
BN_STATISTICS = ("running_mean", "running_var")


def _gradients_cover_parameters(pair: TwinPair, comparison: LayerwiseResult):
    names = {row.name for row in comparison.rows}
    missing = sorted(f"grad:{n}" for n in pair.ref_model.weights if not n.endswith(BN_STATISTICS))
    missing = [n for n in missing if n not in names]
    return require("every parameter's gradient compared", not missing, f"not compared: {missing[:5]}"
                   + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))


def _within(comparison: LayerwiseResult, named: list[dict] = ()):
    bad = next((row for row in comparison.rows if not row.passed), None)
    cause = "".join(f"; at {c['layer']}: {c['text']}" for c in named)
    return require("every tensor within tolerance", comparison.passed,
                   f"first divergent {comparison.first_divergent}: {bad.reason if bad else ''}{cause}")


def check_float64(pair: TwinPair) -> tuple[CheckResult, CheckResult]:
    """(forward, gradients) in float64; computed once per pair."""
    if "float64" in pair.results:
        return pair.results["float64"]
    with pair.timed("float64"):
        x, targets = pair.inputs_as("float64"), pair.targets()

        statistics = explain.statistics_layers(pair)  # their train-mode inputs explain their statistics

        def run(runner: FrameworkRunner, _model) -> tuple[dict, list[str], dict]:
            model = pair.build(runner, dtype="float64")
            try:
                runner.load_weights(model, pair.weights_path)
                arrays, order = runner.forward(model, x, capture=pair.compared)
                return arrays, order, runner.gradients(model, x, targets, loss=pair.loss, capture=statistics)
            finally:
                runner.free(model)

        runs = pair.on_both(run)
        (reference, order, ref_grads), (actual, _, grads) = runs[pair.ref_name], runs[pair.other_name]
        strict = pair.case.float64_tolerances or ToleranceSet.for_dtype("float64")
        outputs = pair.output_keys()
        forward = compare_named(actual, reference, order + outputs, strict,
                                key=lambda n: n if n in outputs else layer_key(n), mode="propagated_float64")
        backward = compare_named(grads, ref_grads, pair.gradient_names(ref_grads), strict, mode="gradients_float64")
        # a semantic difference: name its probable cause (the first divergent layer, the statistics)
        divergent = forward.first_divergent
        layer_causes = [c for c in [explain.explain_layer(pair, divergent, reference, actual)]
                        if c] if divergent and divergent not in outputs else []
        state_causes = explain.explain_statistics(pair, backward, ref_grads, grads)
        pair.results["accepted_differences"] = {f"state:{c['layer']}.{s}": c for c in state_causes
                                                if c.get("accepted") for s in explain.STATISTICS}
        # kept on disk for the re-judgement of failed float32 gradients, read one tensor at a time
        pair.float64_gradients = {name: ArrayFile(pair.ref.scratch(f"{pair.case.name}-{name}-float64-grads", ".npz"),
                                                  arrays)
                                  for name, arrays in ((pair.ref_name, ref_grads), (pair.other_name, grads))}
    output_rows = [row for row in forward.rows if row.name in outputs]
    far = [f"{row.name}: {row.scale_rel}" for row in output_rows
           if row.scale_rel is None or row.scale_rel >= FLOAT64_OUTPUTS_MAX_REL]
    result = (
        CheckResult("layerwise_float64", [
            _within(forward, layer_causes),
            require(f"outputs agree to {FLOAT64_OUTPUTS_MAX_REL:g} (norm-wise)", output_rows and not far,
                    f"outputs: {far or 'none compared'}"),
        ], {"probable_causes": layer_causes}, comparison=forward),
        CheckResult("gradients_float64", [_within(backward, [c for c in state_causes if not c.get("accepted")]),
                                          _gradients_cover_parameters(pair, backward)],
                    {"probable_causes": state_causes}, comparison=backward),
    )
    pair.results["float64"] = result
    return result


def check_gradients(pair: TwinPair) -> CheckResult:
    """One train-mode step (dropout off) in both; every parameter gradient, the input's
    gradient and the state after it (BN running statistics), in canonical layout.

    Once the float64 check has passed, a gradient outside its tolerance is re-judged on the
    model's gradient scale (``on_global_scale``), then by each framework's own float32
    error against its float64 gradient (``explained_by_own_roundoff``), which is reported,
    and last by how far the float64 gradient itself jumps when the input moves by round-off
    (``explained_by_discontinuity``: a ReLU input within round-off of zero)."""
    forward64, backward64 = check_float64(pair)
    with pair.timed("gradients"):
        targets = pair.targets()
        runs = pair.on_both(lambda runner, model: runner.gradients(model, pair.x, targets, loss=pair.loss))
        ref, other = runs[pair.ref_name], runs[pair.other_name]
        comparison = compare_named(other, ref, pair.gradient_names(ref), pair.case.tolerances, mode="gradients")
        accepted = pair.results.get("accepted_differences", {})
        for i, row in enumerate(comparison.rows):  # what the float64 check accepted, with its reason
            if not row.passed and row.name in accepted:
                comparison.rows[i] = replace(row, passed=True, reason=f"known difference accepted by the case "
                                                                      f"(explained in float64): {accepted[row.name]['text']}")
        if forward64.passed and backward64.passed:
            _rejudge(pair, comparison, ref, other)
        loss = compare(other["loss"], ref["loss"], pair.case.tolerances.for_layer("loss"), "loss")
        comparison.rows.insert(0, loss)
    losses = {pair.ref_name: float(ref["loss"]), pair.other_name: float(other["loss"])}
    return CheckResult("gradients", [_within(comparison), _gradients_cover_parameters(pair, comparison)],
                       {"losses": losses}, comparison=comparison)


def _rejudge(pair: TwinPair, result: LayerwiseResult, ref: dict, other: dict) -> None:
    """Re-judge failed parameter gradients: model scale, own round-off, then continuity."""
    float64, tolerances = pair.float64_gradients, pair.case.tolerances
    scale = max(float(np.abs(v).max()) for k, v in ref.items() if k.startswith("grad:") and v.size)

    def failed(row) -> bool:
        return not row.passed and row.name.startswith("grad:") and row.name in float64[pair.ref_name]

    for i, row in enumerate(result.rows):
        if failed(row):
            own = {name: own_error(run[row.name], float64[name][row.name])
                   for name, run in ((pair.ref_name, ref), (pair.other_name, other))}
            tolerance = tolerances.for_layer(row.name)
            result.rows[i] = explained_by_own_roundoff(on_global_scale(row, scale, tolerance), own, scale, tolerance)
            result.rows[i].own_float32_error = own
    if any(failed(row) for row in result.rows):
        jumps = _float64_gradient_jumps(pair)
        result.rows = [explained_by_discontinuity(row, jumps.get(row.name), scale, tolerances.for_layer(row.name))
                       if failed(row) else row for row in result.rows]


def _float64_gradient_jumps(pair: TwinPair, probes: int = 4) -> dict[str, float]:
    """How far the reference's float64 gradients move when the input moves by
    ``CONTINUITY_PROBE`` (relative, fixed seeds): the largest change per tensor."""
    runner, base = pair.ref, pair.float64_gradients[pair.ref_name]
    x, targets = pair.inputs_as("float64"), pair.targets()
    with pair.timed("continuity"):
        model = pair.build(runner, dtype="float64")
        try:
            runner.load_weights(model, pair.weights_path)
            jumps: dict[str, float] = {}
            for probe in range(probes):
                rng = np.random.default_rng(pair.case.seed + 100 + probe)
                moved_inputs = [a * (1.0 + CONTINUITY_PROBE * rng.standard_normal(a.shape))
                                if np.issubdtype(a.dtype, np.floating) else a for a in x]
                moved = runner.gradients(model, moved_inputs, targets, loss=pair.loss)
                for name, value in moved.items():
                    if name.startswith("grad:"):
                        jumps[name] = max(jumps.get(name, 0.0), own_error(value, base[name]))
            return jumps
        finally:
            runner.free(model)
