"""Both twins exported to ONNX and run in onnxruntime: the four outputs agree pairwise."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from parity.compare import compare
from parity.pair import TwinPair
from parity.runners import BuiltModel, FrameworkRunner, OnnxRuntimeRunner, discard
from parity.verdict import CheckResult, require

# The acceptance bound on outputs for every pair of the four, as a norm-wise relative error
# max|a - r| / max|r|.  The element-wise relative error is reported too, but on logits near
# zero it measures float32 noise: torch against its own ONNX export exceeds 1e-5 on MeDiANet.
OUTPUTS_MAX_REL = 1e-5


def check_onnx(pair: TwinPair, workdir: str, keep_files: bool = False) -> CheckResult:
    """The ONNX files are removed afterwards unless ``keep_files`` (VGG's are 0.5 GB each)."""
    case = pair.case
    with pair.timed("onnx"):
        def export_and_run(runner: FrameworkRunner, model: BuiltModel) -> tuple[dict, dict, dict]:
            start = time.perf_counter()
            path, info = runner.export_onnx(model, case.input_shape, opset=case.opset, inputs=case.input_specs(),
                                            path=f"{workdir}/{case.name}-{runner.framework}.onnx")
            seconds = round(time.perf_counter() - start, 2)
            session = OnnxRuntimeRunner(path)
            export = {**info, "path": path if keep_files else None, "export_seconds": seconds,
                      "bytes": Path(path).stat().st_size, "onnxruntime": session.settings}
            onnx_out = session.infer(pair.x)
            del session
            if not keep_files:
                discard(path)
            return export, runner.forward(model, pair.x)[0], onnx_out

        outputs, exports = {}, {}
        for name, (export, native, onnx_out) in pair.on_both(export_and_run).items():
            exports[name], outputs[name], outputs[f"{name}-onnx"] = export, native, onnx_out
    matrix = []
    for a, b in itertools.combinations(outputs, 2):
        for key in sorted(outputs[b]):
            row = compare(outputs[a].get(key), outputs[b][key], case.tolerances.for_layer(key), key)
            matrix.append({"a": a, "b": b, **row.to_dict()})
    compared = {frozenset((row["a"], row["b"])) for row in matrix}
    missing = [sorted(p) for p in itertools.combinations(outputs, 2) if frozenset(p) not in compared]
    unnamed = sorted(name for name, export in exports.items() if not export.get("exporter"))
    opsets = {name: export.get("opset") for name, export in exports.items()}
    outside = [f"{r['a']} vs {r['b']} {r['name']}: {r['reason']}" for r in matrix if not r["passed"]]
    far = [f"{r['a']} vs {r['b']} {r['name']}: {r['scale_rel']:.2e}" for r in matrix
           if r["scale_rel"] is None or r["scale_rel"] > OUTPUTS_MAX_REL]
    return CheckResult("onnx", [
        require("every pair of the four compared", not missing and len(outputs) == 4, f"not compared: {missing}"),
        require("each export names its exporter", not unnamed, f"no exporter named by {unnamed}"),
        require(f"both exports at opset {case.opset}", all(v == case.opset for v in opsets.values()), f"opsets {opsets}"),
        require("every output within tolerance", not outside, "; ".join(outside)),
        require(f"norm-wise relative error <= {OUTPUTS_MAX_REL:g}", not far, "; ".join(far)),
    ], {"exports": exports, "matrix": matrix})
