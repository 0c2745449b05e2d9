"""Bring your own pair: every example under examples/ (stock Keras layers, written as a porting
engineer writes them) through the three ways in: the Python API, the command line and the pytest
plugin, with one verdict."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parity import api
from parity.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]

# example -> (its package under examples/, check_twins options)
EXAMPLES = {
    "cnn": ("cnn", dict(input_shape=(2, 3, 12, 16), known_differences=("bn_running_variance_biased",))),
    "encoder": ("transformer", dict(input_shape=(2, 7), input_dtype="int64", input_range=(0, 40))),
    "recurrent": ("recurrent", dict(input_shape=(2, 6, 5), input_layout="sequence")),
    "mobilenet_block": ("mobilenet", dict(input_shape=(2, 8, 10, 14))),
    "conv1d": ("mobilenet", dict(input_shape=(2, 2, 30), input_layout="signal")),
    "subclassed": ("subclassed", dict(input_shape=(2, 3, 10, 14))),
    "mlp": ("sequential", dict(input_shape=(3, 6))),
}


def factories(example: str) -> tuple[str, str]:
    package = EXAMPLES[example][0]
    return f"examples.{package}.torch_twin:create", f"examples.{package}.keras_twin:create"


def cli_arguments(example: str) -> list[str]:
    options = EXAMPLES[example][1]
    torch, keras = factories(example)
    argv = ["check", "--torch", torch, "--keras", keras, "--name", example,
            "--input-shape", ",".join(map(str, options["input_shape"]))]
    if "input_dtype" in options:
        argv += ["--input-dtype", options["input_dtype"], "--input-range", ",".join(map(str, options["input_range"]))]
    if "input_layout" in options:
        argv += ["--input-layout", options["input_layout"]]
    for key in options.get("known_differences", ()):
        argv += ["--known-difference", key]
    return argv


@pytest.fixture
def shared_workers(monkeypatch, twin_workers):
    """The command and the plugin, run in this process, use this suite's workers."""
    monkeypatch.setattr(api, "workers", lambda *args, **kwargs: twin_workers)
    return twin_workers


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_passes_the_python_api(twin_workers, example, tmp_path):
    result = api.check_twins(*factories(example), name=example, runners=twin_workers, report=tmp_path / "r.json",
                             **EXAMPLES[example][1])
    assert result.passed, str(result)
    assert {r.check for r in result.results} >= {"contract", "transfer", "layerwise_isolated", "layerwise_float64",
                                                 "gradients", "onnx", "determinism"}
    text = str(result)
    assert "verdict: PASS" in text and "coverage:" in text
    document = json.loads(json.dumps(result.to_dict()))  # JSON as it is
    assert document["passed"] is True and document["coverage"]["compared"] >= 3
    assert json.loads((tmp_path / "r.json").read_text())["models"][example]["contract"]["passed"] is True


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_passes_the_command(shared_workers, example, capsys, tmp_path):
    status = main(cli_arguments(example) + ["--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "verdict: PASS" in out and example in out and "coverage:" in out


def test_the_command_runs_from_a_shell(tmp_path):
    """The real command, in its own process (its own workers): the transformer on token ids."""
    result = subprocess.run([sys.executable, "-m", "parity", *cli_arguments("encoder"), "--report",
                             str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: PASS" in result.stdout and "block.attn" in result.stdout  # attention compared at its output
    assert "[parity] encoder: check 1/8 contract" in result.stderr


@pytest.mark.parametrize("argv, says", [
    (["check", "--torch", "examples.cnn.torch_twin:create"], "give both --torch"),
    (["check", "--torch", "nowhere.at_all:create", "--keras", "examples.cnn.keras_twin:create",
      "--input-shape", "2,3,12,16"], "nowhere"),
    (["check", "--torch", "examples.recurrent.torch_twin:create", "--keras", "examples.recurrent.keras_twin:create",
      "--input-shape", "2,6,5"], "declare its layout"),
    (["check", "--torch", "examples.transformer.torch_twin:create", "--keras",
      "examples.transformer.keras_twin:create", "--input-shape", "2,7", "--input-dtype", "int64"], "value_range"),
    (["check", "--torch", "examples.cnn.torch_twin:create", "--keras", "examples.cnn.keras_twin:create",
      "--inputs", "missing.npz"], "missing.npz"),
])
def test_bad_input_to_the_command_is_refused_naming_it(shared_workers, argv, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert says in capsys.readouterr().err


def test_examples_pass_through_the_pytest_plugin(shared_workers, pytester):
    """A user's suite: the plugin is found by its entry point; its fixture runs every example and
    a broken pair fails with the table."""
    cases = {name: (factories(name), options) for name, (_, options) in EXAMPLES.items()}
    pytester.syspathinsert(str(ROOT))
    pytester.makepyfile(test_user_suite=textwrap.dedent(f"""
        import pytest
        CASES = {cases!r}

        @pytest.mark.parametrize("name", sorted(CASES))
        def test_pair(assert_twins, name):
            (torch, keras), options = CASES[name]
            assert_twins(torch, keras, name=name, **options)

        def test_broken_pair(assert_twins):
            (torch, keras), options = CASES["cnn"]
            assert_twins(torch, keras, name="cnn", **{{k: v for k, v in options.items() if k != "known_differences"}})
    """))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(EXAMPLES), failed=1)
    result.stdout.fnmatch_lines(["*probable cause*BatchNorm running variance*", "*verdict: FAIL*"])
