"""``reports/parity.json`` and the terminal table: one record per case, readable and parseable."""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import time
from pathlib import Path

from parity.verdict import CHECK_NAMES
from canon.files import atomic_write_bytes

SCHEMA = "twinframe-parity/2"  # /2: every check's section is a CheckResult (passed, criteria, error)


def timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ParityReport:
    """Accumulates results by case and section; ``write`` merges into an existing file section by
    section, replacing only the checks run now, so `make test` and then `make test-slow` leave
    every check of every case in one report (each case keeps the time it was last updated)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.cases: dict[str, dict] = {}
        self._last_write = time.monotonic()

    def record(self, case: str, section: str, data) -> None:
        entry = self.cases.setdefault(case, {"generated": timestamp()})
        entry[section] = data.to_dict() if hasattr(data, "to_dict") else data

    def write_now_and_then(self, every_s: float = 300.0) -> None:
        """Write when ``every_s`` has passed since the last write: a long tier stopped later keeps
        what it finished but the last minutes, and a short one does not rewrite a report of tens
        of megabytes after each case (about 2 s each at 15 MB)."""
        if self.cases and time.monotonic() - self._last_write >= every_s:
            self.write()

    def write(self) -> Path:
        """Merge into the file under a lock: parallel test workers each write their own cases."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f".{self.path.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            models = read_cases(self.path)
            for name, entry in self.cases.items():
                before = models.get(name, {})
                models[name] = {**before, **entry}
                if "durations" in entry:  # each tier timed its own steps
                    models[name]["durations"] = {**before.get("durations", {}), **entry["durations"]}
            document = {"schema": SCHEMA, "generated": timestamp(), "models": models,
                        "summary": [summarize(name, entry) for name, entry in sorted(models.items())]}
            atomic_write_bytes(self.path, (json.dumps(document, indent=1, default=_jsonable) + "\n").encode())
        self._last_write = time.monotonic()
        return self.path


def read_cases(path: Path) -> dict[str, dict]:
    """The cases of an existing report; a missing or damaged one holds none (it is replaced,
    never half-merged)."""
    try:
        return json.loads(Path(path).read_text()).get("models", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}


def _jsonable(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to the report")


def _worst(rows: list[dict], metric: str):
    rated = [row for row in rows if row.get(metric) is not None]
    return max(rated, key=lambda row: row[metric]) if rated else None


def summarize(name: str, entry: dict) -> dict:
    """One flat row per case: the numbers a reader wants first, and each check's own verdict
    as it was recorded (nothing is judged again here)."""
    row = {"case": name}
    verdicts = [entry[c]["passed"] for c in CHECK_NAMES if isinstance(entry.get(c), dict) and "passed" in entry[c]]
    if verdicts:
        row["passed"] = all(verdicts)
    if entry.get("transfer"):
        row["transfer_bit_exact"] = entry["transfer"].get("passed")
    for mode in ("propagated", "isolated", "float64"):
        result = entry.get(f"layerwise_{mode}")
        if result:
            worst = _worst(result.get("layers", []), "max_abs")
            row[f"{mode}_passed"] = result["passed"]
            row[f"{mode}_first_divergent"] = result.get("first_divergent")
            row[f"{mode}_worst_layer"] = worst and worst["name"]
            row[f"{mode}_max_abs"] = worst and worst["max_abs"]
    gradients = entry.get("gradients")
    if gradients:
        worst = _worst(gradients.get("layers", []), "max_rel")
        row["gradients_passed"] = gradients["passed"]
        row["gradients_worst"] = worst and worst["name"]
        row["gradients_max_rel"] = worst and worst["max_rel"]
        largest = _worst(gradients.get("layers", []), "max_abs")
        row["gradients_max_abs"] = largest and largest["max_abs"]
    onnx = entry.get("onnx")
    if onnx:
        matrix = onnx.get("matrix", [])
        worst = _worst(matrix, "scale_rel")
        row["four_way_passed"] = onnx["passed"]
        row["four_way_max_rel"] = worst and worst["scale_rel"]  # norm-wise: max|a-r| / max|r|
        row["four_way_max_elementwise_rel"] = max((r["max_rel"] for r in matrix if r.get("max_rel") is not None),
                                                  default=None)
        row["four_way_worst_pair"] = worst and f"{worst['a']} vs {worst['b']}"
    if entry.get("determinism"):
        row["deterministic"] = entry["determinism"].get("passed")
    durations = entry.get("durations")
    if durations:
        row["seconds"] = round(sum(durations.values()), 1)
    return row


def _cell(value, key: str = "") -> str:
    if key == "seconds" and value is not None:
        return f"{value:.1f}"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.2e}"
    return str(value)


COLUMNS = (
    ("case", "case"), ("transfer_bit_exact", "transfer"), ("propagated_max_abs", "prop max|d|"),
    ("propagated_first_divergent", "first divergent"), ("isolated_max_abs", "iso max|d|"),
    ("float64_max_abs", "f64 max|d|"), ("gradients_max_abs", "grad max|d|"),
    ("gradients_passed", "grad ok"), ("four_way_max_rel", "4-way rel"),
    ("four_way_passed", "4-way ok"), ("deterministic", "bitwise"), ("passed", "verdict"), ("seconds", "s"),
)


def format_table(rows: list[dict]) -> str:
    cells = [[title for _, title in COLUMNS]] + [[_cell(row.get(key), key) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_case(name: str, entry: dict) -> str:
    """One case for a terminal: its table row, then every failure, the probable cause of each
    mismatch, and the modules not compared with the reason."""
    from parity.verdict import CheckResult

    lines = [format_table([summarize(name, entry)])]
    failures = [line for section in CHECK_NAMES if isinstance(entry.get(section), dict)
                for line in CheckResult.from_dict(entry[section]).failures()]
    if failures:
        lines += ["", "failed:"] + [f"  {line}" for line in failures]
    causes = [cause for section in CHECK_NAMES if isinstance(entry.get(section), dict)
              for cause in entry[section].get("probable_causes", [])]
    for cause in causes:
        lines.append(f"  at {cause['layer']}: {cause['text']}")
    coverage = (entry.get("contract") or {}).get("coverage")
    if coverage:
        lines += ["", f"coverage: {coverage['compared']} layer(s) compared, {len(coverage['not_compared'])} not:"]
        lines += [f"  {'FAIL ' if e['fails'] else ''}{e['framework']} {e['name']} ({e['kind']}): {e['reason']}"
                  for e in coverage["not_compared"]]
    verdicts = [entry[c]["passed"] for c in CHECK_NAMES if isinstance(entry.get(c), dict) and "passed" in entry[c]]
    lines += ["", f"verdict: {'PASS' if verdicts and all(verdicts) else 'FAIL'}"]
    return "\n".join(lines)
