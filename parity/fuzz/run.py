"""Runs fuzzed layer cases through the ordinary float64 check, and the fuzz report.

Each drawn :class:`~parity.fuzz.space.LayerCase` becomes a :class:`~parity.pair.ParityCase`
of the two twin factories (``parity/fuzz/torch_layers.py``, ``parity/fuzz/keras_layers.py``):
the torch twin's weights cross to Keras through the layer's registered mapping, then
:func:`parity.checks.check_float64` compares the output, every weight gradient, the input
gradient and the state after one train-mode step, each within :data:`FUZZ_TOLERANCE`.

:func:`probe_kind` runs one Keras kind: hypothesis draws configurations (known differences set
aside, and counted), and a failure shrinks to a minimal configuration.
:func:`probe_known_difference` draws inside a known difference instead and records the
smallest configuration that shows it.  ``python -m parity fuzz`` runs both over everything
and writes ``reports/fuzz.json``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from hypothesis.errors import Unsatisfiable
from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings

from canon.tolerances import Tolerance, ToleranceSet
from parity import frameworks
from parity.fuzz import space
from parity.pair import ParityCase, TwinPair

# the reference side is the torch twin, every candidate the Keras twin (as for a user's pair)
FACTORIES = {frameworks.REFERENCE: "parity.fuzz.torch_layers:create",
             **{name: "parity.fuzz.keras_layers:create" for name in frameworks.candidates()}}
# the bound: |keras - torch| <= 1e-10 + 1e-10 * |torch|, element by element, in float64
FUZZ_TOLERANCE = Tolerance(rtol=1e-10, atol=1e-10)
FUZZ_SEED = 153
# stock Keras BatchNormalization accumulates the biased batch variance (docs/pitfalls.md 13):
# accepted where that cause reproduces the running variance to 1e-10, as for any user's pair
ACCEPTED = {"BatchNormalization": ("bn_running_variance_biased",)}


def parity_case(case: space.LayerCase, name: str = "fuzz") -> ParityCase:
    config = {**case.config, "shapes": [list(s.shape) for s in case.inputs],
              "layouts": [s.layout for s in case.inputs], "dtypes": [s.dtype for s in case.inputs]}
    return ParityCase(f"{name}-{case.kind}", case.kind, FACTORIES, config=config, inputs=case.inputs, loss="mse",
                      float64_tolerances=ToleranceSet(default=FUZZ_TOLERANCE),
                      known_differences=ACCEPTED.get(case.kind, ()))


@dataclass
class Outcome:
    """One case's verdict: ``passed``, the largest error of any tensor, where it diverged first."""

    case: space.LayerCase
    passed: bool
    worst: float | None
    first_divergent: str | None = None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"case": self.case.to_dict(), "passed": self.passed, "worst_abs_error": self.worst,
                "first_divergent": self.first_divergent, "failures": self.failures}


def check_layer(case: space.LayerCase, runners: dict) -> Outcome:
    """Both twins of ``case`` in float64, judged at :data:`FUZZ_TOLERANCE`."""
    from parity.checks import check_float64

    try:
        pair = TwinPair(parity_case(case), runners)
    except Exception as error:  # a twin that cannot be built is a failed case, not a crash of the fuzzer
        return Outcome(case, False, None, "build", [f"build: {type(error).__name__}: {str(error).splitlines()[0]}"])
    try:
        forward, gradients = check_float64(pair)
        accepted = pair.results.get("accepted_differences", {})
    except Exception as error:
        return Outcome(case, False, None, "float64", [f"float64: {type(error).__name__}: {str(error).splitlines()[0]}"])
    finally:
        pair.close()
    # the largest error of what must agree (not of a tensor a catalogued difference explains)
    rows = [row for result in (forward, gradients) for row in result.comparison.rows if row.name not in accepted]
    errors = [row.max_abs for row in rows if row.max_abs is not None]
    failures = forward.failures() + gradients.failures()
    divergent = forward.comparison.first_divergent or gradients.comparison.first_divergent
    return Outcome(case, forward.passed and gradients.passed, max(errors, default=None), divergent, failures)


@dataclass
class KindResult:
    """What :func:`probe_kind` tried for one Keras kind."""

    kind: str
    examples: int = 0
    passed: int = 0
    worst: float = 0.0
    excluded: Counter = field(default_factory=Counter)  # known difference -> configurations set aside
    failure: Outcome | None = None  # the minimal failing configuration, shrunk
    seconds: float = 0.0
    tried: list[dict] = field(default_factory=list)  # every configuration run, with its largest error

    @property
    def ok(self) -> bool:
        return self.failure is None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "ok": self.ok, "examples": self.examples, "passed": self.passed,
                "worst_abs_error": self.worst, "excluded_known_differences": dict(self.excluded),
                "seconds": round(self.seconds, 2), "failure": self.failure.to_dict() if self.failure else None,
                "tried": self.tried}


class _Shrunk(Exception):
    """Raised by a judged example that must be shrunk (its verdict is already recorded)."""


def _search(strategy, examples: int, seed: int, judge) -> None:
    """Run ``judge(case)`` on up to ``examples`` drawn cases, fixed seed, no example database;
    ``judge`` answers True where hypothesis is to shrink toward a smaller case, and records what
    it saw (hypothesis replays the minimal case last).  Unsatisfiable (every draw filtered out)
    reaches the caller."""
    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, print_blob=False,
              suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @given(strategy)
    def search(case):
        if judge(case):
            raise _Shrunk()

    try:
        search()
    except _Shrunk:
        pass


def probe_kind(kind: str, examples: int, runners: dict, seed: int = FUZZ_SEED) -> KindResult:
    """``examples`` configurations of ``kind`` that no known difference covers; on a failure,
    hypothesis shrinks it and :attr:`KindResult.failure` is the minimal one."""
    result, start = KindResult(kind), time.perf_counter()

    def outside_known(case: space.LayerCase) -> bool:
        known = space.known_differences(case)
        if known:  # counted under the first that applies
            result.excluded[known[0].key] += 1
        return not known

    def disagrees(case) -> bool:
        outcome = check_layer(case, runners)
        result.examples += 1
        result.passed += outcome.passed
        result.worst = max(result.worst, outcome.worst or 0.0)
        result.tried.append({**case.to_dict(), "passed": outcome.passed, "worst_abs_error": outcome.worst})
        if not outcome.passed:
            result.failure = outcome
        return not outcome.passed

    try:
        _search(space.cases(kind).filter(outside_known), examples, seed, disagrees)
    except Unsatisfiable:  # every configuration drawn lies in a known difference (result.excluded says which)
        pass
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class DifferenceResult:
    """What :func:`probe_known_difference` found for one known difference."""

    key: str
    text: str
    pitfall: int
    examples: int = 0
    agreed: int = 0  # drawn inside the difference, yet the twins agreed (the region is drawn wider)
    alone: bool = True  # drawn where no other known difference applies (False: none such was found)
    minimal: Outcome | None = None

    def to_dict(self) -> dict:
        return {"key": self.key, "text": self.text, "pitfall": self.pitfall, "examples": self.examples,
                "agreed": self.agreed, "found": self.minimal is not None, "alone": self.alone,
                "minimal": self.minimal.to_dict() if self.minimal else None}


def probe_known_difference(difference: space.KnownDifference, examples: int, runners: dict,
                           seed: int = FUZZ_SEED) -> DifferenceResult:
    """Draw configurations inside ``difference`` until the twins disagree; the shrunk one is its
    minimal example (None: no configuration drawn showed it).  Drawn where no other known
    difference applies, so the disagreement is this one's; where every configuration lies in
    another one too (align_corners is only drawn with float32 resize modes), it says so
    (``alone`` False)."""
    from hypothesis import strategies as st

    result = DifferenceResult(difference.key, difference.text, difference.pitfall)
    inside = st.one_of(*(space.cases(kind) for kind in difference.kinds)).filter(difference.applies)
    try:
        _show(inside.filter(lambda case: space.known_differences(case) == [difference]), examples, seed, result, runners)
    except Unsatisfiable:
        result.alone, result.examples, result.agreed = False, 0, 0
        _show(inside, examples, seed, result, runners)
    return result


def _show(strategy, examples: int, seed: int, result: DifferenceResult, runners: dict) -> None:
    def disagrees(case) -> bool:
        outcome = check_layer(case, runners)
        result.examples += 1
        result.agreed += outcome.passed
        if not outcome.passed:
            result.minimal = outcome
        return not outcome.passed

    _search(strategy, examples, seed, disagrees)
