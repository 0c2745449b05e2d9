"""The contract between twins (canonical names, shapes, counts, coverage of the compared layers) and the
weight transfer both ways, bit for bit."""

from __future__ import annotations

import numpy as np

from parity.pair import TwinPair
from parity.runners import discard
from parity.verdict import CheckResult, require
from canon.weights import load_canonical


def check_contract(pair: TwinPair) -> CheckResult:
    a, b, ref, other = pair.ref_model, pair.other_model, pair.ref_name, pair.other_name
    only_in = {ref: sorted(set(a.weights) - set(b.weights)), other: sorted(set(b.weights) - set(a.weights))}
    mismatches = {n: [a.weights[n], b.weights[n]] for n in sorted(set(a.weights) & set(b.weights))
                  if a.weights[n] != b.weights[n]}
    covered = pair.coverage()
    parameters = {ref: a.parameters, other: b.parameters}
    audit = pair.audit
    return CheckResult("contract", [
        require("every canonical weight is in both twins", not any(only_in.values()), f"only in: {only_in}"),
        require("canonical shapes agree", not mismatches, f"shape mismatches: {mismatches}"),
        require("every module holding weights is compared", covered.passed,
                "not compared: " + "; ".join(covered.failures()) + " (compare it under the same name in both twins, "
                "or declare it in the case's uncompared)"),
        require("every module the case declares uncompared exists", not covered.unknown_declared,
                f"no module named {covered.unknown_declared} in either twin"),
        require("the transfer filled every parameter", audit["parameters"] == audit["source_parameters"],
                f"{audit['parameters']} of {audit['source_parameters']} source parameters assigned"),
    ], {"parameters": parameters, "weights_only_in": only_in, "shape_mismatches": mismatches,
        "coverage": covered.to_dict()})


def _equal_but_sums(original: str, carried: str, lossy: list[list[str]], digest: str | None = None) -> bool:
    """Where a mapping adds tensors together (torch's bias_ih + bias_hh into Keras' one bias), the
    trip from torch keeps their sum, not each one: every other tensor bit for bit, and each
    group's sum bit for bit.  ``digest``: the trip back must then give ``carried`` itself (the
    mapping is a projection: a second trip changes nothing)."""
    if not lossy:
        return False
    if digest is not None:
        from canon.weights import digest as digest_of
        return digest_of(load_canonical(carried)) == digest
    a, b = load_canonical(original), load_canonical(carried)
    grouped = {name for group in lossy for name in group}
    if set(a) != set(b) or any(not np.array_equal(a[n], b[n]) for n in a if n not in grouped):
        return False
    return all(np.array_equal(sum(a[n] for n in group), sum(b[n] for n in group)) for group in lossy)


def check_transfer(pair: TwinPair) -> CheckResult:
    """Both directions, bit for bit: ref -> other -> ref and other -> ref -> other (a mapping that
    adds tensors keeps their sums bit for bit: ``_equal_but_sums``)."""
    with pair.timed("transfer"):
        ref, other = pair.ref, pair.other
        fresh = pair.concurrently({name: pair.fresh for name in (pair.ref_name, pair.other_name)})
        (fresh_ref, _), (fresh_other, other_digest) = fresh[pair.ref_name], fresh[pair.other_name]
        try:
            # ref init (already loaded into other_model) -> other -> ref
            there_path, there = other.save_weights(pair.other_model)
            audit_back = ref.load_weights(fresh_ref, there_path)
            back = pair.digest_and_discard(ref, fresh_ref)
            lossy = pair.lossy()
            trips = [{"route": f"{ref.framework}->{other.framework}->{ref.framework}",
                      "bit_exact_there": there == pair.weights_digest or _equal_but_sums(pair.weights_path, there_path, lossy),
                      "bit_exact_back": back == pair.weights_digest or
                      _equal_but_sums(pair.weights_path, there_path, lossy, digest=back),
                      "audits": [pair.audit, audit_back], "lossy": lossy}]
            # other's own init -> ref -> other
            discard(there_path)
            own_path = other.save_weights(fresh_other)[0]
            audit_there = ref.load_weights(fresh_ref, own_path)
            there_path, there = ref.save_weights(fresh_ref)
            audit_back = other.load_weights(fresh_other, there_path)
            back = pair.digest_and_discard(other, fresh_other)
            discard(own_path, there_path)
            trips.append({"route": f"{other.framework}->{ref.framework}->{other.framework}",
                          "bit_exact_there": there == other_digest, "bit_exact_back": back == other_digest,
                          "audits": [audit_there, audit_back]})
        finally:
            ref.free(fresh_ref)
            other.free(fresh_other)
    criteria = []
    for trip in trips:
        criteria.append(require(f"{trip['route']}: bit-exact there", trip["bit_exact_there"], "digests differ"))
        criteria.append(require(f"{trip['route']}: bit-exact back", trip["bit_exact_back"], "digests differ"))
        incomplete = [a["target"] for a in trip["audits"] if a["parameters"] != a["source_parameters"]]
        criteria.append(require(f"{trip['route']}: every parameter assigned", not incomplete,
                                f"incomplete transfers into {incomplete}"))
    return CheckResult("transfer", criteria, {"audit": pair.audit, "round_trips": trips})
