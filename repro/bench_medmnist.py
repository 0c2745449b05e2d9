"""Seconds per training epoch of each MedMNIST+ architecture in each framework, as the recipe runs
it (input padded to 224, batch 64, AdamW), on a synthetic PathMNIST of a few images.

    python repro/bench_medmnist.py [--images 16] [--models vgg16,resnet18] [--out reports]

One epoch of ``--images`` training images (one step: the batch is 64) and as many validation images,
one thread per framework, each run its own process; the epoch's wall time from the run's own
record (training steps, validation and the epoch's weight file).  Results to
reports/bench_medmnist.json and reports/bench_medmnist.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parity import frameworks  # noqa: E402
from repro.medmnist_plus import ARCHITECTURES  # noqa: E402


def epoch_seconds(run_dir: Path) -> float:
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return next(e["wall_s"] for e in epochs if e["kind"] == "epoch")


def bench(model: str, framework: str, data: Path, images: int, scratch: Path) -> dict:
    out = scratch / f"{framework}-{model}"
    command = [sys.executable, str(ROOT / "repro" / "run.py"), "--framework", framework, "--recipe", "medmnist_plus",
               "--model", model, "--dataset", "medmnist", "--flag", "pathmnist", "--size", "28",
               "--data-dir", str(data), "--limit", str(images), "--epochs", "1", "--no-onnx", "--no-progress",
               "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        return {"model": model, "framework": framework, "error": result.stderr.strip().splitlines()[-1]}
    return {"model": model, "framework": framework, "epoch_s": epoch_seconds(out)}


def format_table(document: dict) -> str:
    names = frameworks.names()
    rows = [f"| architecture | {' | '.join(f'{n} s/epoch' for n in names)} |", "|---|" + "---|" * len(names)]
    by_key = {(r["model"], r["framework"]): r for r in document["results"]}
    for model in document["models"]:
        cells = [f"{by_key[model, n]['epoch_s']:.1f}" if "epoch_s" in by_key[model, n] else "failed"
                 for n in names]
        rows.append(f"| {model} | {' | '.join(cells)} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=16, help="training (and validation) images per epoch")
    p.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    p.add_argument("--out", default="reports")
    args = p.parse_args(argv)
    from repro.data.datasets import write_synthetic_medmnist

    models = args.models.split(",")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-medmnist-") as scratch:
        data = Path(scratch) / "data"
        write_synthetic_medmnist(data, "pathmnist", 28, counts=(args.images, args.images, 8), seed=0)
        for model in models:
            for framework in frameworks.names():
                results.append(bench(model, framework, data, args.images, Path(scratch)))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    document = {"images": args.images, "input_size": 224, "threads": 1, "models": models, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_medmnist.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "bench_medmnist.md").write_text(format_table(document))
    print(format_table(document))
    return 0 if all("epoch_s" in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
