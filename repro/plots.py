"""The comparison's plots (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_all(pairs, out: Path, parity_report: Path) -> list[Path]:
    written = []
    if pairs:
        written += [trajectories(pairs, out / "loss_curves.png"), differences(pairs, out / "loss_relative_difference.png")]
    if parity_report.is_file():
        models = {run.manifest["settings"]["model"] for pair in pairs for run in pair}
        written.append(layer_errors(parity_report, out / "parity_layers.png", models))
    return written


def _series(run):
    steps = run.steps()
    return np.array([s["step"] for s in steps]), np.array([s["loss"] for s in steps]), np.array([s["lr"] for s in steps])


def _title(run) -> str:
    s = run.manifest["settings"]
    return f"{s['recipe']} / {s['model']} / {s['dataset']} / seed {run.manifest['seed']} / {s.get('precision', 'float32')}"


def trajectories(pairs, path: Path) -> Path:
    """Both frameworks' loss per step overlaid, learning rate on the right axis."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(pairs), 1, figsize=(9, 3.2 * len(pairs)), squeeze=False)
    for ax, (reference, candidate) in zip(axes[:, 0], pairs):
        for run, style in ((reference, "-"), (candidate, "--")):
            step, loss, lr = _series(run)
            ax.plot(step, loss, style, label=f"{run.framework} loss")
        step, _, lr = _series(reference)
        twin = ax.twinx()
        twin.plot(step, lr, ":", color="grey", label="learning rate")
        twin.set_ylabel("learning rate")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(_title(reference), fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def differences(pairs, path: Path) -> Path:
    """|loss_tf - loss_torch| / |loss_torch| per step, log scale, with the tolerance."""
    from canon.tolerances import TRAJECTORY

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for reference, candidate in pairs:
        step, a, _ = _series(reference)
        _, b, _ = _series(candidate)
        n = min(len(a), len(b))
        rel = np.abs(b[:n] - a[:n]) / np.maximum(np.abs(a[:n]), np.finfo(np.float64).tiny)
        ax.semilogy(step[:n], np.maximum(rel, 1e-17), label=_title(reference))
        ax.axhline(TRAJECTORY.get(reference.precision, TRAJECTORY["float32"]).rtol, color="red", linestyle=":",
                   linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("relative loss difference (tf vs torch)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def layer_errors(report: Path, path: Path, models: set[str]) -> Path:
    """From the parity suite's report: each model's worst layer, and every layer of the trained model(s)."""
    plt = _pyplot()
    cases = json.loads(report.read_text()).get("models", {})

    def errors(case):
        rows = (case.get("layerwise_propagated") or {}).get("layers", [])
        return [(row["name"], row.get("scale_rel") or 0.0) for row in rows]

    worst = {name: max((e for _, e in errors(case)), default=0.0) for name, case in sorted(cases.items()) if errors(case)}
    shown = [m for m in sorted(models) if m in cases and errors(cases[m])]
    fig, axes = plt.subplots(1 + len(shown), 1, figsize=(10, 3.4 * (1 + len(shown))), squeeze=False)
    ax = axes[0, 0]
    ax.bar(range(len(worst)), [max(v, 1e-17) for v in worst.values()])
    ax.set_xticks(range(len(worst)), list(worst), rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("worst layer error (norm-wise)")
    ax.set_title("float32 layer-wise parity, torch vs tf (reports/parity.json)", fontsize=9)
    for ax, model in zip(axes[1:, 0], shown):
        rows = errors(cases[model])
        ax.bar(range(len(rows)), [max(e, 1e-17) for _, e in rows])
        ax.set_yscale("log")
        ax.set_xticks(range(len(rows)), [n for n, _ in rows], rotation=90, fontsize=5)
        ax.set_ylabel("error (norm-wise)")
        ax.set_title(f"{model}: every layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
