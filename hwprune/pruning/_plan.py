"""PruningPlan: how many channels each coupled group keeps. Serialized as JSON."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwprune import __version__
from hwprune._io import atomic_write
from hwprune.errors import PlanError

__all__ = ["PruningPlan", "PLAN_SCHEMA"]

PLAN_SCHEMA = 1


def _count(value: Any, what: str) -> int:
    """A channel count as the plan file gives it: a whole number (12.7 is refused, not
    truncated to 12)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or (isinstance(value, float) and not value.is_integer()):
        raise PlanError(f"{what} must be a whole number of channels, got {value!r}")
    return int(value)


@dataclass
class PruningPlan:
    """Kept channels per coupled group of one model.

    ``keep`` maps group name (the stable module path of the group's root layer) to the
    number of channels kept; ``dense`` the group's original width.
    """

    model_id: str
    input_shape: tuple[int, ...]
    keep: dict[str, int]
    dense: dict[str, int] = field(default_factory=dict)
    hwprune_version: str = __version__
    meta: dict[str, Any] = field(default_factory=dict)

    def ratio(self, group: str) -> float:
        return 1.0 - self.keep[group] / self.dense[group]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA,
            "hwprune_version": self.hwprune_version,
            "model_id": self.model_id,
            "input_shape": list(self.input_shape),
            "groups": {g: {"keep": k, "dense": self.dense.get(g)} for g, k in self.keep.items()},
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, self.to_json())

    @classmethod
    def from_dict(cls, doc: Any, source: str = "plan") -> "PruningPlan":
        try:
            if doc.get("schema_version") != PLAN_SCHEMA:
                raise PlanError(f"{source}: schema_version {doc.get('schema_version')!r} "
                                f"is not supported (expected {PLAN_SCHEMA})")
            groups = doc["groups"]
            keep = {str(g): _count(v["keep"], f"{source}: group '{g}' keep") for g, v in groups.items()}
            dense = {str(g): _count(v["dense"], f"{source}: group '{g}' dense")
                     for g, v in groups.items() if v.get("dense") is not None}
            return cls(model_id=str(doc["model_id"]),
                       input_shape=tuple(int(s) for s in doc["input_shape"]),
                       keep=keep, dense=dense,
                       hwprune_version=str(doc.get("hwprune_version", "?")),
                       meta=dict(doc.get("meta") or {}))
        except PlanError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"{source} is not a valid pruning plan: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> "PruningPlan":
        path = Path(path)
        if not path.is_file():
            raise PlanError(f"plan file '{path}' does not exist")
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan file '{path}' is not valid JSON: {exc}") from exc
        return cls.from_dict(doc, f"plan file '{path}'")
