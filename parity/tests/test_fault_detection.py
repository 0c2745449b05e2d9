"""The harness must catch what broken converters and broken workers do, and name the culprit."""

from __future__ import annotations

import pytest

from parity.checks import check_weights_file, corrupt_weights
from parity.runners import FrameworkRunner
from parity.worker import WorkerCrashed, WorkerError
from canon.weights import load_canonical, save_canonical


def test_untransposed_conv_kernel_is_caught_and_named(twin_for, tmp_path):
    twin = twin_for("resnet18")
    broken = tmp_path / "broken.safetensors"
    corrupt_weights(twin.weights_path, broken, "layer2.0.conv1.weight")
    result = check_weights_file(twin, str(broken))
    assert not result.passed
    assert result.first_divergent == "layer2.0.conv1"
    # every layer before it still agrees: the error is located, not smeared
    names = [row.name for row in result.rows]
    assert all(row.passed for row in result.rows[: names.index("layer2.0.conv1")])


def test_shape_mismatch_names_tensor_and_both_shapes(twin_for, tf_runner):
    twin = twin_for("resnet18")
    other = tf_runner.build(twin.case.factories["tf"], "resnet18", {"num_classes": 7}, handle="seven-classes")
    try:
        with pytest.raises(WorkerError) as caught:
            tf_runner.load_weights(other, twin.weights_path)
    finally:
        tf_runner.free(other)
    message = str(caught.value)
    assert caught.value.error_type == "TransferError" and caught.value.framework == "tf"
    assert "'fc.weight': source (10, 512) vs target (7, 512)" in message
    assert "'fc.bias': source (10,) vs target (7,)" in message


def test_missing_and_extra_tensors_are_listed(twin_for, torch_runner, tmp_path):
    twin = twin_for("resnet18")
    tensors = load_canonical(twin.weights_path)
    tensors["extra.weight"] = tensors.pop("layer1.1.bn2.running_var")
    path = tmp_path / "renamed.safetensors"
    save_canonical(path, tensors)
    with pytest.raises(WorkerError) as caught:
        torch_runner.load_weights(twin.ref_model, str(path))
    message = str(caught.value)
    assert "missing from the source: ['layer1.1.bn2.running_var']" in message
    assert "not used by the target: ['extra.weight']" in message


@pytest.mark.torch
def test_crashing_torch_worker_fails_fast_and_names_the_framework(tmp_path):
    runner = FrameworkRunner("torch", workdir=str(tmp_path))
    try:
        with pytest.raises(WorkerCrashed) as caught:
            runner.worker.call("_crash", kind="segfault", timeout=60)
    finally:
        runner.close()
    message = str(caught.value)
    assert message.startswith("[torch worker]")
    assert "SIGSEGV" in message and "'_crash'" in message
    assert "crashing on purpose: segfault" in message  # the tail of its stderr
