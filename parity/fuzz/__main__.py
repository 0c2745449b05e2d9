"""``python -m parity.fuzz``: fuzz every layer mapping, and show each known difference.

    python -m parity.fuzz [--examples 40] [--seed 153] [--kinds Conv2D LSTM ...] [--report reports/fuzz.json]

For each Keras kind of the mapping registry, ``--examples`` configurations outside the known
differences must agree in float64 within 1e-10 (output, weight and input gradients, state); for
each known difference, configurations inside it are drawn until one disagrees, and the shrunk
one is its minimal example.  A table on the terminal, everything (every configuration tried)
in the JSON report.  Exit status: 0 every kind agrees and every known difference showed
itself; 1 otherwise; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from canon.files import atomic_write
from parity import frameworks
from parity.fuzz import run, space
from parity.runners import FrameworkRunner


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parity.fuzz", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=40, help="configurations per Keras kind (default 40)")
    parser.add_argument("--seed", type=int, default=run.FUZZ_SEED, help="hypothesis' seed (default 153)")
    parser.add_argument("--kinds", nargs="+", metavar="KIND", help=f"Keras classes to fuzz (default: all {len(space.KINDS)})")
    parser.add_argument("--report", default="reports/fuzz.json", help="the JSON report (default reports/fuzz.json)")
    return parser


def _row(result: run.KindResult) -> str:
    excluded = ", ".join(f"{key} {count}" for key, count in sorted(result.excluded.items())) or "-"
    verdict = "ok" if result.ok else "FAIL"
    return f"{result.kind:24s} {verdict:4s} {result.examples:5d} {result.worst:9.1e} {result.seconds:7.1f}  {excluded}"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds or ()) - set(space.KINDS))
    if unknown or args.examples < 1:
        parser.error(f"unknown kind(s) {unknown}; known: {', '.join(space.KINDS)}" if unknown else "--examples must be >= 1")
    kinds = args.kinds or list(space.KINDS)
    differences = [d for d in space.KNOWN_DIFFERENCES if set(d.kinds) & set(kinds)]
    runners = {name: FrameworkRunner(name) for name in frameworks.names()}
    start = time.perf_counter()
    try:
        print(f"{'kind':24s} {'':4s} {'tried':>5s} {'worst':>9s} {'seconds':>7s}  known differences set aside", flush=True)
        results = []
        for kind in kinds:
            results.append(run.probe_kind(kind, args.examples, runners, args.seed))
            print(_row(results[-1]), flush=True)
            if results[-1].failure:
                print(f"    minimal failing configuration: {json.dumps(results[-1].failure.case.to_dict())}\n"
                      f"    {results[-1].failure.failures[0][:300]}", flush=True)
        print(f"\n{'known difference':34s} {'found':5s} {'tried':>5s}  minimal example", flush=True)
        shown = []
        for difference in differences:
            shown.append(run.probe_known_difference(difference, args.examples, runners, args.seed))
            minimal = shown[-1].minimal
            example = json.dumps({"kind": minimal.case.kind, **minimal.case.config,
                                  "input": [list(s.shape) for s in minimal.case.inputs]}) if minimal else "-"
            found = ("yes" if shown[-1].alone else "yes*") if minimal else "NO"
            print(f"{difference.key:34s} {found:5s} {shown[-1].examples:5d}  {example}", flush=True)
        if any(not d.alone for d in shown):
            print("* only drawn together with another known difference (none of its configurations is alone)")
    finally:
        for runner in runners.values():
            runner.close()
    report = {"seed": args.seed, "examples_per_kind": args.examples, "tolerance": vars(run.FUZZ_TOLERANCE),
              "seconds": round(time.perf_counter() - start, 1),
              "examples": sum(r.examples for r in results), "failures": [r.kind for r in results if not r.ok],
              "kinds": {r.kind: r.to_dict() for r in results},
              "known_differences": {d.key: d.to_dict() for d in shown}}
    atomic_write(args.report, lambda path: open(path, "w").write(json.dumps(report, indent=1)))
    passed = not report["failures"] and all(d.minimal for d in shown)
    print(f"\n{report['examples']} configurations over {len(results)} kinds in {report['seconds']} s; "
          f"{len(report['failures'])} kind(s) failing, {sum(d.minimal is not None for d in shown)}/{len(shown)} "
          f"known differences shown: {'pass' if passed else 'FAIL'}; report: {args.report}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
