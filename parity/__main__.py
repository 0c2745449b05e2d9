"""``python -m parity``: run the parity pipeline on zoo cases from the command line.

    python -m parity list
    python -m parity report [reports/parity.json]
    python -m parity check resnet18 [--report reports/parity.json] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from parity import zoo
from parity.checks import TwinPair, run_case
from parity.report import ParityReport, format_table, summarize
from parity.runners import FrameworkRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the parity cases")
    show = commands.add_parser("report", help="print the table of an existing report")
    show.add_argument("path", nargs="?", default="reports/parity.json")
    check = commands.add_parser("check", help="run every parity check on the named cases")
    check.add_argument("cases", nargs="+", help=f"case names ({', '.join(sorted(zoo.CASES))})")
    check.add_argument("--report", default="reports/parity.json", help="JSON report to write (merged by case)")
    check.add_argument("--threads", type=int, default=1, help="intra/inter-op threads of each framework")
    check.add_argument("--device", default="cpu", help="cpu (default) or cuda / gpu")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, case in sorted(zoo.CASES.items()):
            print(f"{name:16s} model={case.model} config={case.config} input={case.input_shape}")
        return 0
    if args.command == "report":
        return show_report(parser, args.path)
    try:
        cases = [zoo.get_case(name) for name in args.cases]
    except KeyError as error:
        parser.error(str(error.args[0]))
    report = ParityReport(args.report)
    ok = True
    workdir = tempfile.mkdtemp(prefix="twinframe-parity-")
    with FrameworkRunner("torch", args.threads, args.device, workdir=f"{workdir}/torch") as torch_runner, \
            FrameworkRunner("tf", args.threads, args.device, workdir=f"{workdir}/tf") as tf_runner:
        for case in cases:
            pair = TwinPair(case, {"torch": torch_runner, "tf": tf_runner})
            try:
                ok &= run_case(pair, report, workdir)
            finally:
                pair.close()
    path = report.write()
    print(format_table([summarize(name, entry) for name, entry in report.cases.items()]))
    print(f"\nreport: {path}\nverdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def show_report(parser, path: str) -> int:
    import json
    from pathlib import Path

    try:
        document = json.loads(Path(path).read_text())
        rows = document["summary"]
    except FileNotFoundError:
        parser.error(f"no report at {path}; run `pytest parity/` or `python -m parity check CASE` first")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        parser.error(f"{path} is not a twinframe parity report: {error}")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
