"""Device profiles and the runners that time kernels on a device."""
from __future__ import annotations

from typing import Any

from hwprune.devices._local import LocalRunner
from hwprune.devices._profile import DeviceProfile, list_profiles, load_profile
from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol
from hwprune.errors import ConfigError, DeviceError

__all__ = ["DeviceProfile", "list_profiles", "load_profile", "Measurement", "MicroModel", "Runner",
           "TimingProtocol", "RUNNERS", "make_runner", "LocalRunner", "runner_for"]

#: Built-in runners by name: "module:class", imported on use (TVM ones import tvm).
RUNNERS = {
    "local": "hwprune.devices._local:LocalRunner",
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



def runner_for(profile: DeviceProfile, protocol: TimingProtocol, *, command: str | None = None,
               rpc: str | None = None, key: str | None = None, threads: int | None = None) -> Runner | None:
    """The runner that reaches ``profile``'s device: through ``command`` (``hwprune worker``
    at the other end), over TVM RPC, or here when this machine is the device. ``None``
    when none of these reaches it (its table can only be estimated)."""
    from dataclasses import replace

    spec = profile.runtime_spec
    if threads:
        spec = replace(spec, threads=threads)
    if command and rpc:
        raise ConfigError("give either --runner or --rpc, not both")
    if command:
        return make_runner("worker", command, spec, protocol)
    if rpc:
        if not key:
            raise ConfigError("--rpc needs --key (the device key registered with the tracker)")
        if profile.tvm_target is None:
            raise ConfigError(f"device '{profile.name}' has no tvm_target; TVM RPC cannot build for it")
        cc = (profile.cross_compiler or {}).get("cc")
        return make_runner("tvm-rpc", rpc, key, profile.tvm_target, protocol=protocol, cross_cc=cc,
                           threads=spec.threads)
    if profile.measurable_here:  # this machine: the profile's runtime in this process
        return make_runner("local", spec, protocol)
    return None
