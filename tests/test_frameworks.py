"""The table of frameworks, and the rule that no product file outside it names a framework."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity import frameworks

ROOT = Path(__file__).resolve().parent.parent
# Where a framework may be named in code: the table itself and the code that runs inside a
# framework's own process (its adapter, its twins and trainer).
MAY_NAME_A_FRAMEWORK = ("parity/frameworks.py", "parity/adapters/", "impl_torch/", "impl_tf/")
PRODUCT = ("parity", "repro", "canon")
NAMES = {"torch", "tf", "tensorflow", "keras", "jax", "pytorch"}


def test_every_row_names_modules_that_exist_without_importing_them():
    assert frameworks.REFERENCE in frameworks.FRAMEWORKS
    assert frameworks.candidates() and frameworks.REFERENCE not in frameworks.candidates()
    for row in frameworks.FRAMEWORKS.values():
        package, _, function = row.model_factory.partition(":")
        assert function, row.model_factory
        # a backend row has no data-parallel engine of its own (run.py refuses --nproc for it)
        assert (row.distributed is None) == (row.launcher is None) == (row.backend_of is not None), row.name
        assert row.backend_of is None or row.backend_of in frameworks.names()
        engine = (row.distributed, row.launcher.partition(":")[0]) if row.launcher else ()
        for module in (row.adapter.partition(":")[0], row.training, *engine, package):
            assert (ROOT / (module.replace(".", "/") + ".py")).is_file() or \
                (ROOT / module.replace(".", "/") / "__init__.py").is_file(), module
        assert row.native_suffix.startswith(".") and row.modules and row.packages
    assert importlib.util.find_spec("parity.adapters") is not None
    assert frameworks.model_factories() == {name: row.model_factory for name, row in frameworks.FRAMEWORKS.items()}


def test_an_unknown_framework_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown framework 'jax'; known: torch, tf"):
        frameworks.get("jax")


def test_a_loaded_framework_is_told_by_its_numeric_library():
    assert frameworks.loaded({"numpy": None, "torch": None}) == ["torch"]
    assert frameworks.loaded({"keras": None}) == []  # a front end: the library under it is what counts
    assert frameworks.loaded({"torch": None, "tensorflow": None, "jax": None}) == ["jax", "tensorflow", "torch"]
    assert [frameworks.get(name).modules for name in frameworks.every()] == [
        ("torch",), ("tensorflow",), ("jax",), ("torch",)]
    assert frameworks.environment("tf") == {"KERAS_BACKEND": "tensorflow"} and frameworks.environment("mine") == {}


def _framework_literals(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [f"{path.relative_to(root)}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and node.value.lower() in NAMES]


def test_no_product_file_outside_the_table_and_the_adapters_names_a_framework():
    files = [p for package in PRODUCT for p in sorted((ROOT / package).rglob("*.py"))
             if "tests" not in p.relative_to(ROOT).parts
             and not str(p.relative_to(ROOT)).startswith(MAY_NAME_A_FRAMEWORK)]
    assert len(files) > 20
    found = [hit for path in files for hit in _framework_literals(path)]
    assert not found, "framework names outside parity/frameworks.py:\n" + "\n".join(found)


def test_the_scan_sees_a_framework_named_in_code_but_not_in_a_docstring(tmp_path):
    source = tmp_path / "mine.py"
    source.write_text('"""Runs torch."""\n\ndef f():\n    """On tf."""\n    return {"torch": 1, "label": "PyTorch"}\n')
    assert _framework_literals(source, tmp_path) == ["mine.py:5 'torch'", "mine.py:5 'PyTorch'"]


KEEP_OUT_PROBE = """
import importlib.util, json, sys
from parity import frameworks
frameworks.keep_out_others(sys.argv[1])
refused, found = {}, {}
for library in frameworks.libraries():
    spec = importlib.util.find_spec(library)  # a probe (torch's dynamo makes them) finds each, imports nothing
    if spec is not None and spec.origin is None:  # refused: importing it fails
        try:
            __import__(library)
        except ModuleNotFoundError as error:
            refused[library] = str(error)
    else:
        found[library] = spec is not None
print(json.dumps({"refused": refused, "found": found}))
"""


@pytest.mark.parametrize("name", frameworks.every())
def test_every_row_keeps_the_other_libraries_out(name):
    """A row's process cannot import another row's numeric library (Keras would import TensorFlow
    on every backend), and still finds its own."""
    probe = subprocess.run([sys.executable, "-c", KEEP_OUT_PROBE, name], capture_output=True, text=True,
                           cwd=ROOT, check=True)
    seen = json.loads(probe.stdout)
    own = frameworks.get(name).modules
    assert sorted(seen["refused"]) == [library for library in frameworks.libraries() if library not in own]
    assert all(f"out of this {name} process" in message for message in seen["refused"].values())
    assert all(seen["found"][library] for library in own)  # installed here, and not refused
