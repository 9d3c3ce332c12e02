"""Device profiles and the runners that time kernels on a device."""
from __future__ import annotations

from typing import Any

from hwprune.devices._profile import DeviceProfile, list_profiles, load_profile
from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol
from hwprune.errors import DeviceError

__all__ = ["DeviceProfile", "list_profiles", "load_profile", "Measurement", "MicroModel", "Runner",
           "TimingProtocol", "RUNNERS", "make_runner"]

#: Built-in runners by name: "module:class", imported on use (TVM ones import tvm).
RUNNERS = {
    "local": "hwprune.devices._ort_runner:OrtLocalRunner",
    "worker": "hwprune.devices._worker:WorkerRunner",
    "tvm-local": "hwprune.devices._tvm_runner:TvmLocalRunner",
    "tvm-rpc": "hwprune.devices._tvm_runner:TvmRpcRunner",
}


def make_runner(name: str, *args: Any, **kwargs: Any) -> Runner:
    """Instantiate a built-in runner by name; unknown names list the known ones."""
    import importlib

    if name not in RUNNERS:
        raise DeviceError(f"unknown runner '{name}'; known: {', '.join(RUNNERS)}")
    module, cls = RUNNERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(*args, **kwargs)
