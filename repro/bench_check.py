"""What checking your own pair costs: the workers' cold start, and a small pair's full check once
they run (ONNX included), median of several runs.

    python repro/bench_check.py [--runs 3] [--out reports]

Results to reports/bench_check.json and reports/bench_check.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parity import api, frameworks  # noqa: E402
from parity.runners import FrameworkRunner  # noqa: E402

# example -> (package, check_twins options): the small pairs under examples/
PAIRS = {
    "cnn": ("cnn", dict(input_shape=(2, 3, 12, 16), known_differences=("bn_running_variance_biased",))),
    "encoder": ("transformer", dict(input_shape=(2, 7), input_dtype="int64", input_range=(0, 40))),
    "recurrent": ("recurrent", dict(input_shape=(2, 6, 5), input_layout="sequence")),
}


def cold_start() -> dict:
    """Seconds from nothing to a worker that has answered its setup: each framework alone, then
    both at once (as a check starts them)."""
    def start(name: str) -> float:
        began = time.perf_counter()
        FrameworkRunner(name).close()
        return time.perf_counter() - began

    alone = {name: round(start(name), 2) for name in frameworks.names()}
    began = time.perf_counter()
    with ThreadPoolExecutor(len(alone)) as pool:
        list(pool.map(start, frameworks.names()))
    return {"alone_s": alone, "together_s": round(time.perf_counter() - began, 2)}


def warm_checks(runs: int) -> dict:
    runners = api.workers()
    found = {}
    for name, (package, options) in PAIRS.items():
        factories = (f"examples.{package}.torch_twin:create", f"examples.{package}.keras_twin:create")
        times, passed = [], True
        for onnx in (True, False):
            seconds = []
            for _ in range(runs):
                began = time.perf_counter()
                result = api.check_twins(*factories, name=name, runners=runners, onnx=onnx, **options)
                seconds.append(time.perf_counter() - began)
                passed &= result.passed
            times.append(round(statistics.median(seconds), 2))
        found[name] = {"with_onnx_s": times[0], "without_onnx_s": times[1], "passed": passed}
    api.close_workers()
    return found


def format_table(document: dict) -> str:
    cold = document["cold_start"]
    lines = ["| worker start | seconds |", "|---|---|"]
    lines += [f"| {name} alone | {s:.1f} |" for name, s in cold["alone_s"].items()]
    lines += [f"| both at once | {cold['together_s']:.1f} |", "",
              f"| pair (warm workers, median of {document['runs']}) | full check | without ONNX | passed |",
              "|---|---|---|---|"]
    lines += [f"| {name} | {row['with_onnx_s']:.1f} s | {row['without_onnx_s']:.1f} s | {row['passed']} |"
              for name, row in document["checks"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python repro/bench_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    document = {"runs": args.runs, "cold_start": cold_start(), "checks": warm_checks(args.runs)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_check.json").write_text(json.dumps(document, indent=1) + "\n")
    (out / "bench_check.md").write_text(format_table(document) + "\n")
    print(format_table(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
