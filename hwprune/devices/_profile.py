"""Device profiles: small JSON files in ``device_profiles/`` that describe a target."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwprune._paths import profiles_dir
from hwprune.errors import DeviceError
from hwprune.runtimes import Runtime, RuntimeSpec, open_runtime

__all__ = ["DeviceProfile", "load_profile", "list_profiles", "DEVICE_CLASSES", "RUNTIMES"]

DEVICE_CLASSES = ("host-cpu", "phone-cpu", "edge-gpu", "server-gpu")
RUNTIMES = ("onnxruntime", "tvm", "tflite")
_REQUIRED = ("schema_version", "name", "description", "device_class", "runtime",
             "deploy_runtime", "reach", "hardware")


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device description.

    ``runtime`` is how kernels are timed for the table; ``deploy_runtime`` what runs the
    exported artifact; ``tvm_target`` a TVM target as a JSON dict (``None`` when the device
    has no compile target).
    """

    name: str
    description: str
    device_class: str
    runtime: dict[str, Any]
    deploy_runtime: str
    reach: dict[str, Any]
    hardware: dict[str, Any]
    tvm_target: dict[str, Any] | None = None
    cross_compiler: dict[str, Any] | None = None
    cuda_arch: str | None = None
    sources: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def is_gpu(self) -> bool:
        return self.device_class.endswith("gpu")

    @property
    def threads(self) -> int:
        return int(self.runtime.get("threads", 1))

    @property
    def runtime_spec(self) -> RuntimeSpec:
        """The runtime that times this device's kernels, typed (see :mod:`hwprune.runtimes`)."""
        return RuntimeSpec.from_dict(self.runtime, self.tvm_target)

    def local_runtime(self) -> Runtime:
        """The profile's runtime on this machine (for the host, or a remote worker's side)."""
        return open_runtime(self.runtime_spec)

    @property
    def measurable_here(self) -> bool:
        """True when this machine itself is the device (the host)."""
        return self.reach.get("method") == "local"

    def peak_gflops(self, dtype: str = "float32") -> float | None:
        return (self.hardware.get("peak_gflops") or {}).get(dtype)

    def measure_hint(self, model: str) -> str:
        """The command that measures this device for real (for warnings and errors)."""
        base = f"hwprune profile --device {self.name} --model {model}"
        if self.measurable_here:
            return base
        if self.reach.get("method") == "rpc":
            return f"{base} --rpc TRACKER_HOST:9190 --key {self.reach.get('rpc_key', self.name)}"
        return f"{base} --runner 'ssh USER@DEVICE hwprune worker'"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "path"}
        return d


def list_profiles() -> list[str]:
    return sorted(p.stem for p in profiles_dir().glob("*.json"))


def load_profile(name_or_path: str) -> DeviceProfile:
    """Load a profile by name (``pixel7``) or by path to a JSON file.

    >>> load_profile("host").runtime["name"]
    'onnxruntime'
    """
    path = Path(name_or_path)
    if not (name_or_path.endswith(".json") and path.is_file()):
        path = profiles_dir() / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(list_profiles())
            raise DeviceError(f"unknown device '{name_or_path}'; known: {known}",
                              "or pass a profile file, e.g. --device my_board.json")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DeviceError(f"device profile '{path}' is not valid JSON: {exc}") from exc
    return _validate(doc, path)


def _validate(doc: Any, path: Path) -> DeviceProfile:
    def bad(msg: str) -> DeviceError:
        return DeviceError(f"device profile '{path}': {msg}")

    if not isinstance(doc, dict):
        raise bad("top level must be an object")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise bad(f"missing fields: {', '.join(missing)}")
    if doc["schema_version"] != 1:
        raise bad(f"schema_version {doc['schema_version']!r} is not supported (expected 1)")
    if doc["device_class"] not in DEVICE_CLASSES:
        raise bad(f"device_class must be one of {', '.join(DEVICE_CLASSES)}, got '{doc['device_class']}'")
    rt = doc["runtime"]
    if not isinstance(rt, dict) or rt.get("name") not in RUNTIMES:
        raise bad(f"runtime.name must be one of {', '.join(RUNTIMES)}")
    if not isinstance(rt.get("threads", 1), int) or rt.get("threads", 1) < 1:
        raise bad(f"runtime.threads must be a positive integer, got {rt.get('threads')!r}")
    if doc["deploy_runtime"] not in RUNTIMES:
        raise bad(f"deploy_runtime must be one of {', '.join(RUNTIMES)}")
    target = doc.get("tvm_target")
    if target is not None and (not isinstance(target, dict) or "kind" not in target):
        raise bad("tvm_target must be a JSON object with a 'kind' (e.g. {\"kind\": \"llvm\"})")
    for key, value in (doc.get("hardware", {}).get("peak_gflops") or {}).items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise bad(f"hardware.peak_gflops.{key} must be a positive number")
    known = {f for f in DeviceProfile.__dataclass_fields__} | {"schema_version"}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise bad(f"unknown fields: {', '.join(unknown)}")
    kwargs = {k: v for k, v in doc.items() if k != "schema_version"}
    return DeviceProfile(path=path, **kwargs)
