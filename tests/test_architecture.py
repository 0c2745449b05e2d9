"""The architecture rules of docs/architecture.md, enforced."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    linter = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    assert linter, "import-linter is not installed (pip install -e '.[dev]')"
    result = subprocess.run([linter, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "10 kept" in result.stdout, result.stdout


def test_framework_free_modules_load_no_framework():
    """Importing canon and the parity core (as the pytest process does) pulls in neither framework."""
    code = (
        "import sys, canon.models, canon.layout, canon.weights, canon.tolerances, canon.inputs, "
        "parity.worker, parity.compare, parity.verdict, parity.pair, parity.checks, parity.runners, parity.report, parity.zoo, "
        "parity.__main__, parity.adapters.common, parity.protocol, parity.frameworks, parity.api, parity.mappings, "
        "parity.coverage, parity.pytest_plugin\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'keras', 'tf2onnx', 'impl_torch', 'impl_tf'})\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_this_test_process_never_loaded_a_framework():
    assert not {"torch", "tensorflow", "keras"} & set(sys.modules)
