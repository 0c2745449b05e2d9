"""Training-loop benchmark: what the pipeline costs over a bare loop, and what determinism costs.

    python repro/bench.py [--steps 30] [--model medianet_base69] [--batch-size 64]

For each framework, in its own process and in each mode (deterministic, default):
  bare      the same trainer's step on batches prepared in advance, nothing else
  builtin   the framework's own AdamW (torch.optim.AdamW / keras.optimizers.AdamW), same batches
  pipeline  repro.loop's batch loop: epoch order, preprocessing, lr table, per-step log line
Images per second of each; results to reports/bench.json and reports/bench.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from parity import frameworks  # noqa: E402
from repro.data import datasets  # noqa: E402
from repro.recipes import get_recipe  # noqa: E402

WARMUP = 3


def measure(framework: str, deterministic: bool, model: str, config: dict, batch_size: int, steps: int,
            input_size: int) -> dict:
    from repro.backends import Backend
    from repro.loop import loss_targets, preprocess
    from repro.record import RunRecord

    recipe = get_recipe("medianet", batch_size=batch_size, input_size=input_size, epochs=1)
    dataset = datasets.load_digits(seed=0)
    train = dataset.splits["train"]
    backend = Backend(framework, threads=1, deterministic=deterministic)
    backend.build(model, {"num_classes": 10, "in_channels": 1, **config}, recipe.seed)
    order = datasets.epoch_order(recipe.seed, 0, len(train.labels))
    batches = [order[i] for i in datasets.batch_slices(len(order), batch_size, drop_last=True)][:steps + WARMUP]
    prepared = [(preprocess(train.images[b], recipe), loss_targets(train.labels[b], dataset.task)) for b in batches]

    def timed(step) -> float:
        for x, y in prepared[:WARMUP]:
            step(x, y)
        start = time.perf_counter()
        for x, y in prepared[WARMUP:]:
            step(x, y)
        return len(prepared[WARMUP:]) * batch_size / (time.perf_counter() - start)

    trainer = backend.trainer(recipe)
    bare = timed(lambda x, y: trainer.train_step(x, y, 1e-3))
    builtin = timed(backend.training.builtin_adamw_step(backend.net, lr=1e-3, weight_decay=0.01, eps=1e-7,
                                                         label_smoothing=0.1))
    with tempfile.TemporaryDirectory() as tmp:
        record = RunRecord.create(Path(tmp) / "run", {"bench": True})
        pipeline_trainer = backend.trainer(recipe)
        pipeline = timed_pipeline(pipeline_trainer, train, recipe, dataset.task, record, batches, batch_size)
    return {"framework": framework, "deterministic": deterministic, "images_per_s": {
        "bare": bare, "builtin": builtin, "pipeline": pipeline}}


def timed_pipeline(trainer, train, recipe, task, record, batches, batch_size) -> float:
    """repro.loop's per-batch work, as train() does it, on the same batches."""
    from repro.loop import loss_targets, preprocess
    from repro.recipes import lr_table

    table = lr_table(recipe, len(batches))

    def step(b, rows):
        x = preprocess(train.images[rows], recipe)
        loss = trainer.train_step(x, loss_targets(train.labels[rows], task), float(table[b]), None)
        if not np.isfinite(loss):
            raise FloatingPointError("diverged")
        record.log({"kind": "step", "epoch": 0, "step": b, "loss": loss, "lr": float(table[b])})

    for b, rows in enumerate(batches[:WARMUP]):
        step(b, rows)
    start = time.perf_counter()
    for b, rows in enumerate(batches[WARMUP:], WARMUP):
        step(b, rows)
    return len(batches[WARMUP:]) * batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python repro/bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement (after 3 warm-up steps)")
    parser.add_argument("--model", default="medianet_base69")
    parser.add_argument("--model-config", default='{"head": "global"}')
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--out", default="reports")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = json.loads(args.model_config)
    if args.worker:
        framework, mode = args.worker
        print(json.dumps(measure(framework, mode == "deterministic", args.model, config, args.batch_size,
                                 args.steps, args.input_size)))
        return 0
    results = []
    for framework in frameworks.names():
        for mode in ("deterministic", "default"):
            command = [sys.executable, __file__, "--worker", framework, mode, *(argv or sys.argv[1:])]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise SystemExit(f"[{framework} {mode}] benchmark failed:\n{done.stderr[-3000:]}")
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    document = {"settings": {"model": args.model, "model_config": config, "batch_size": args.batch_size,
                             "input_size": args.input_size, "steps": args.steps, "threads": 1}, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "bench.md").write_text(format_table(document))
    print(format_table(document))
    return 0


def format_table(document: dict) -> str:
    rows = ["| framework | mode | bare img/s | builtin AdamW img/s | pipeline img/s | pipeline overhead vs bare |",
            "|---|---|---|---|---|---|"]
    for r in document["results"]:
        s = r["images_per_s"]
        rows.append(f"| {r['framework']} | {'deterministic' if r['deterministic'] else 'default'} | {s['bare']:.1f} | "
                    f"{s['builtin']:.1f} | {s['pipeline']:.1f} | {100 * (s['bare'] / s['pipeline'] - 1):+.1f}% |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
