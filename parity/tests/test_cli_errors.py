"""``python -m parity check`` and ``port`` fail cleanly: bad input is one line naming the culprit
with exit status 2 (paths and options before any worker starts), a worker that crashes, fails
inside or stops answering (``--timeout``) one line naming the framework and the request with
exit status 1; never a traceback, and a failed port leaves ``--out`` as it found it.

Each command runs as ``python -m parity`` in a process of its own, as a user runs it; this test
process loads no framework (the small checkpoint is written by torch in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_UNET = ["unet", "--config", json.dumps({"widths": [4, 8]})]  # 21 kB of weights: the cheapest zoo twin
# The worker's diagnostic op as a model factory: _crash("hang") sleeps, _crash("segfault") dies,
# _crash("unet", widths=...) raises TypeError inside the worker.  It is swapped in before the
# command parses its arguments (so these run as python -c, not -m).
CRASH = "'parity.worker:_crash'"
PATCH_TF = f"from parity import zoo; zoo.ZOO_FACTORIES['tf'] = {CRASH}"
PATCH_TORCH = f"from parity import zoo; zoo.ZOO_FACTORIES['torch'] = {CRASH}"
PATCH_CASE = ("from parity import zoo; from parity.pair import ParityCase; zoo.CASES['hang'] = "
              f"ParityCase('hang', 'hang', {{'torch': {CRASH}, 'tf': {CRASH}}}, input_shape=(2, 3, 8, 10))")


def parity(*args: str, patch: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m parity ARGS``; with ``patch``, that Python runs first in the same process."""
    command = ["-m", "parity"] if patch is None else [
        "-c", f"import sys\n{patch}\nfrom parity.__main__ import main\nsys.exit(main(sys.argv[1:]))"]
    return subprocess.run([sys.executable, *command, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def error_line(result: subprocess.CompletedProcess, status: int, *named: str, usage: bool = False) -> str:
    """The command's one error line, after checking the exit status, that the line names each of
    ``named`` and that nothing else is on stderr but argparse's usage block (option errors)."""
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("[parity] ")]  # progress
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr and lines, result.stderr
    assert usage or len(lines) == 1, result.stderr
    line = lines[-1]
    assert line.startswith(("python -m parity check: error: ", "python -m parity port: error: ")), line
    for text in named:
        assert str(text) in line, line
    return line


def assert_untouched(out: Path, before: set[str] | None = None) -> None:
    """No scratch folder, nothing added: ``out`` holds what it held (``None``: it did not exist)."""
    if before is None:
        assert not out.exists(), sorted(p.name for p in out.iterdir())
    else:
        assert {p.name for p in out.iterdir()} == before


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real torch state_dict of the small UNet, written by torch in its own process."""
    path = tmp_path_factory.mktemp("checkpoints") / "unet-small.pth"
    code = (f"import torch; from impl_torch import create_model; "
            f"torch.save(create_model('unet', widths=[4, 8]).state_dict(), {str(path)!r})")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
    return path


# -- refused before any worker starts -----------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
@pytest.mark.parametrize("command", [["check", "resnet18"], ["port", "resnet18", "--checkpoint", "x", "--out", "o"]])
def test_a_timeout_must_be_positive_seconds(command, value):
    error_line(parity(*command, "--timeout", value), 2, "--timeout", value, usage=True)


@pytest.mark.parametrize("rows, named", [("torch,mxnet", "unknown framework 'mxnet'"),
                                         ("tf,torch", "the reference 'torch' first"),
                                         ("torch", "the reference 'torch' first"),
                                         ("torch,tf,tf", "each once")])
def test_frameworks_must_be_known_rows_after_the_reference(rows, named):
    error_line(parity("check", "resnet18", "--frameworks", rows), 2, "--frameworks", named, usage=True)


def test_an_own_pair_is_judged_against_one_row_at_a_time():
    error_line(parity("check", "--torch", "a.b:c", "--keras", "a.b:d", "--frameworks", "torch,tf,keras-jax"),
               2, "one row at a time", "torch,tf,keras-jax")


def test_an_unknown_case_is_named():
    error_line(parity("check", "resnet18", "resnett18"), 2, "'resnett18'", "known cases")


def test_a_report_path_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    error_line(parity("check", "resnet18", "--report", tmp_path), 2, "--report", tmp_path, "is a folder", usage=True)
    error_line(parity("check", "resnet18", "--report", tmp_path / "file" / "r.json"), 2, "--report",
               f"{tmp_path / 'file'} is a file", usage=True)


@pytest.mark.parametrize("where", ["file", "file/out"])
def test_an_out_folder_that_cannot_be_made_is_refused(tmp_path, where):
    (tmp_path / "file").write_text("")
    result = parity("port", "resnet18", "--checkpoint", tmp_path / "file", "--out", tmp_path / where)
    error_line(result, 2, "--out", f"{tmp_path / 'file'} is a file", usage=True)
    assert (tmp_path / "file").read_text() == ""


def test_unwritable_folders_are_refused():
    """/sys takes no new file from anyone, root included (permission bits would not stop root)."""
    error_line(parity("check", "resnet18", "--report", "/sys/twinframe-test/r.json"), 2, "--report",
               "/sys/twinframe-test: cannot write there", usage=True)
    error_line(parity("port", "resnet18", "--checkpoint", "x.pth", "--out", "/sys/twinframe-test"), 2, "--out",
               "/sys/twinframe-test: cannot write there", usage=True)


@pytest.mark.parametrize("config, named", [
    ("{", "--config must be a JSON object"),
    ("[4, 8]", "--config must be a JSON object"),
    ('{"wdths": [4, 8]}', "has no option(s) ['wdths']"),
    ('{"widths": 4}', "model 'unet': an option in {'widths': 4} has the wrong type"),
])
def test_a_bad_config_is_named(tmp_path, config, named):
    (tmp_path / "c.pth").write_bytes(b"x")
    out = tmp_path / "out"
    error_line(parity("port", "unet", "--config", config, "--checkpoint", tmp_path / "c.pth", "--out", out), 2, named)
    assert_untouched(out)


def test_a_missing_or_empty_checkpoint_and_an_unknown_model_are_named(tmp_path):
    out, empty, some = tmp_path / "out", tmp_path / "empty.pth", tmp_path / "some.pth"
    empty.write_bytes(b"")
    some.write_bytes(b"x")
    error_line(parity("port", *SMALL_UNET, "--checkpoint", tmp_path / "no.pth", "--out", out), 2,
               f"checkpoint not found: {tmp_path / 'no.pth'}")
    error_line(parity("port", *SMALL_UNET, "--checkpoint", empty, "--out", out), 2, f"checkpoint {empty} is empty")
    error_line(parity("port", "unett", "--checkpoint", some, "--out", out), 2, "unknown model 'unett'")
    assert_untouched(out)


# -- found by the torch worker, which reads the checkpoint before the TF worker starts ----------

@pytest.mark.torch
def test_bad_checkpoints_are_one_line_naming_the_file(tmp_path, checkpoint):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    cases = [
        (["resnet18"], checkpoint, "cannot transfer", "missing from the source: ['bn1.bias'"),  # another model's
        (["unet", "--config", '{"widths": [4, 16]}'], checkpoint, "shape mismatch for 'decoder.0.weight'"),
        (SMALL_UNET, truncated, "not a readable torch checkpoint"),
    ]
    for model, path, *named in cases:
        error_line(parity("port", *model, "--checkpoint", path, "--out", out), 2, f"checkpoint {path}: ", *named)
        assert_untouched(out, {"notes.txt"})


@pytest.mark.torch
def test_an_unknown_model_with_an_input_shape_is_named_by_the_worker(tmp_path, checkpoint):
    out = tmp_path / "new" / "out"  # two folders the failed port must not leave behind
    result = parity("port", "unett", "--checkpoint", checkpoint, "--out", out, "--input-shape", "2,3,32,48")
    error_line(result, 2, "unknown model 'unett'", "known models")
    assert not (tmp_path / "new").exists()


# -- twinframe's failures: exit status 1, naming the framework and the request ------------------

@pytest.mark.torch
@pytest.mark.parametrize("kind, named", [
    ("hang", "[torch worker] no answer to 'build' within 3 s; worker killed"),
    ("segfault", "[torch worker] worker killed by SIGSEGV while running 'build'"),
], ids=["hang", "segfault"])
def test_a_worker_that_stops_answering_or_crashes_is_one_line(tmp_path, checkpoint, kind, named):
    out, timeout = tmp_path / "out", 3
    start = time.monotonic()
    result = parity("port", kind, "--checkpoint", checkpoint, "--out", out, "--input-shape", "2,3,8,10",
                    "--timeout", timeout, patch=PATCH_TORCH)
    elapsed = time.monotonic() - start
    assert error_line(result, 1, named).endswith(f"(its log ends: worker crashing on purpose: {kind})")
    # The bound holds the worker's start-up (torch's import) too; without --timeout the call waits 1800 s.
    assert elapsed < timeout + 60
    assert_untouched(out)


@pytest.mark.torch
@pytest.mark.tf
def test_check_takes_the_timeout_too(tmp_path):
    start = time.monotonic()
    result = parity("check", "hang", "--report", tmp_path / "r.json", "--timeout", 3, patch=PATCH_CASE)
    elapsed = time.monotonic() - start
    error_line(result, 1, " worker] no answer to 'build' within 3 s")
    assert elapsed < 3 + 90  # both workers start first (TensorFlow's import is the longer)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.torch
@pytest.mark.tf
def test_a_failure_in_the_target_removes_what_the_source_wrote(tmp_path, checkpoint):
    out = tmp_path / "out"
    result = parity("port", *SMALL_UNET, "--checkpoint", checkpoint, "--out", out, patch=PATCH_TF)
    error_line(result, 1, "[tf worker] 'build' failed with TypeError")
    assert_untouched(out)  # the torch side's unet.safetensors was written, then removed
