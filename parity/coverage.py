"""Which layers of a twin pair are compared, and why each other one is not.

Each twin lists its named modules (``{name, kind, weights, leaf}``: torch's ``named_modules``,
the Keras model's layers by path).  A layer is compared when both twins have it by name.  Every
other module is listed with the reason it is not compared, and one that holds weights and is
compared nowhere (neither itself nor a layer around it) fails the case unless the case declares
it (``ParityCase.uncompared``): its weights would otherwise go unchecked layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSIDE = "computed inside the compared layer {parent!r}"
CONTAINER = "a container: its layers are listed on their own"
WEIGHTLESS = "holds no weights and has no counterpart in the other twin"
DECLARED = "declared by the case: {reason}"
UNCHECKED = "holds weights {weights} but has no counterpart in the other twin"


@dataclass(frozen=True)
class NotCompared:
    framework: str
    name: str
    kind: str
    reason: str
    fails: bool


@dataclass
class Coverage:
    compared: list[str]
    not_compared: list[NotCompared] = field(default_factory=list)
    # names the case declares uncompared that neither twin has (a typo would hide nothing, but say so)
    unknown_declared: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(entry.fails for entry in self.not_compared)

    def failures(self) -> list[str]:
        return [f"{e.framework} {e.name!r} ({e.kind}) {e.reason}" for e in self.not_compared if e.fails]

    def to_dict(self) -> dict:
        return {"compared": len(self.compared), "not_compared": [vars(entry) for entry in self.not_compared],
                "unknown_declared": self.unknown_declared}


def compared_layers(reference: list[dict], candidate: list[dict]) -> list[str]:
    """The names both twins have (the model itself aside), in the reference's order."""
    theirs = {module["name"] for module in candidate}
    return [module["name"] for module in reference if module["name"] and module["name"] in theirs]


def _ancestor(name: str, compared: set[str]) -> str | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in compared:
            return prefix
    return None


def coverage(modules: dict[str, list[dict]], compared: list[str], declared: dict[str, str] | None = None) -> Coverage:
    """``modules``: framework -> its module list.  The model itself (name ``""``) is compared by
    its outputs."""
    declared = declared or {}
    chosen = set(compared)
    found = Coverage(list(compared))
    for framework, listed in modules.items():
        for module in listed:
            name = module["name"]
            if not name or name in chosen:
                continue
            parent = _ancestor(name, chosen)
            if parent is not None:
                reason, fails = INSIDE.format(parent=parent), False
            elif name in declared:
                reason, fails = DECLARED.format(reason=declared[name]), False
            elif module["weights"]:
                reason, fails = UNCHECKED.format(weights=module["weights"][:4]), True
            elif not module["leaf"]:
                reason, fails = CONTAINER, False
            else:
                reason, fails = WEIGHTLESS, False
            found.not_compared.append(NotCompared(framework, name, module["kind"], reason, fails))
    known = {module["name"] for listed in modules.values() for module in listed}
    found.unknown_declared = sorted(set(declared) - known)
    return found
