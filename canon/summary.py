"""Model summaries shared by the twins' summary commands: counting and printing, framework-free."""

from __future__ import annotations

import json
from collections import OrderedDict


def block_of(name: str, depth: int) -> str:
    """Canonical tensor name -> its block at ``depth`` dots (``stage1.diet0.mask.conv1.weight`` -> ``stage1.diet0``)."""
    return ".".join(name.split(".")[:depth]) if name.count(".") >= depth else name.rsplit(".", 1)[0]


def summarize(model: str, trainable: dict[str, int], buffers: dict[str, int], depth: int = 2) -> dict:
    """Per-block and total counts from {canonical tensor name: element count}."""
    blocks: "OrderedDict[str, list[int]]" = OrderedDict()
    for kind, counts in ((0, trainable), (1, buffers)):
        for name, count in counts.items():
            blocks.setdefault(block_of(name, depth), [0, 0])[kind] += count
    return {
        "model": model,
        "trainable": sum(trainable.values()),
        "non_trainable": sum(buffers.values()),
        "total": sum(trainable.values()) + sum(buffers.values()),
        "blocks": {name: {"trainable": t, "non_trainable": b} for name, (t, b) in blocks.items()},
    }


def render(summary: dict) -> str:
    rows = [(name, f"{c['trainable']:,}", f"{c['non_trainable']:,}") for name, c in summary["blocks"].items()]
    rows.append(("total", f"{summary['trainable']:,}", f"{summary['non_trainable']:,}"))
    widths = [max(len(r[i]) for r in rows + [("block", "trainable", "non-trainable")]) for i in range(3)]
    line = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}"
    out = [summary["model"], line(("block", "trainable", "non-trainable")), "-" * (sum(widths) + 4)]
    out += [line(r) for r in rows[:-1]] + ["-" * (sum(widths) + 4), line(rows[-1])]
    return "\n".join(out)


def main(framework: str, count, argv: list[str] | None = None) -> int:
    """The summary command of one framework; ``count(name, config)`` -> (trainable, buffers)."""
    import argparse

    from canon import models

    parser = argparse.ArgumentParser(prog=f"python -m impl_{framework}.summary",
                                     description=f"Parameter counts of zoo models in {framework}, per block.")
    parser.add_argument("models", nargs="+", help=f"model names ({', '.join(models.list_models())})")
    parser.add_argument("--config", default="{}", help='JSON options, e.g. \'{"num_classes": 10}\'')
    parser.add_argument("--depth", type=int, default=2, help="dots in a block name (default 2: stage1.diet0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as error:
        parser.error(f"--config is not valid JSON: {error}")
    summaries = []
    for name in args.models:
        try:
            trainable, buffers = count(name, config)
        except (KeyError, ValueError) as error:
            parser.error(str(error))
        summaries.append(summarize(name, trainable, buffers, args.depth))
    print(json.dumps(summaries, indent=1) if args.json else "\n\n".join(render(s) for s in summaries))
    return 0
