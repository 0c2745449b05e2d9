"""Compare training run records: determinism, cross-framework parity, ONNX.

    python repro/compare.py                       # every complete run under runs/
    python repro/compare.py RUN_DIR [RUN_DIR ...] --reports reports

First, every file a run's record gives a sha256 for (its manifest's file list, the summary's
final weights and export, each epoch's weight file) is hashed again: a missing or altered file
fails every verdict that involves its run, by name.  Then three questions, each with a verdict:
  1. determinism  runs of one framework with the same settings are bitwise identical
                  (final weights' sha256, every logged step and epoch metric)
  2. parity       the torch and tf runs of the same settings and initial weights (run.py
                  --parity) agree per step (loss, learning rate), per epoch, in their final
                  weights and test predictions, within canon.tolerances.TRAJECTORY
  3. onnx         each run's final.onnx in onnxruntime gives its own framework's predictions,
                  and the two frameworks' exports agree with each other

Writes compare.json, compare.md, plots (PNG) and badges (SVG + shields.io endpoint JSON) to
--reports.  Exit status: 0 when every verdict that ran passes, something was checked and each
named run took part in a check; 1 when a verdict fails, nothing was checked or a named run could
not be used (incomplete, damaged, or with no run to compare it with); 2 bad input (nothing is
written).
Framework-free: NumPy and onnxruntime only.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python repro/compare.py` from a checkout
    sys.path.insert(0, str(ROOT))

from parity import frameworks  # noqa: E402
from parity.compare import RELATIVE_FLOOR, compare  # noqa: E402
from repro import badges  # noqa: E402
from repro.record import MANIFEST, METRICS, STATUS_COMPLETE, sha256_file  # noqa: E402
from canon.errors import TwinframeError  # noqa: E402
from canon.tolerances import ONNX_AGAINST_FRAMEWORK, TRAJECTORY, Tolerance  # noqa: E402
from canon.files import atomic_write_bytes  # noqa: E402
from canon.weights import load_canonical  # noqa: E402

ONNX_SAMPLES = 32  # test samples run through each ONNX file
UNTIMED = ("wall_s",)  # logged but not part of a run's result
PASS, FAIL, UNCHECKED = "pass", "fail", "not checked"
QUESTIONS = ("determinism", "parity", "onnx")  # what a comparison answers; integrity is a precondition
MISSING, ALTERED = "missing", "sha256 differs from the record"


@dataclass
class Run:
    dir: Path
    manifest: dict

    @classmethod
    def open(cls, directory: Path) -> "Run":
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise TwinframeError(f"{directory}: not a readable run record ({error})") from None
        return cls(directory, manifest)

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == STATUS_COMPLETE

    @property
    def framework(self) -> str:
        return self.manifest["settings"]["framework"]

    @property
    def precision(self) -> str:
        return self.manifest["settings"].get("precision", "float32")

    @property
    def init_digest(self) -> str | None:
        return (self.manifest.get("init") or {}).get("digest")

    @property
    def summary(self) -> dict:
        return self.manifest.get("summary", {})

    def settings_key(self, with_framework: bool) -> str:
        """What must be equal for two runs to be comparable (the output folder never is); across
        frameworks, neither the framework nor whether it wrote an ONNX file (keras-jax cannot)."""
        settings = {k: v for k, v in self.manifest["settings"].items()
                    if with_framework or k not in ("framework", "onnx")}
        return json.dumps(settings, sort_keys=True)

    def lines(self) -> list[dict]:
        path = self.dir / METRICS
        try:
            entries = [json.loads(line) for line in path.read_text().splitlines() if line]
        except json.JSONDecodeError as error:
            raise TwinframeError(f"{path}: not JSON lines ({error})") from None
        return [{k: v for k, v in entry.items() if k not in UNTIMED} for entry in entries]

    def steps(self) -> list[dict]:
        return [line for line in self.lines() if line["kind"] == "step"]

    def epochs(self) -> list[dict]:
        return [line for line in self.lines() if line["kind"] == "epoch"]

    def label(self) -> str:
        return str(self.dir)

    @functools.cached_property
    def problems(self) -> list[dict]:
        """The record's missing or altered files: hashed once, however many verdicts ask."""
        return verify_record(self)


@dataclass
class Selection:
    runs: list[Run]  # the complete runs, each directory once
    skipped: list[dict] = field(default_factory=list)  # incomplete runs: {"run", "reason"}
    named_twice: list[dict] = field(default_factory=list)  # {"run": as first named, "as": the repeat}
    named: bool = False  # run directories were named, not discovered: each must then be usable


def find_runs(paths: list[str], runs_dir: str) -> Selection:
    """The complete runs among ``paths`` (or every run under ``runs_dir``), and those skipped."""
    if paths:
        dirs, named_twice = distinct(paths)
        missing = [str(d) for d in dirs if not (d / MANIFEST).is_file()]
        if missing:
            raise TwinframeError(f"not run directories (no {MANIFEST}): {', '.join(missing)}")
    else:
        if not Path(runs_dir).is_dir():
            raise TwinframeError(f"no runs folder {runs_dir!r}; train with repro/run.py first or name run directories")
        dirs, named_twice = sorted(p.parent for p in Path(runs_dir).rglob(MANIFEST)), []
        if not dirs:
            raise TwinframeError(f"no run record under {runs_dir!r}; train with repro/run.py first")
    selection = Selection([], named_twice=named_twice, named=bool(paths))
    for directory in dirs:
        run = Run.open(directory)
        if run.complete:
            selection.runs.append(run)
        else:
            selection.skipped.append({"run": str(directory),
                                      "reason": f"status {run.manifest.get('status')!r} (interrupted?)"})
    return selection


def distinct(paths: list[str]) -> tuple[list[Path], list[dict]]:
    """Each named directory once, however it is spelled: a run named twice is not its own rerun."""
    first: dict[Path, str] = {}
    twice = []
    for path in paths:
        key = Path(path).resolve()
        if key in first:
            twice.append({"run": first[key], "as": path})
        else:
            first[key] = path
    return [Path(path) for path in first.values()], twice


# -- 0. integrity ------------------------------------------------------------------------

def recorded_digests(run: Run) -> dict[str, set[str]]:
    """Each file the comparison relies on -> the sha256 the record gives it.  An older record
    has no file list; its summary and epoch lines still vouch for the weights and the export.
    A file named in two places keeps both digests: if they disagree, the record is damaged."""
    recorded: dict[str, set[str]] = {METRICS: set()}  # every verdict reads it, digest or not
    pairs = list((run.manifest.get("files") or {}).items())
    pairs += [("final.safetensors", run.summary.get("final_sha256")), ("final.onnx", run.summary.get("onnx_sha256"))]
    try:
        pairs += [(f"weights/{line['weights']}", line.get("weights_sha256"))
                  for line in run.epochs() if "weights" in line]
    except (OSError, TwinframeError):  # no or garbled metrics.jsonl: its own entry reports it
        pass
    for name, digest in pairs:
        if digest:
            recorded.setdefault(name, set()).add(digest)
    return recorded


def verify_record(run: Run) -> list[dict]:
    """Every recorded file that is missing or no longer what the record says it is."""
    problems = (check_file(run.dir, name, digests) for name, digests in sorted(recorded_digests(run).items()))
    return [problem for problem in problems if problem]


def check_file(directory: Path, name: str, digests: set[str]) -> dict | None:
    path = directory / name
    expected = " or ".join(sorted(digests)) or None
    if not path.is_file():
        return {"file": name, "problem": MISSING, "expected": expected, "actual": None}
    if not digests:
        return None
    try:
        actual = sha256_file(path)
    except OSError as error:
        return {"file": name, "problem": f"unreadable ({error.strerror})", "expected": expected, "actual": None}
    if actual not in digests:
        return {"file": name, "problem": ALTERED, "expected": expected, "actual": actual}
    if len(digests) > 1:
        return {"file": name, "problem": "the record gives it different sha256", "expected": expected, "actual": actual}
    return None


def unrecorded(run: Run) -> list[str]:
    """Files of an older record (no file list) that nothing vouches for: read, not verified."""
    if "files" in run.manifest:
        return []  # the list covers the whole record
    recorded = recorded_digests(run)
    return sorted(name for path in run.dir.rglob("*") if path.is_file()
                  and (name := path.relative_to(run.dir).as_posix()) != MANIFEST and not recorded.get(name))


def integrity(runs: list[Run]) -> list[dict]:
    return [{"run": run.label(), "passed": not run.problems, "problems": run.problems, "unrecorded": unrecorded(run)}
            for run in runs]


def damage(*runs: Run) -> str | None:
    """Why a check involving these runs fails before it starts: their damaged files, or None."""
    return "; ".join(damaged_file(run.label(), problem) for run in runs for problem in run.problems) or None


def damaged_file(label: str, problem: dict) -> str:
    return f"record {label}: {problem['file']}: {problem['problem']}"


# -- 1. determinism ---------------------------------------------------------------------

def judge_determinism(runs: list[Run]) -> list[dict]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.settings_key(with_framework=True), []).append(run)
    results = []
    for group in groups.values():
        if len(group) < 2:
            continue
        first, *others = group
        reason = damage(*group)  # equal records of altered files prove nothing
        mismatches = [] if reason else [difference(first, other) for other in others]
        results.append({
            "framework": first.framework, "runs": [r.label() for r in group],
            "final_sha256": [r.summary.get("final_sha256") for r in group],
            "passed": not reason and not any(mismatches), "first_difference": next((m for m in mismatches if m), None),
            "reason": reason,
        })
    return results


def difference(a: Run, b: Run) -> dict | None:
    """Where two runs first differ: the final weights' hash, else the first metrics line."""
    la, lb = a.lines(), b.lines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return {"runs": [a.label(), b.label()], "line": i, "keys": keys,
                    "values": [{k: x.get(k) for k in keys}, {k: y.get(k) for k in keys}]}
    if len(la) != len(lb):
        return {"runs": [a.label(), b.label()], "line": min(len(la), len(lb)), "keys": ["length"],
                "values": [len(la), len(lb)]}
    if a.summary.get("final_sha256") != b.summary.get("final_sha256"):
        return {"runs": [a.label(), b.label()], "keys": ["final_sha256"],
                "values": [a.summary.get("final_sha256"), b.summary.get("final_sha256")]}
    return None


# -- 2. cross-framework parity ----------------------------------------------------------

def parity_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """For each setting, the first reference-framework run with the first run of every other framework."""
    groups: dict[str, dict[str, Run]] = {}
    for run in runs:
        groups.setdefault(run.settings_key(with_framework=False), {}).setdefault(run.framework, run)
    return [(group[frameworks.REFERENCE], group[name]) for group in groups.values() if frameworks.REFERENCE in group
            for name in frameworks.judged() if name in group]


def judge_parity(reference: Run, candidate: Run) -> dict:
    tolerance = TRAJECTORY.get(reference.precision, TRAJECTORY["float32"])
    result = {"runs": {reference.framework: reference.label(), candidate.framework: candidate.label()},
              "precision": reference.precision,
              "tolerance": {"rtol": tolerance.rtol, "mode": tolerance.mode}}
    reason = damage(reference, candidate)
    if reason:
        return {**result, "comparable": False, "passed": False, "reason": reason}
    if reference.init_digest is None or reference.init_digest != candidate.init_digest:
        return {**result, "comparable": False, "passed": False,
                "reason": "the runs did not start from the same weights: train both with run.py --parity"}
    steps = trajectory(reference.steps(), candidate.steps(), tolerance)
    epochs = epoch_metrics(reference.epochs(), candidate.epochs(), tolerance)
    weights = tensors(reference.dir / "final.safetensors", candidate.dir / "final.safetensors", tolerance)
    predictions = tensors(reference.dir / "final_test_logits.npy", candidate.dir / "final_test_logits.npy", tolerance)
    parts = (steps, epochs, weights, predictions)
    return {**result, "comparable": True, "passed": all(p["passed"] for p in parts), "steps": steps,
            "epochs": epochs, "final_weights": weights, "test_predictions": predictions}


def relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / |b| per element (b the reference), 0 where both are 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(a - b) / np.abs(b)
    return np.where(a == b, 0.0, rel)


def trajectory(ref: list[dict], cand: list[dict], tolerance: Tolerance) -> dict:
    """Per-step loss and learning rate; the first step whose loss differs beyond tolerance."""
    if [s["step"] for s in ref] != [s["step"] for s in cand]:
        return {"passed": False, "reason": f"different steps: {len(ref)} vs {len(cand)}", "count": len(ref)}
    if not ref:
        return {"passed": True, "count": 0, "reason": "no optimizer step (knn)"}
    loss_ref, loss_cand = (np.array([s["loss"] for s in run], np.float64) for run in (ref, cand))
    lr_ref, lr_cand = (np.array([s["lr"] for s in run], np.float64) for run in (ref, cand))
    rel = relative(loss_cand, loss_ref)
    beyond = np.flatnonzero(rel > tolerance.rtol)
    first = int(beyond[0]) if beyond.size else None
    lr_rel = relative(lr_cand, lr_ref)
    return {
        "passed": first is None and float(lr_rel.max()) <= tolerance.rtol, "count": len(ref),
        "loss_max_rel": float(rel.max()), "loss_max_rel_step": int(ref[int(np.argmax(rel))]["step"]),
        "first_divergent_step": None if first is None else int(ref[first]["step"]),
        "first_divergent_rel": None if first is None else float(rel[first]),
        "lr_max_rel": float(lr_rel.max()),
        "loss_rel_by_step": [float(v) for v in rel],
    }


def epoch_metrics(ref: list[dict], cand: list[dict], tolerance: Tolerance) -> dict:
    rows, worst = [], 0.0
    for a, b in zip(ref, cand):
        for key in sorted(k for k, v in a.items() if isinstance(v, float) and k in b):
            rel = float(relative(np.float64(b[key]), np.float64(a[key])))
            worst = max(worst, rel)
            rows.append({"epoch": a["epoch"], "metric": key, "reference": a[key], "candidate": b[key], "rel": rel})
    return {"passed": len(ref) == len(cand) and worst <= tolerance.rtol, "max_rel": worst, "rows": rows,
            "epochs": [len(ref), len(cand)]}


def tensors(ref_path: Path, cand_path: Path, tolerance: Tolerance) -> dict:
    """Final weights (canonical layout, by name) or predictions, norm-wise per tensor."""
    present = [path.is_file() for path in (ref_path, cand_path)]
    if not any(present):
        return {"passed": True, "reason": f"neither run kept {ref_path.name} (a reconstruction keeps no predictions)"}
    if not all(present):
        return {"passed": False, "reason": f"missing {ref_path if not present[0] else cand_path}"}
    if ref_path.suffix == ".npy":
        ref, cand = {"predictions": np.load(ref_path)}, {"predictions": np.load(cand_path)}
    else:
        ref, cand = load_canonical(ref_path), load_canonical(cand_path)
    if ref.keys() != cand.keys():
        return {"passed": False, "reason": f"different tensors: {sorted(set(ref) ^ set(cand))[:5]}"}
    # Each tensor against its own largest value, floored at RELATIVE_FLOOR of the model's largest:
    # a tensor whose true gradient is zero (a conv bias before BatchNorm) holds only round-off
    # that Adam scaled up, ~1e-12 in float64, and has no relative error of its own.
    scale = max(float(np.abs(tensor).max()) if tensor.size else 0.0 for tensor in ref.values())
    floored = replace(tolerance, atol=tolerance.atol + tolerance.rtol * RELATIVE_FLOOR * scale)
    rows = [compare(cand[name], ref[name], floored, name) for name in ref]
    worst = max(rows, key=lambda row: row.scale_rel if row.scale_rel is not None else np.inf)
    max_abs = max((row.max_abs or 0.0) for row in rows)
    return {"passed": all(row.passed for row in rows), "tensors": len(rows), "max_scale_rel": worst.scale_rel,
            "worst": worst.name, "global_rel": max_abs / scale if scale else max_abs,
            "failed": [row.name for row in rows if not row.passed][:10]}


# -- 3. ONNX ----------------------------------------------------------------------------

def onnx_inputs(run: Run) -> np.ndarray:
    """The first test samples as the run's model saw them (framework-free preprocessing); runs
    whose settings differ only in framework share them, so the data is read once per setting."""
    return _inputs_for(run.settings_key(with_framework=False))


@functools.lru_cache(maxsize=8)
def _inputs_for(settings_key: str) -> np.ndarray:
    from repro.loop import make_batch
    from repro.run import load_dataset
    from repro.recipes import recipe_of_run

    settings = json.loads(settings_key)
    recipe = recipe_of_run(settings)
    dataset = load_dataset(settings)
    split = dataset.splits["test"]
    return make_batch(split, np.arange(min(ONNX_SAMPLES, len(split.labels))), recipe, dataset.task)[0]


def onnx_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    from parity.runners import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(str(path))
    feed = runner.session.get_inputs()[0]
    dtype = {"tensor(double)": np.float64}.get(feed.type, np.float32)
    batch = feed.shape[0] if isinstance(feed.shape[0], int) else len(x)  # exports may fix their batch size
    predictions = []
    for start in range(0, len(x) - len(x) % batch, batch):
        outputs = runner.infer(x[start:start + batch].astype(dtype))
        predictions.append(outputs[sorted(outputs)[-1]])  # the last output: the prediction (AECNN's logits)
    return np.concatenate(predictions)


def judge_onnx(runs: list[Run], pairs: list[tuple[Run, Run]]) -> list[dict]:
    results, predictions = [], {}
    for run in runs:
        path = run.dir / "final.onnx"
        if not (path.is_file() or run.summary.get("onnx_sha256")):  # recorded but gone: damage() says so
            continue
        own_check = {"check": f"{run.framework}-onnx vs {run.framework}", "runs": [run.label()]}
        reason = damage(run)
        if reason:  # not run: a damaged run takes no part in the exports' comparison either
            results.append({**own_check, "passed": False, "scale_rel": None, "reason": reason})
            continue
        x = onnx_inputs(run)
        try:
            predictions[run.label()] = onnx_predictions(path, x)
        except Exception as error:  # onnxruntime's own error types: a broken or unsupported file
            results.append({**own_check, "passed": False, "scale_rel": None,
                            "reason": f"onnxruntime could not run {path}: {error}"})
            continue
        own = np.load(run.dir / "final_test_logits.npy")[: len(predictions[run.label()])]
        tolerance = ONNX_AGAINST_FRAMEWORK.get(run.precision, ONNX_AGAINST_FRAMEWORK["float32"])
        row = compare(predictions[run.label()], own, tolerance, "predictions")
        results.append({**own_check, "passed": row.passed, "scale_rel": row.scale_rel, "samples": len(x),
                        "reason": row.reason})
    for reference, candidate in pairs:
        if reference.label() in predictions and candidate.label() in predictions \
                and reference.init_digest == candidate.init_digest:
            tolerance = TRAJECTORY["bfloat16" if reference.precision == "bfloat16" else "float32"]  # float32 files
            row = compare(predictions[candidate.label()], predictions[reference.label()], tolerance, "predictions")
            results.append({"check": f"{candidate.framework}-onnx vs {reference.framework}-onnx", "runs": [reference.label(), candidate.label()],
                            "passed": row.passed, "scale_rel": row.scale_rel, "reason": row.reason})
    return results


# -- verdicts and reports ----------------------------------------------------------------

def verdict(checks: list[dict]) -> str:
    if not checks:
        return UNCHECKED
    return PASS if all(c["passed"] for c in checks) else FAIL


def summarize(determinism: list[dict], parity: list[dict], onnx: list[dict], checked: list[dict]) -> dict:
    comparable = [p for p in parity if p.get("comparable")]
    worst = max((p["steps"].get("loss_max_rel", 0.0) for p in comparable), default=None)
    return {
        "determinism": verdict(determinism), "parity": verdict(parity), "onnx": verdict(onnx),
        "parity_loss_max_rel": worst, "integrity": verdict(checked),
    }


def not_compared(runs: list[Run], determinism: list[dict], parity: list[dict]) -> list[str]:
    """Runs in no determinism group and no parity pair: no other run has their settings."""
    compared = {label for d in determinism for label in d["runs"]}
    compared |= {label for p in parity for label in p["runs"].values()}
    return [run.label() for run in runs if run.label() not in compared]


def exit_status(result: dict, named: bool) -> int:
    """0 only if every verdict that ran passed and something was checked; named runs must also
    each have been usable (complete, intact, compared): naming a run asks for it to be judged."""
    v = result["verdicts"]
    if FAIL in (v[q] for q in (*QUESTIONS, "integrity")) or all(v[q] == UNCHECKED for q in QUESTIONS):
        return 1
    return 1 if named and (result["skipped"] or result["not_compared"]) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python repro/compare.py", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (default: all under --runs-dir)")
    parser.add_argument("--runs-dir", default="runs", help="where to look for runs when none are named")
    parser.add_argument("--reports", default="reports", help="where compare.json/.md, plots and badges go")
    parser.add_argument("--parity-report", default=None,
                        help="the parity suite's per-layer report for the bar chart (default: REPORTS/parity.json)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX question")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    try:
        selection = find_runs(args.runs, args.runs_dir)
        runs = selection.runs
        checked = integrity(runs)
        determinism = judge_determinism(runs)
        pairs = parity_pairs(runs)
        parity = [judge_parity(a, b) for a, b in pairs]
        onnx = [] if args.no_onnx else judge_onnx(runs, pairs)
    except (TwinframeError, OSError, KeyError, ValueError) as error:
        parser.error(str(error))
    result = {"schema": "twinframe-compare/1", "runs": [r.label() for r in runs], "skipped": selection.skipped,
              "named_twice": selection.named_twice, "not_compared": not_compared(runs, determinism, parity),
              "verdicts": summarize(determinism, parity, onnx, checked), "integrity": checked,
              "determinism": determinism, "parity": parity, "onnx": onnx}
    out = Path(args.reports)
    drawable = [pair for pair in pairs if not damage(*pair)]  # a damaged run's metrics may be gone
    written = write_reports(result, drawable, out, Path(args.parity_report or out / "parity.json"), not args.no_plots)
    print(format_verdicts(result, written))
    return exit_status(result, selection.named)


def write_reports(result: dict, pairs, out: Path, parity_report: Path, plots: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "compare.json", out / "compare.md"]
    atomic_write_bytes(written[0], (json.dumps(result, indent=2, default=float) + "\n").encode())
    atomic_write_bytes(written[1], markdown(result).encode())
    if plots:
        from repro import plots as plotting

        written += plotting.write_all(pairs, out, parity_report)
    written += badges.write_badges(result["verdicts"], out / "badges")
    return written


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2e}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    v = result["verdicts"]
    lines = ["# twinframe: run comparison", "",
             "| question | verdict |", "|---|---|",
             f"| determinism (bitwise) | {v['determinism']} |",
             f"| cross-framework parity | {v['parity']} (worst loss rel. {_fmt(v['parity_loss_max_rel'])}) |",
             f"| ONNX | {v['onnx']} |",
             f"| integrity (every recorded sha256) | {v['integrity']} |", ""]
    lines += ["## Determinism", "", "| framework | runs | final sha256 | verdict | first difference |", "|---|---|---|---|---|"]
    for d in result["determinism"]:
        said = "bitwise" if d["passed"] else "damaged" if d["reason"] else "differs"
        lines.append(f"| {d['framework']} | {len(d['runs'])} | {(d['final_sha256'][0] or '')[:16]}… | {said} | "
                     f"{why_not_bitwise(d) or '-'} |")
    lines += ["", f"## Cross-framework parity ({frameworks.REFERENCE} reference)", "",
              "| precision | steps | loss max rel. | first step beyond tol. | lr max rel. | epochs max rel. | "
              "weights max rel. | predictions max rel. | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for p in result["parity"]:
        if not p.get("comparable"):
            lines.append(f"| {p['precision']} | - | - | - | - | - | - | - | not comparable: {p['reason']} |")
            continue
        s = p["steps"]
        lines.append(f"| {p['precision']} | {s['count']} | {_fmt(s.get('loss_max_rel'))} | "
                     f"{_fmt(s.get('first_divergent_step'))} | {_fmt(s.get('lr_max_rel'))} | "
                     f"{_fmt(p['epochs']['max_rel'])} | {_fmt(p['final_weights'].get('max_scale_rel'))} | "
                     f"{_fmt(p['test_predictions'].get('max_scale_rel'))} | {'pass' if p['passed'] else 'fail'} |")
    lines += ["", "## ONNX (onnxruntime, CPU, optimisations off)", "", "| check | run(s) | max rel. | verdict |",
              "|---|---|---|---|"]
    for o in result["onnx"]:
        names = " / ".join(Path(run).name for run in o["runs"])
        lines.append(f"| {o['check']} | {names} | {_fmt(o['scale_rel'])} | {'pass' if o['passed'] else 'fail'} |")
    problems = [(e["run"], problem) for e in result["integrity"] for problem in e["problems"]]
    lines += ["", "## Integrity (each file against the sha256 its record gives)", ""]
    lines += ["| run | file | problem | recorded sha256 | actual sha256 |", "|---|---|---|---|---|"] if problems else \
        [f"Every recorded file of the {len(result['integrity'])} run(s) has its recorded sha256."]
    lines += [f"| {run} | {problem['file']} | {problem['problem']} | {(problem['expected'] or '-')[:16]} | "
              f"{(problem['actual'] or '-')[:16]} |" for run, problem in problems]
    lines += [""] + [f"- {note}" for note in notes(result)]
    return "\n".join(lines) + "\n"


def why_not_bitwise(d: dict) -> str | None:
    """A determinism group's failure in words: the damaged files, else the first differing line."""
    first = d["first_difference"]
    if d.get("reason") or not first:
        return d.get("reason")
    return ", ".join(first["keys"]) + " at line " + str(first.get("line", "-"))


def notes(result: dict) -> list[str]:
    """What the console and compare.md both say about the runs themselves."""
    said = [f"no recorded sha256 (older record) in {e['run']}: {', '.join(e['unrecorded'])}"
            for e in result["integrity"] if e["unrecorded"]]
    said += [f"named twice: {t['as']}" + (f" (the same run as {t['run']})" if t["as"] != t["run"] else "")
             for t in result["named_twice"]]
    said += [f"skipped: {s['run']} ({s['reason']})" for s in result["skipped"]]
    said += [f"not compared: {label} has no run with the same settings" for label in result["not_compared"]]
    return said


def format_verdicts(result: dict, written: list[Path]) -> str:
    v = result["verdicts"]
    lines = [f"determinism  {v['determinism']}", f"parity       {v['parity']}"
             + (f"  (worst per-step loss rel. {v['parity_loss_max_rel']:.2e})" if v["parity_loss_max_rel"] is not None else ""),
             f"onnx         {v['onnx']}", f"integrity    {v['integrity']}"]
    lines += [f"  {damaged_file(e['run'], problem)}" for e in result["integrity"] for problem in e["problems"]]
    lines += [f"  determinism {d['framework']}: {why_not_bitwise(d)}" for d in result["determinism"] if not d["passed"]]
    for p in result["parity"]:
        if p.get("comparable") and p["steps"].get("first_divergent_step") is not None:
            s = p["steps"]
            lines.append(f"  parity {p['precision']}: loss first beyond {p['tolerance']['rtol']:g} at step "
                         f"{s['first_divergent_step']} (rel. {s['first_divergent_rel']:.2e})")
        elif not p.get("comparable"):
            lines.append(f"  parity: {p['reason']}")
    lines += [f"  onnx {o['check']}: {o['reason']}" for o in result["onnx"] if not o["passed"]]
    lines += notes(result)
    lines.append("reports: " + ", ".join(str(p) for p in written))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
