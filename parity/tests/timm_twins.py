"""What the timm families' twin tests share: the zoo's factories, a digest of a state-dict layout,
and the full check of one small pair."""

from __future__ import annotations

import hashlib

from parity import api, zoo

TORCH, KERAS = zoo.ZOO_FACTORIES["torch"], zoo.ZOO_FACTORIES["tf"]


def layout_digest(shapes: dict) -> str:
    """sha256 of the sorted "name (shape)" lines of a state dict: timm's layout in one string."""
    text = "\n".join(f"{name} {tuple(int(d) for d in shape)}" for name, shape in sorted(shapes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def check_pair(twin_workers, name: str, config: dict, input_shape: tuple) -> api.TwinResult:
    """Every check but determinism (the zoo's cases run that), judged as the zoo's deep networks.

    At timm's fresh initialisation activations can shrink through depth (EfficientNet: about 4x a
    block, SiLU and an SE gate near 0.5, logits ~1e-4), where float64's atol of 1e-7 is loose:
    relative to each tensor's own scale, float64 must agree to round-off."""
    result = api.check_twins(TORCH, KERAS, name=name, config=config, input_shape=input_shape, onnx=True,
                             determinism=False, runners=twin_workers, **zoo.DEEP)
    assert result.passed, str(result)
    assert {r.check for r in result.results} >= {"contract", "transfer", "layerwise_propagated", "layerwise_isolated",
                                                 "layerwise_float64", "gradients_float64", "gradients", "onnx"}
    rows = result.result("layerwise_float64").to_dict()["layers"]
    assert max(row["scale_rel"] for row in rows) < 1e-12, max(rows, key=lambda row: row["scale_rel"])
    failing = [entry for entry in result.coverage["not_compared"] if entry["fails"]]
    assert not failing, failing
    return result
