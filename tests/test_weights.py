"""Canonical weight files and the transfer audit."""

import numpy as np
import pytest

from canon.errors import TransferError, WeightFileError
from canon.weights import WeightTransfer, digest, load_canonical, read_metadata, save_canonical


def tensors():
    rng = np.random.default_rng(0)
    return {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "fc.bias": np.zeros(5, np.float32)}


def test_round_trip_keeps_bytes_and_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    written = save_canonical(path, tensors(), {"framework": "torch"})
    loaded = load_canonical(path)
    assert digest(loaded) == written == digest(tensors())
    assert read_metadata(path)["framework"] == "torch"
    assert read_metadata(path)["format"] == "twinframe-canonical/1"


def test_digest_ignores_order_but_not_values():
    a = tensors()
    b = dict(reversed(list(a.items())))
    assert digest(a) == digest(b)
    b["fc.bias"] = b["fc.bias"] + np.float32(1e-7)
    assert digest(a) != digest(b)


def test_missing_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(WeightFileError, match="not found: .*nope.safetensors"):
        load_canonical(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(WeightFileError, match="bad.safetensors is not a readable safetensors file"):
        load_canonical(bad)


def test_nan_weights_are_refused_by_name(tmp_path):
    broken = tensors()
    broken["fc.bias"][2] = np.nan
    with pytest.raises(WeightFileError, match="'fc.bias' has 1 NaN/Inf"):
        save_canonical(tmp_path / "w.safetensors", broken)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_canonical(path, tensors())
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_canonical(path, {"x": np.array(["not", "numeric"], dtype=object)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def audit(source, slots):
    transfer = WeightTransfer(source, "test model")
    for name, shape in slots.items():
        transfer.expect(name, shape)
    return transfer


def test_audit_accepts_an_exact_match_and_counts_parameters():
    transfer = audit(tensors(), {"conv1.weight": (4, 3, 3, 3), "fc.bias": (5,)})
    transfer.check()
    for name in ("conv1.weight", "fc.bias"):
        transfer.take(name)
    assert transfer.finish() == {"target": "test model", "tensors": 2, "parameters": 113, "source_parameters": 113}


def test_audit_lists_every_problem_at_once():
    transfer = audit(tensors(), {"conv1.weight": (3, 4, 3, 3), "fc.weight": (5, 2)})
    with pytest.raises(TransferError) as caught:
        transfer.check()
    message = str(caught.value)
    assert "missing from the source: ['fc.weight']" in message
    assert "not used by the target: ['fc.bias']" in message
    assert "'conv1.weight': source (4, 3, 3, 3) vs target (3, 4, 3, 3)" in message


def test_audit_refuses_double_assignment_and_unassigned_slots():
    transfer = audit(tensors(), {"conv1.weight": (4, 3, 3, 3), "fc.bias": (5,)})
    transfer.check()
    transfer.take("conv1.weight")
    with pytest.raises(TransferError, match="assigned more than once"):
        transfer.take("conv1.weight")
    with pytest.raises(TransferError, match=r"never assigned: \['fc.bias'\]"):
        transfer.finish()
    with pytest.raises(TransferError, match="two weights claim"):
        transfer.expect("fc.bias", (5,))


def test_checkpoint_keys_from_dataparallel_and_legacy_torchvision_densenet():
    from parity.adapters.common import checkpoint_key

    assert checkpoint_key("module.layer1.0.bn1.weight") == "layer1.0.bn1.weight"
    assert checkpoint_key("features.denseblock1.denselayer1.norm.1.running_var") == "features.denseblock1.denselayer1.norm1.running_var"
    assert checkpoint_key("features.denseblock4.denselayer16.conv.2.weight") == "features.denseblock4.denselayer16.conv2.weight"
    assert checkpoint_key("features.denseblock1.denselayer1.norm1.weight") == "features.denseblock1.denselayer1.norm1.weight"
    assert checkpoint_key("features.transition1.norm.weight") == "features.transition1.norm.weight"


def test_equal_weights_give_byte_identical_files_whatever_the_metadata_order(tmp_path):
    import hashlib

    from canon.weights import load_canonical, read_metadata, save_canonical

    tensors = {"b.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(3, np.float32)}
    save_canonical(tmp_path / "one.safetensors", tensors, {"framework": "torch", "epoch": "3"})
    save_canonical(tmp_path / "two.safetensors", dict(reversed(list(tensors.items()))), {"epoch": "3", "framework": "torch"})
    one, two = ((tmp_path / f"{n}.safetensors").read_bytes() for n in ("one", "two"))
    assert hashlib.sha256(one).hexdigest() == hashlib.sha256(two).hexdigest()
    assert read_metadata(tmp_path / "one.safetensors")["epoch"] == "3"
    np.testing.assert_array_equal(load_canonical(tmp_path / "two.safetensors")["b.weight"], tensors["b.weight"])


def test_merge_prefixed_renames_each_part_and_refuses_a_weight_given_twice():
    from canon.weights import merge_prefixed

    a, b = {"fc.weight": np.ones((2, 2), np.float32)}, {"encoder.0.weight": np.zeros(3, np.float32)}
    merged = merge_prefixed([("classifier.", a, "stage 1"), ("", b, "stage 2")])
    assert sorted(merged) == ["classifier.fc.weight", "encoder.0.weight"]
    with pytest.raises(TransferError, match="'classifier.fc.weight' is given by both stage 1 and again"):
        merge_prefixed([("classifier.", a, "stage 1"), ("classifier.", a, "again")])
