"""``python -m parity``: run the parity pipeline on zoo cases from the command line.

    python -m parity list
    python -m parity report [reports/parity.json]
    python -m parity check resnet18 [--frameworks torch,tf,keras-jax,keras-torch] [--report reports/parity.json]
        [--threads 1] [--device cpu] [--timeout S]
    python -m parity check --torch PKG.MOD:FN --keras PKG.MOD:FN [--config JSON] [--name twin]
        [--input-shape 2,3,48,64 | --inputs FILE.npz] [--input-dtype int64 --input-range 0,40]
        [--input-layout image|signal|volume|sequence|plain] [--known-difference KEY] [--report FILE]
    python -m parity port resnet18 --checkpoint resnet18-f37072fd.pth --out ported/resnet18 [--timeout S]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import NoReturn

from parity import frameworks, zoo
from parity.checks import run_case
from parity.pair import TwinPair
from parity.verdict import CHECK_NAMES, CheckResult
from parity.report import ParityReport, format_table, summarize
from parity.runners import FrameworkRunner
from parity.worker import DEFAULT_CALL_TIMEOUT, WorkerError, WorkerFailure
from canon.files import PathError, check_writable_folder

EXIT_STATUS = """\
exit status: 0 every check passes; 1 a check fails, or a worker crashed, stopped answering (--timeout)
or failed inside (a bug: one line names the framework and the request); 2 bad input (an option, a
case or model name, --config, the checkpoint, an output path), refused with one line naming it,
paths before any worker starts."""

# Errors a worker raises about what the user gave it (a checkpoint, a model name, its options):
# exit 2, like any bad input.  Any other error inside a worker is twinframe's own (exit 1).
USER_ERRORS = frozenset({"ValueError", "KeyError", "FileNotFoundError", "ModuleNotFoundError", "ImportError",
                         "ConfigError", "UnknownModelError", "TransferError", "WeightFileError"})


def main(argv: list[str] | None = None) -> int:
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, case in sorted(zoo.CASES.items()):
            print(f"{name:16s} model={case.model} config={case.config} input={case.input_shape}")
        return 0
    if args.command == "report":
        return show_report(parser, args.path)
    command = commands.choices[args.command]
    try:
        return run_port(command, args) if args.command == "port" else run_check(command, args)
    except WorkerFailure as failure:  # the worker's traceback stays in its message, not on the screen
        status, message = explain(failure, checkpoint=getattr(args, "checkpoint", None))
        refuse(command, message, status)


def _parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="python -m parity", description=__doc__.split("\n")[0], epilog=EXIT_STATUS)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the parity cases")
    show = commands.add_parser("report", help="print the table of an existing report")
    show.add_argument("path", nargs="?", default="reports/parity.json")
    check = commands.add_parser("check", help="run every parity check on the named cases, or on your own pair "
                                "(--torch and --keras)", epilog=EXIT_STATUS)
    check.add_argument("cases", nargs="*", help=f"case names ({', '.join(sorted(zoo.CASES))})")
    own = check.add_argument_group("your own pair (docs/byo.md)")
    own.add_argument("--torch", metavar="PKG.MOD:FN", help="torch factory: FN(name, **config) -> nn.Module")
    own.add_argument("--keras", metavar="PKG.MOD:FN", help="Keras factory: FN(name, **config) -> keras.Model")
    own.add_argument("--name", default="twin", help="the name both factories are given (default: twin)")
    own.add_argument("--config", default="{}", help="factory options as JSON")
    own.add_argument("--input-shape", help="canonical (torch) input shape, e.g. 2,3,48,64")
    own.add_argument("--inputs", metavar="FILE.npz", help="the model's input arrays, in order (instead of --input-shape)")
    own.add_argument("--input-dtype", default="float32", help="dtype of the made input (int64 for token ids)")
    own.add_argument("--input-range", help="LOW,HIGH of the made input (required for integers)")
    own.add_argument("--input-layout", help="image (default for rank 4), signal, volume, sequence or plain; "
                                            "comma-separated for several --inputs")
    own.add_argument("--known-difference", action="append", default=[], metavar="KEY",
                     help="accept a catalogued difference where it explains a tensor fully (repeatable)")
    check.add_argument("--report", default="reports/parity.json", type=report_path,
                       help="JSON report to write (merged by case)")
    check.add_argument("--frameworks", type=framework_rows, default=frameworks.names(), metavar="A,B,...",
                       help=f"the rows to check, the reference {frameworks.REFERENCE!r} first (default: "
                            f"{','.join(frameworks.names())}; every row: {','.join(frameworks.every())}); "
                            "with more than one candidate each is a report row of its own, CASE@ROW")
    check.add_argument("--threads", type=int, default=1, help="intra/inter-op threads of each framework")
    check.add_argument("--device", default="cpu", help="cpu (default) or cuda / gpu")
    port = commands.add_parser("port", help="carry a checkpoint to the other framework's twin and check it layer by layer",
                               epilog=EXIT_STATUS)
    port.add_argument("model", help="zoo model name (python -m parity list)")
    port.add_argument("--checkpoint", required=True, help="torch state_dict file (.pth/.pt, or .safetensors as timm saves it), or Keras .weights.h5 with --source tf")
    port.add_argument("--out", required=True, type=out_folder,
                      help="folder for the canonical .safetensors, the other framework's file and port.json "
                           "(a failed port leaves it as it was)")
    port.add_argument("--source", choices=frameworks.names(), default=frameworks.REFERENCE,
                      help=f"framework of the checkpoint (default {frameworks.REFERENCE})")
    port.add_argument("--target", choices=frameworks.names(),
                      help="framework to carry it to (default: the other one)")
    port.add_argument("--config", default="{}", help='model options as JSON, e.g. \'{"num_classes": 1000}\'')
    port.add_argument("--input-shape", help="N,C,H,W of the check input (default: the zoo case's)")
    port.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    for command in (check, port):
        command.add_argument("--timeout", type=seconds, metavar="SECONDS",
                             help=f"seconds a worker may take over one request before it is killed and the command "
                                  f"fails with exit status 1 (default {DEFAULT_CALL_TIMEOUT:.0f})")
    return parser, commands


def framework_rows(text: str) -> tuple[str, ...]:
    """``--frameworks``: known rows, no repeats, the reference first and at least one candidate."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in frameworks.every()]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown framework {', '.join(map(repr, unknown))}; "
                                         f"the rows are {', '.join(frameworks.every())}")
    if len(names) < 2 or names[0] != frameworks.REFERENCE or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"give the reference {frameworks.REFERENCE!r} first and then one or more "
                                         f"other rows, each once (got {text!r})")
    return names


def run_own_pair(command, args) -> int:
    """``--torch``/``--keras``: one pair through :func:`parity.check_twins`, its table printed."""
    import json

    from parity import api

    if not (args.torch and args.keras):
        refuse(command, "give both --torch PKG.MOD:FN and --keras PKG.MOD:FN")
    if args.cases:
        refuse(command, f"give zoo case names or --torch/--keras, not both (got {args.cases})")
    if len(args.frameworks) != 2:
        refuse(command, f"your own pair is judged against one row at a time: --frameworks {frameworks.REFERENCE},ROW "
                        f"(got {','.join(args.frameworks)}); run once per row")
    try:
        config = json.loads(args.config)
        shape = [int(v) for v in args.input_shape.split(",")] if args.input_shape else None
        value_range = tuple(float(v) for v in args.input_range.split(",")) if args.input_range else None
        if value_range is not None and len(value_range) != 2:
            raise ValueError(f"--input-range must be LOW,HIGH, got {args.input_range}")
    except ValueError as error:
        refuse(command, f"--config must be a JSON object, --input-shape N,C,... and --input-range LOW,HIGH: {error}")
    if not isinstance(config, dict):
        refuse(command, f"--config must be a JSON object of factory options, got {args.config}")
    layouts = args.input_layout.split(",") if args.input_layout else None
    try:
        inputs = api.case_inputs(args.inputs, shape, args.input_dtype, value_range,
                                 layouts[0] if layouts and shape else layouts)
        factories = api.factory_path(args.torch, "--torch"), api.factory_path(args.keras, "--keras")
    except (ValueError, FileNotFoundError) as error:
        refuse(command, str(error))
    runners = api.workers(args.threads, args.device, args.frameworks)
    result = api.check_twins(*factories, name=args.name, config=config, known_differences=args.known_difference,
                             report=args.report, runners=runners,
                             progress=lambda index, total, step: say_progress(f"{args.name}: check {index}/{total} {step}"),
                             **_given_inputs(inputs))
    print(result)
    print(f"report: {args.report}")
    return 0 if result.passed else 1


def _given_inputs(fields: dict) -> dict:
    """ParityCase input fields back as check_twins arguments."""
    return {"inputs": list(fields["inputs"]), "input_layout": list(fields.get("input_layouts", ())) or None}


def run_check(command, args) -> int:
    if args.torch or args.keras:
        return run_own_pair(command, args)
    if not args.cases:
        refuse(command, "name zoo cases (python -m parity list) or give --torch and --keras")
    try:
        cases = [zoo.get_case(name) for name in args.cases]
    except KeyError as error:
        refuse(command, error.args[0])
    report = ParityReport(args.report)
    ok = True
    with tempfile.TemporaryDirectory(prefix="twinframe-parity-") as workdir, contextlib.ExitStack() as running:
        runners = {name: running.enter_context(_runner(name, args, workdir)) for name in args.frameworks}
        for number, case in enumerate(cases, 1):
            say_progress(f"case {number}/{len(cases)} {case.name}: building the twins")
            pair = TwinPair(case, runners)
            try:
                ok &= run_case(pair, report, workdir, progress=lambda name, index, total, step, n=number: say_progress(
                    f"case {n}/{len(cases)} {name}: check {index}/{total} {step}"))
            finally:
                pair.close()
    path = report.write()
    print(format_table([summarize(name, entry) for name, entry in report.cases.items()]))
    failures = [f"{name}: {line}" for name, entry in report.cases.items() for section in CHECK_NAMES
                if section in entry for line in CheckResult.from_dict(entry[section]).failures()]
    if failures:
        print("\nfailed:\n" + "\n".join(f"  {line}" for line in failures))
    print(f"\nreport: {path}\nverdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def say_progress(line: str) -> None:
    """Which check of which case runs now, on stderr (stdout keeps the table)."""
    print(f"[parity] {line}", file=sys.stderr, flush=True)


def _runner(framework: str, args, workdir: str) -> FrameworkRunner:
    return FrameworkRunner(framework, args.threads, args.device, workdir=f"{workdir}/{framework}",
                           call_timeout=args.timeout)


def run_port(command, args) -> int:
    import json

    from parity.port import port_checkpoint
    from canon.errors import ConfigError, UnknownModelError

    try:
        config = json.loads(args.config)
        shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    except ValueError as error:
        refuse(command, f"--config must be a JSON object and --input-shape N,C,H,W: {error}")
    if not isinstance(config, dict):
        refuse(command, f"--config must be a JSON object of model options, got {args.config}")
    case = next((c for c in zoo.CASES.values() if c.model == args.model), None)
    try:
        result = port_checkpoint(args.model, args.checkpoint, args.out, zoo.ZOO_FACTORIES, config, source=args.source,
                                 target=args.target, input_shape=shape, tolerances=case.tolerances if case else None,
                                 overwrite=args.overwrite, call_timeout=args.timeout)
    except (FileNotFoundError, FileExistsError, ConfigError, UnknownModelError, ValueError) as error:
        refuse(command, str(error))
    worst = max(result["layerwise"]["layers"], key=lambda row: row["max_abs"] or 0.0, default=None)
    print(f"{args.model}: {result['loaded']['tensors']} tensors from {args.checkpoint} ({result['source']}) -> "
          f"{result['files'][result['target']]} ({result['target']})")
    print(f"canonical weights: {result['files']['canonical']}")
    if worst:
        print(f"layer-wise check on input {result['input_shape']}: {len(result['layerwise']['layers'])} layers, "
              f"worst {worst['name']} max|d| {worst['max_abs']:.2e} ({(worst['scale_rel'] or 0.0):.1e} of its largest value); "
              f"beyond the {result['tolerances']['default']['mode']}-mode tolerance: "
              f"{', '.join(result['beyond_tolerance']) or 'none'}")
    print(f"report: {result['files']['report']}\nverdict: {'PASS' if result['passed'] else 'FAIL'}")
    return 0 if result["passed"] else 1


def explain(failure: WorkerFailure, checkpoint: str | None = None) -> tuple[int, str]:
    """(exit status, one line) for a worker failure.  The user's bad input gives its own message
    (the adapters name the model or option); reading the checkpoint fails for the checkpoint's
    fault whatever the error's type (torch.load raises ValueError on a truncated file), so that
    failure names it.  Anything else names the framework and the request, and a crash adds the
    last line of the worker's log (its scratch folder, log included, is gone once this prints)."""
    if isinstance(failure, WorkerError):
        message = _one_line(failure.remote_message)
        if failure.op == "load_native" and checkpoint:
            return 2, f"checkpoint {checkpoint}: {message.removeprefix(f'{checkpoint}: ')}"
        if failure.error_type in USER_ERRORS:
            return 2, message
        return 1, f"[{failure.framework} worker] {failure.op!r} failed with {failure.error_type}: {message}"
    first, *log = str(failure).splitlines()
    last = next((line.strip() for line in reversed(log) if line.strip() and not line.startswith("--- last ")), None)
    return 1, first + (f" (its log ends: {last})" if last else "")


_NAME_LIST = re.compile(r"\[('[^']*'(?:, '[^']*')*)\]")


def _one_line(message: str, keep: int = 3, width: int = 800) -> str:
    """A worker's message on one line: lists of weight names (a whole model's, from another
    model's checkpoint) cut to their first ``keep``, and the whole to ``width`` characters."""
    def cut(match: re.Match) -> str:
        names = match.group(1).split(", ")
        return match.group(0) if len(names) <= keep else f"[{', '.join(names[:keep])}, ... {len(names) - keep} more]"

    return textwrap.shorten(_NAME_LIST.sub(cut, message), width, placeholder=" ...")


def refuse(command: argparse.ArgumentParser, message: str, status: int = 2) -> NoReturn:
    """One line on stderr, named by the command, and exit: no usage block, no traceback."""
    command.exit(status, f"{command.prog}: error: {message}\n")


# -- option types: paths are checked at parse time, before a worker spends minutes -------------

def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def report_path(text: str) -> str:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the JSON file to write")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    _check_can_create(path.parent, text)
    return text


def out_folder(text: str) -> str:
    _check_can_create(Path(text), text)
    return text


def _check_can_create(folder: Path, named: str) -> None:
    """``folder`` exists or can be made, and a file can be written in it (nothing is left behind)."""
    try:
        check_writable_folder(folder, f"cannot write {named}: folder")
    except PathError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def show_report(parser, path: str) -> int:
    import json

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
