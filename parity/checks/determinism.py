"""Same seed, same initial weights; the same input twice, the same outputs, bit for bit; and
no reduced-precision (TF32) math left on."""

from __future__ import annotations

from parity.compare import bitwise_equal
from parity.pair import TwinPair
from parity.runners import BuiltModel, FrameworkRunner
from parity.verdict import CheckResult, require


def check_determinism(pair: TwinPair) -> CheckResult:
    with pair.timed("determinism"):
        def observe(runner: FrameworkRunner, model: BuiltModel) -> dict:
            if runner.framework not in pair.rebuilt_digests:
                runner.free(pair.fresh(runner)[0])
            first, second = runner.forward(model, pair.x)[0], runner.forward(model, pair.x)[0]
            return {
                "same_seed_same_weights": pair.rebuilt_digests[runner.framework] == pair.initial[runner.framework],
                "repeat_forward_bitwise": all(bitwise_equal(first[k], second[k]) for k in first),
                "threads": runner.environment["threads"],
                "flags": runner.environment["flags"],
            }

        frameworks = pair.on_both(observe)
    criteria = []
    for framework, seen in frameworks.items():
        tf32 = sorted(flag for flag, value in seen["flags"].items() if flag.startswith("tf32") and value)
        criteria += [
            require(f"{framework}: same seed, same initial weights", seen["same_seed_same_weights"],
                    "a second build from the same seed has other weights"),
            require(f"{framework}: repeated forward is bitwise identical", seen["repeat_forward_bitwise"],
                    "two forward passes of one input differ"),
            require(f"{framework}: threads set", seen["threads"]["intra_op"] >= 1, f"threads {seen['threads']}"),
            require(f"{framework}: TF32 off", not tf32, f"on: {tf32}"),
        ]
    return CheckResult("determinism", criteria, {"frameworks": frameworks})
