"""A named cause for a float64 mismatch: the evidence the float64 check holds for one layer (its
inputs, both outputs, both twins' settings, its weights), handed to the catalogue of known
PyTorch/Keras differences (``parity.causes``), which tries each on that layer alone.

A BatchNorm's running statistics are explained from the train-mode pass the gradient check
makes; where the case accepts the named difference (``ParityCase.known_differences``) and it
explains the tensors fully, their rows pass, saying so."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from parity import causes
from parity.compare import LayerwiseResult
from parity.pair import TwinPair
from parity.protocol import input_key, layer_key
from canon.weights import load_canonical

STATISTICS = ("running_mean", "running_var")


def _module(modules: list[dict], name: str) -> dict:
    return next((m for m in modules if m["name"] == name), {"kind": "?", "config": {}})


def _layer_weights(pair: TwinPair, layer: str) -> dict[str, np.ndarray]:
    prefix = f"{layer}."
    return {name[len(prefix):]: value.astype(np.float64) for name, value in load_canonical(pair.weights_path).items()
            if name.startswith(prefix)}


def _inputs(arrays, layer: str) -> list[np.ndarray]:
    found, index = [], 0
    while input_key(layer, index) in arrays:
        found.append(np.asarray(arrays[input_key(layer, index)], dtype=np.float64))
        index += 1
    return found


def explain_layer(pair: TwinPair, layer: str, reference, actual) -> dict | None:
    """The probable cause of ``layer``'s float64 difference, as a report entry (None: no catalogued one)."""
    ref, other = _module(pair.ref_model.modules, layer), _module(pair.other_model.modules, layer)
    if layer_key(layer) not in reference or layer_key(layer) not in actual:
        return None
    evidence = causes.LayerEvidence(
        name=layer, reference_kind=ref["kind"], candidate_kind=other["kind"],
        reference_config=ref.get("config", {}), candidate_config=other.get("config", {}),
        inputs=_inputs(reference, layer), reference_output=np.asarray(reference[layer_key(layer)], dtype=np.float64),
        candidate_output=np.asarray(actual[layer_key(layer)], dtype=np.float64), weights=_layer_weights(pair, layer))
    return _entry(layer, causes.explain_layer(evidence))


def statistics_layers(pair: TwinPair) -> list[str]:
    """Compared layers that keep running statistics (their train-mode inputs are captured)."""
    held = {name.rsplit(".", 1)[0] for name in pair.ref_model.weights if name.endswith(STATISTICS)}
    return [name for name in pair.compared if name in held]


def explain_statistics(pair: TwinPair, comparison: LayerwiseResult, ref_grads, grads) -> list[dict]:
    """Name the cause of each layer whose running statistics differ after the float64 train step;
    accept the rows a case's known difference fully explains."""
    failed = {row.name.removeprefix("state:").rsplit(".", 1)[0] for row in comparison.rows
              if not row.passed and row.name.startswith("state:") and row.name.endswith(STATISTICS)}
    found = []
    initial = load_canonical(pair.weights_path) if failed else {}
    for layer in sorted(failed):
        batch = _inputs(ref_grads, layer)
        if not batch:
            continue
        ref, other = _module(pair.ref_model.modules, layer), _module(pair.other_model.modules, layer)
        names = {stat: f"{layer}.{stat}" for stat in STATISTICS}
        evidence = causes.StateEvidence(
            name=layer, reference_kind=ref["kind"], candidate_kind=other["kind"],
            reference_config=ref.get("config", {}), candidate_config=other.get("config", {}), batch_input=batch[0],
            before={s: initial[n].astype(np.float64) for s, n in names.items()},
            reference_after={s: np.asarray(ref_grads[f"state:{n}"], np.float64) for s, n in names.items()},
            candidate_after={s: np.asarray(grads[f"state:{n}"], np.float64) for s, n in names.items()})
        entry = _entry(layer, causes.explain_state(evidence))
        if entry is None:
            continue
        found.append(entry)
        if entry["key"] in pair.case.known_differences:
            entry["accepted"] = True
            accept(comparison, [f"state:{n}" for n in names.values()], entry)
    return found


def accept(comparison: LayerwiseResult, rows: list[str], entry: dict) -> None:
    """Rows a known difference explains pass, saying which difference and how closely."""
    for i, row in enumerate(comparison.rows):
        if row.name in rows and not row.passed:
            comparison.rows[i] = replace(row, passed=True, reason=f"known difference accepted by the case: {entry['text']}")


def _entry(layer: str, cause) -> dict | None:
    if cause is None:
        return None
    return {"layer": layer, "key": cause.key, "title": cause.title, "fix": cause.fix,
            "agreement": cause.agreement, "text": str(cause)}
