"""Reproducibility badges, made locally (no network): an SVG per question and the matching
shields.io endpoint JSON (https://shields.io/badges/endpoint-badge) for CI to publish."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

from canon.files import atomic_write_bytes

COLORS = {"pass": "#4c1", "fail": "#e05d44", "not checked": "#9f9f9f"}
SHIELDS_COLORS = {"pass": "brightgreen", "fail": "red", "not checked": "lightgrey"}
CHAR_WIDTH, PADDING = 6.5, 10  # Verdana 11px, roughly: badges need not be typeset exactly


def messages(verdicts: dict) -> dict[str, tuple[str, str]]:
    """Badge name -> (message, verdict)."""
    worst = verdicts.get("parity_loss_max_rel")
    parity = {"pass": f"{worst:.0e}" if worst else "exact", "fail": "failing"}.get(verdicts["parity"], "not checked")
    return {
        "reproducible": ({"pass": "bitwise", "fail": "failing"}.get(verdicts["determinism"], "not checked"),
                         verdicts["determinism"]),
        "parity": (parity, verdicts["parity"]),
        "onnx": ({"pass": "agrees", "fail": "failing"}.get(verdicts["onnx"], "not checked"), verdicts["onnx"]),
    }


def svg(label: str, message: str, color: str) -> str:
    left, right = (int(len(text) * CHAR_WIDTH + 2 * PADDING) for text in (label, message))
    width = left + right
    label, message = escape(label), escape(message)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" aria-label="{label}: {message}">
<title>{label}: {message}</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{color}"/><rect width="{width}" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="{left / 2}" y="15" fill="#010101" fill-opacity=".3">{label}</text><text x="{left / 2}" y="14">{label}</text>
<text x="{left + right / 2}" y="15" fill="#010101" fill-opacity=".3">{message}</text><text x="{left + right / 2}" y="14">{message}</text>
</g></svg>
"""


def write_badges(verdicts: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (message, verdict) in messages(verdicts).items():
        endpoint = {"schemaVersion": 1, "label": name, "message": message, "color": SHIELDS_COLORS[verdict]}
        for path, data in ((folder / f"{name}.svg", svg(name, message, COLORS[verdict])),
                           (folder / f"{name}.json", json.dumps(endpoint, indent=2) + "\n")):
            atomic_write_bytes(path, data.encode())
            written.append(path)
    return written
