"""One row of the MedMNIST+ benchmark's table: a dataset at a size, a procedure and an architecture,
trained with the paper's three seeds (repro/recipes.py ``medmnist_plus``), and its mean ± std.

    python repro/medmnist_plus.py --flag pathmnist --size 28 --procedure end_to_end \\
        --model vit_base_patch16_224 --framework torch --data-dir DATA [--out runs/medmnist_plus]
    python repro/medmnist_plus.py ... --dry-run          # the three run.py commands, nothing run
    python repro/medmnist_plus.py --list                 # every row of the table (dataset x size x procedure x model)

Each seed is one ``repro/run.py`` process (its own record, resumable as any run); options after
``--`` go to every one of them (``-- --limit 64 --epochs 1``).  The row's results are printed as a
table and written to ``<out>/<row>/row.json``.  Exit status: 0 every seed complete; 1 a seed
failed (the others are kept, the row says which); 2 bad input.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from canon.files import atomic_write_bytes  # noqa: E402
from repro.data.datasets import MEDMNIST_FLAGS  # noqa: E402
from repro.recipes import PROCEDURES, get_recipe  # noqa: E402

# The paper's ten architectures and its four image sizes.
ARCHITECTURES = ("vgg16", "alexnet", "resnet18", "densenet121", "efficientnet_b4", "vit_base_patch16_224",
                 "vit_base_patch16_clip_224", "eva02_base_patch16_clip_224", "vit_base_patch16_224.dino",
                 "samvit_base_patch16")
SIZES = (28, 64, 128, 224)


def row_name(flag: str, size: int, procedure: str, model: str) -> str:
    return f"{flag}-{size}-{procedure}-{model}"


def seed_command(args: argparse.Namespace, seed: int, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "repro" / "run.py"), "--framework", args.framework, "--recipe", "medmnist_plus",
            "--procedure", args.procedure, "--model", args.model, "--dataset", "medmnist", "--flag", args.flag,
            "--size", str(args.size), "--data-dir", args.data_dir, "--seed", str(seed), "--out", str(out),
            *args.run_options]


def seed_result(run_dir: Path, procedure: str) -> dict:
    """Test ACC and AUC of one complete seed run (the best checkpoint's; kNN's own for knn)."""
    summary = json.loads((run_dir / "manifest.json").read_text())["summary"]
    if procedure == "knn":
        return {"acc": summary["knn"]["test_acc"], "auc": summary["knn"]["test_auc"]}
    return {"acc": summary["best_test"]["acc"], "auc": summary["best_test"]["auc"]}


def mean_std(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    return {"mean": mean, "std": (sum((v - mean) ** 2 for v in values) / n) ** 0.5, "n": n}


def format_row(row: dict) -> str:
    lines = [f"{row['row']} ({row['framework']})", f"{'seed':>10}  {'test ACC':>9}  {'test AUC':>9}  status"]
    for seed in row["seeds"]:
        acc, auc = (f"{seed[k]:9.4f}" if k in seed else f"{'-':>9}" for k in ("acc", "auc"))
        lines.append(f"{seed['seed']:>10}  {acc}  {auc}  {seed['status']}")
    for metric in ("acc", "auc"):
        if metric in row:
            lines.append(f"{'mean':>10}  {metric.upper()} {row[metric]['mean']:.4f} ± {row[metric]['std']:.4f} "
                         f"over {row[metric]['n']} seed(s)")
    return "\n".join(lines)


def run_row(args: argparse.Namespace) -> int:
    recipe = get_recipe("medmnist_plus", model=args.model, procedure=args.procedure)
    name = row_name(args.flag, args.size, args.procedure, args.model)
    folder = Path(args.out) / name
    commands = {seed: seed_command(args, seed, folder / f"{args.framework}-s{seed}") for seed in recipe.seeds}
    if args.dry_run:
        print("\n".join(" ".join(command) for command in commands.values()))
        return 0
    seeds = []
    for seed, command in commands.items():
        print(f"[{name}] seed {seed}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        status = subprocess.run(command, cwd=ROOT).returncode
        entry = {"seed": seed, "run": command[command.index("--out") + 1], "status": "complete" if status == 0
                 else f"failed (exit {status})"}
        if status == 0:
            entry.update(seed_result(Path(entry["run"]), args.procedure))
        seeds.append(entry)
    row = {"row": name, "framework": args.framework, "flag": args.flag, "size": args.size,
           "procedure": args.procedure, "model": args.model, "seeds": seeds}
    done = [s for s in seeds if s["status"] == "complete"]
    for metric in ("acc", "auc"):
        if done:
            row[metric] = mean_std([s[metric] for s in done])
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(str(folder / "row.json"), (json.dumps(row, indent=2) + "\n").encode())
    print(format_row(row))
    return 0 if len(done) == len(seeds) else 1


def list_rows() -> int:
    for flag, size, procedure, model in itertools.product(MEDMNIST_FLAGS, SIZES, PROCEDURES, ARCHITECTURES):
        print(row_name(flag, size, procedure, model))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python repro/medmnist_plus.py", description=__doc__.split("\n")[0],
                                allow_abbrev=False)
    p.add_argument("--list", action="store_true", help="print every row of the benchmark's table and stop")
    p.add_argument("--flag", choices=sorted(MEDMNIST_FLAGS), help="the MedMNIST dataset")
    p.add_argument("--size", type=int, choices=SIZES, help="its image size")
    p.add_argument("--procedure", choices=PROCEDURES, help="end_to_end, linear_probing or knn")
    p.add_argument("--model", choices=ARCHITECTURES, help="one of the paper's ten architectures")
    p.add_argument("--framework", help="torch or tf")
    p.add_argument("--data-dir", help="the folder of FLAG[_SIZE].npz")
    p.add_argument("--out", default="runs/medmnist_plus", help="rows are written under this folder")
    p.add_argument("--dry-run", action="store_true", help="print the seeds' run.py commands, run nothing")
    p.add_argument("run_options", nargs=argparse.REMAINDER, help="after --: options for every run.py")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        return list_rows()
    missing = [f"--{k.replace('_', '-')}" for k in ("flag", "size", "procedure", "model", "framework", "data_dir")
               if getattr(args, k) is None]
    if missing:
        parser.error(f"a row needs {', '.join(missing)} (or --list)")
    args.run_options = [o for o in args.run_options if o != "--"]
    return run_row(args)


if __name__ == "__main__":
    sys.exit(main())
