"""`make demo`: the main job end to end on the bundled digits, in a few minutes on 2 CPU cores.

Both frameworks train the default recipe with seed 153 in trajectory-parity mode (torch's
initialisation, dropout off; float64, where the two frameworks' round-off cannot grow into a
visible difference), each twice; repro/compare.py then answers determinism, cross-framework
parity and ONNX, and writes reports/compare.{json,md}, the plots and the badges.  Every run is a
new record under runs/demo/<time>/; nothing earlier is overwritten.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from repro import compare  # noqa: E402

SEED = 153
# batch 32 instead of the recipe's 192: 120 optimizer steps instead of 21 for the same images
DEMO_ARGS = ["--seed", str(SEED), "--epochs", "3", "--batch-size", "32", "--parity", "--precision", "float64",
             "--no-progress"]
FRAMEWORKS = ("torch", "tf")


def train_round(folder: Path, round_: int) -> list[Path]:
    """Both frameworks at once (one process each: the two cores are used, never one process
    with both frameworks).  A failure names its framework and shows its log's tail."""
    started, jobs = time.perf_counter(), {}
    for framework in FRAMEWORKS:
        out = folder / f"{framework}-run{round_}"
        log = open(folder / "logs" / f"{framework}-run{round_}.log", "w")
        command = [sys.executable, str(ROOT / "repro" / "run.py"), "--framework", framework, *DEMO_ARGS, "--out", str(out)]
        jobs[framework] = (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), out, log)
    failed = []
    for framework, (process, out, log) in jobs.items():
        code = process.wait()
        log.close()
        if code != 0:
            tail = Path(log.name).read_text().splitlines()[-15:]
            failed.append(f"{framework} run {round_} exited {code}; last lines of {log.name}:\n  " + "\n  ".join(tail))
    if failed:
        raise SystemExit("demo failed:\n" + "\n".join(failed))
    print(f"round {round_}: torch and tf trained in {time.perf_counter() - started:.0f} s", flush=True)
    return [out for _, out, _ in jobs.values()]


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
