"""What a check decided, said once: a typed result that carries every pass criterion.

Each parity check returns a :class:`CheckResult`.  Its criteria are the whole rule for that
check (the pytest tests, ``python -m parity check`` and the report all read ``passed`` and
``failures()``; none of them judges again).  A result can be saved in a report and read back
with :meth:`CheckResult.from_dict`; an exception inside a check is a failed result that keeps
the error.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass, field

from parity.compare import LayerwiseResult, TensorComparison

# every check's result, by name, in the order python -m parity check runs them (the report's sections)
CHECK_NAMES = ("contract", "transfer", "layerwise_propagated", "layerwise_isolated", "layerwise_float64",
               "gradients_float64", "gradients", "onnx", "determinism")


@dataclass(frozen=True)
class Criterion:
    """One pass rule of a check: what it asks, whether it held, and what was seen."""

    name: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.name}: {self.detail}" if self.detail else self.name


@dataclass
class CheckResult:
    """``check``: the check's name (``contract``, ``layerwise_isolated``, ...); ``details``: the
    data it computed (matrices, audits), JSON-ready; ``comparison``: the per-tensor rows of a
    check that compares tensors in order; ``error``: the exception that stopped it."""

    check: str
    criteria: list[Criterion] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    comparison: LayerwiseResult | None = None
    error: str | None = None

    @property
    def rows(self) -> list[TensorComparison]:
        return self.comparison.rows if self.comparison is not None else []

    @property
    def first_divergent(self) -> str | None:
        return self.comparison.first_divergent if self.comparison is not None else None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.criteria) and all(c.passed for c in self.criteria)

    def failures(self) -> list[str]:
        """Every reason this check did not pass, one line each (empty when it passed)."""
        reasons = [f"{self.check}: {c}" for c in self.criteria if not c.passed]
        if self.error is not None:
            reasons.insert(0, f"{self.check}: stopped by {self.error}")
        elif not self.criteria:
            reasons.append(f"{self.check}: no criterion was evaluated")
        return reasons

    def criterion(self, name: str) -> Criterion:
        try:
            return next(c for c in self.criteria if c.name == name)
        except StopIteration:
            raise KeyError(f"check {self.check!r} has no criterion {name!r}; it has "
                           f"{[c.name for c in self.criteria]}") from None

    def to_dict(self) -> dict:
        rows = self.comparison.to_dict() if self.comparison is not None else {}
        return {**self.details, **rows, "check": self.check, "passed": self.passed,
                "criteria": [asdict(c) for c in self.criteria], "error": self.error}

    @classmethod
    def from_dict(cls, data: dict) -> "CheckResult":
        comparison = None
        if "layers" in data:
            comparison = LayerwiseResult(data.get("mode", ""), [_row(row) for row in data["layers"]])
        own = ("check", "passed", "criteria", "error", "mode", "first_divergent", "layers")
        details = {k: v for k, v in data.items() if k not in own}
        return cls(data["check"], [Criterion(**c) for c in data.get("criteria", [])], details, comparison,
                   data.get("error"))

    @classmethod
    def from_exception(cls, check: str, error: BaseException) -> "CheckResult":
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return cls(check, error=text)


def _row(data: dict) -> TensorComparison:
    tuples = {k: tuple(data[k]) for k in ("shape", "max_abs_index") if data.get(k) is not None}
    return TensorComparison(**{**data, **tuples})


def require(name: str, passed: bool, detail: str = "") -> Criterion:
    """A criterion; ``detail`` is kept only when it failed (what a reader needs to act on)."""
    return Criterion(name, bool(passed), "" if passed else detail)
