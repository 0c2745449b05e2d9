"""Tolerances: dtype-aware defaults, explicit modes, per-model and per-layer overrides."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

MODES = ("elementwise", "max", "mean")


@dataclass(frozen=True)
class Tolerance:
    """Pass rule ``|a - r| <= atol + rtol * |r|``.

    mode "elementwise" applies it to every element; "max" to the largest error
    against the largest reference magnitude; "mean" to the mean error against
    the mean reference magnitude.
    """

    rtol: float
    atol: float
    mode: str = "elementwise"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"tolerance mode must be one of {MODES}, got {self.mode!r}")
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError(f"tolerances must be non-negative, got rtol={self.rtol} atol={self.atol}")


# torch.testing's defaults, which users of both frameworks know
DTYPE_DEFAULTS: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float16": Tolerance(rtol=1e-3, atol=1e-5),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-5),
}


def default_for(dtype: str) -> Tolerance:
    try:
        return DTYPE_DEFAULTS[str(dtype)]
    except KeyError:
        raise ValueError(f"no default tolerance for dtype {dtype!r}; known: {sorted(DTYPE_DEFAULTS)}") from None


@dataclass(frozen=True)
class ToleranceSet:
    """A model's tolerances: one default and overrides by layer-name pattern (fnmatch).

    The last matching override wins, so a general pattern can be refined later.
    """

    default: Tolerance = field(default_factory=lambda: DTYPE_DEFAULTS["float32"])
    per_layer: tuple[tuple[str, Tolerance], ...] = ()

    def for_layer(self, name: str) -> Tolerance:
        chosen = self.default
        for pattern, tolerance in self.per_layer:
            if fnmatch.fnmatchcase(name, pattern):
                chosen = tolerance
        return chosen

    def with_override(self, pattern: str, tolerance: Tolerance) -> "ToleranceSet":
        return replace(self, per_layer=self.per_layer + ((pattern, tolerance),))

    @classmethod
    def for_dtype(cls, dtype: str) -> "ToleranceSet":
        return cls(default=default_for(dtype))


# Two frameworks' training runs of the same seed and settings (repro/compare.py), by the runs'
# precision; "max" mode: the largest difference against the largest reference magnitude, per
# step loss and per tensor.  1e-5 is the target for float64 and float32 trajectories alike;
# float32 runs with Adam exceed it within a few steps (round-off in near-zero gradients becomes
# a full +-lr step once Adam divides by sqrt(v)), which the report states rather than hides.
TRAJECTORY: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-5, atol=0.0, mode="max"),
    "float32": Tolerance(rtol=1e-5, atol=0.0, mode="max"),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=0.0, mode="max"),
}
# the ONNX export of a run against the run's own framework, on the test split's first samples;
# exports are float32 models (a float64 or bfloat16 run exports its float32 twin: repro/backends.py)
ONNX_AGAINST_FRAMEWORK: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-5, atol=0.0, mode="max"),
    "float32": Tolerance(rtol=1e-5, atol=0.0, mode="max"),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=0.0, mode="max"),  # TF exports its float32 twin
}
