"""``python -m parity``: run the parity pipeline on zoo cases from the command line.

    python -m parity list
    python -m parity report [reports/parity.json]
    python -m parity check resnet18 [--report reports/parity.json] [--threads 1] [--device cpu]
    python -m parity port resnet18 --checkpoint resnet18-f37072fd.pth --out ported/resnet18
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
    port = commands.add_parser("port", help="carry a checkpoint to the other framework's twin and check it layer by layer")
    port.add_argument("model", help="zoo model name (python -m parity list)")
    port.add_argument("--checkpoint", required=True, help="torch state_dict file (.pth/.pt), or Keras .weights.h5 with --source tf")
    port.add_argument("--out", required=True, help="folder for the canonical .safetensors, the other framework's file and port.json")
    port.add_argument("--source", choices=("torch", "tf"), default="torch", help="framework of the checkpoint (default torch)")
    port.add_argument("--config", default="{}", help='model options as JSON, e.g. \'{"num_classes": 1000}\'')
    port.add_argument("--input-shape", help="N,C,H,W of the check input (default: the zoo case's)")
    port.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name, case in sorted(zoo.CASES.items()):
            print(f"{name:16s} model={case.model} config={case.config} input={case.input_shape}")
        return 0
    if args.command == "report":
        return show_report(parser, args.path)
    if args.command == "port":
        return run_port(parser, args)
    try:
        cases = [zoo.get_case(name) for name in args.cases]
    except KeyError as error:
        parser.error(str(error.args[0]))
    report = ParityReport(args.report)
    ok = True
    with tempfile.TemporaryDirectory(prefix="twinframe-parity-") as workdir, \
            FrameworkRunner("torch", args.threads, args.device, workdir=f"{workdir}/torch") as torch_runner, \
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


def run_port(parser, args) -> int:
    import json

    from parity.port import port_checkpoint
    from spec.errors import ConfigError, UnknownModelError

    try:
        config = json.loads(args.config)
        shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    except ValueError as error:
        parser.error(f"--config must be a JSON object and --input-shape N,C,H,W: {error}")
    case = next((c for c in zoo.CASES.values() if c.model == args.model), None)
    try:
        result = port_checkpoint(args.model, args.checkpoint, args.out, zoo.ZOO_FACTORIES, config, args.source, shape,
                                 case.tolerances if case else None, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ConfigError, UnknownModelError, ValueError) as error:
        parser.error(str(error))
    worst = max(result["layerwise"]["layers"], key=lambda row: row["max_abs"] or 0.0, default=None)
    print(f"{args.model}: {result['loaded']['tensors']} tensors from {args.checkpoint} ({result['source']}) -> "
          f"{result['files'][result['target']]} ({result['target']})")
    print(f"canonical weights: {result['files']['canonical']}")
    if worst:
        print(f"layer-wise check on input {result['input_shape']}: {len(result['layerwise']['layers'])} layers, "
              f"worst {worst['name']} max|d| {worst['max_abs']:.2e}; first divergent: {result['layerwise']['first_divergent']}")
    print(f"report: {result['files']['report']}\nverdict: {'PASS' if result['passed'] else 'FAIL'}")
    return 0 if result["passed"] else 1


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
