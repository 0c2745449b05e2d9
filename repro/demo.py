"""`make demo`: the main job end to end on the bundled digits, in a few minutes on 2 CPU cores.

Both frameworks train the default recipe with seed 153 in trajectory-parity mode (torch's
initialisation, dropout off; float64, where the two frameworks' round-off cannot grow into a
visible difference), each twice; repro/compare.py then answers determinism, cross-framework
parity and ONNX, and writes reports/compare.{json,md}, the plots and the badges.  Every run is a
new record under runs/demo/<time>/; nothing earlier is overwritten.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from parity import frameworks  # noqa: E402
from repro import compare  # noqa: E402

SEED = 153
# batch 32 instead of the recipe's 192: 120 optimizer steps instead of 21 for the same images
DEMO_ARGS = ["--seed", str(SEED), "--epochs", "3", "--batch-size", "32", "--parity", "--precision", "float64",
             "--no-progress"]
FRAMEWORKS = frameworks.names()


def train_round(folder: Path, round_: int) -> list[Path]:
    """Both frameworks at once (one process each: the two cores are used, never one process
    with both frameworks), their progress shown side by side.  A failure names its framework
    and shows its log's tail."""
    started, jobs = time.perf_counter(), {}
    for framework in FRAMEWORKS:
        out = folder / f"{framework}-run{round_}"
        log = open(folder / "logs" / f"{framework}-run{round_}.log", "w")
        command = [sys.executable, str(ROOT / "repro" / "run.py"), "--framework", framework, *DEMO_ARGS, "--out", str(out)]
        jobs[framework] = (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), out, log)
    board = ProgressBoard({framework: out for framework, (_, out, _) in jobs.items()}, started)
    while any(process.poll() is None for process, _, _ in jobs.values()):
        board.show()
        time.sleep(0.5)
    board.show(final=True)
    failed = []
    for framework, (process, out, log) in jobs.items():
        log.close()
        if process.returncode != 0:
            tail = Path(log.name).read_text().splitlines()[-15:]
            failed.append(f"{framework} run {round_} exited {process.returncode}; last lines of {log.name}:\n  "
                          + "\n  ".join(tail))
    if failed:
        raise SystemExit("demo failed:\n" + "\n".join(failed))
    print(f"round {round_}: torch and tf trained in {time.perf_counter() - started:.0f} s", flush=True)
    return [out for _, out, _ in jobs.values()]


class ProgressBoard:
    """One line per run, read from its record (the runs print nothing here): epoch, step, loss,
    elapsed, estimated time left.  On a terminal the lines are redrawn in place; in a log (CI)
    they are printed every LOG_EVERY seconds, so nothing interleaves."""

    LOG_EVERY = 30.0

    def __init__(self, runs: dict[str, Path], started: float):
        self.runs, self.started, self.drawn, self.logged = runs, started, 0, 0.0
        self.tty = sys.stdout.isatty()

    def show(self, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.tty and not final and now - self.logged < self.LOG_EVERY:
            return
        lines = [self.line(framework, out, now - self.started) for framework, out in self.runs.items()]
        if self.tty:
            print((f"\x1b[{self.drawn}F" if self.drawn else "") + "".join(f"\x1b[K{line}\n" for line in lines),
                  end="", flush=True)
            self.drawn = len(lines)
        else:
            print("\n".join(lines), flush=True)
            self.logged = now

    @staticmethod
    def line(framework: str, out: Path, elapsed: float) -> str:
        where = run_progress(out)
        if where is None or where["done"] == 0:
            return f"{framework:6s} starting (import, build, first step)   {_clock(elapsed)} elapsed"
        if where["done"] >= where["total"]:
            state = "done" if where["complete"] else "finishing (final weights, test split, ONNX export)"
            return f"{framework:6s} {where['done']}/{where['total']} steps, {state}   {_clock(elapsed)} elapsed"
        left = elapsed / where["done"] * (where["total"] - where["done"])
        return (f"{framework:6s} epoch {where['epoch'] + 1}/{where['epochs']}  step {where['done']:>4d}/{where['total']}"
                f"  loss {where['loss']:.4f}  {_clock(elapsed)} elapsed  ~{_clock(left)} left")


def run_progress(out: Path) -> dict | None:
    """How far a run is, from its manifest and metrics (both written atomically or by line)."""
    from repro.data.datasets import training_batches

    try:
        manifest = json.loads((out / "manifest.json").read_text())
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except (OSError, json.JSONDecodeError):
        return None  # not written yet
    steps = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # the line being appended
        if entry.get("kind") == "step":
            steps.append(entry)
    recipe = manifest["recipe"]
    per_epoch = len(training_batches(manifest["dataset"]["sizes"]["train"], recipe["batch_size"]))
    last = steps[-1] if steps else {"epoch": 0, "loss": float("nan")}
    return {"epoch": last["epoch"], "epochs": recipe["epochs"], "done": len(steps),
            "total": per_epoch * recipe["epochs"], "loss": last["loss"], "complete": manifest.get("status") == "complete"}


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def main() -> int:
    folder = ROOT / "runs" / "demo" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (folder / "logs").mkdir(parents=True)
    print(f"twinframe demo: {' '.join(DEMO_ARGS)} (recipe medianet, ResNet-18, digits)\nruns: {folder}", flush=True)
    runs = [run for round_ in (1, 2) for run in train_round(folder, round_)]
    code = compare.main([*map(str, runs), "--reports", str(ROOT / "reports")])
    print(f"report: {ROOT / 'reports' / 'compare.md'}\nbadges: {ROOT / 'reports' / 'badges'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
