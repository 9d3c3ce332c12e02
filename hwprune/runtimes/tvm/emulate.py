"""Run an exported aarch64 library on this (x86) machine under qemu user-mode emulation.

A phone library (e.g. ``pixel7``: code for aarch64, linked with ``aarch64-linux-gnu-gcc``
against glibc) cannot be loaded into this process. Instead a small aarch64 C program
(``_vm_runner.c``) linked against the aarch64 TVM runtime from the TVM wheels loads it,
drives the Relax VM exactly as ``relax.VirtualMachine`` does, and exchanges inputs and
outputs as raw files. It runs as ``qemu-aarch64 -L /usr/aarch64-linux-gnu RUNNER ...``.

What it needs, and where it comes from:

* ``qemu-aarch64`` (Debian: ``apt-get install qemu-user``) and the aarch64 glibc sysroot
  with the cross compiler (``apt-get install gcc-aarch64-linux-gnu``);
* the aarch64 ``libtvm_runtime.so`` / ``libtvm_ffi.so`` and the tvm-ffi C headers, taken
  from the aarch64 wheels of the TVM versions installed here (``pip download``, once);
  they and the compiled runner are cached under ``$XDG_CACHE_HOME/hwprune/aarch64-runtime``
  (``~/.cache/...``; ``$HWPRUNE_CACHE_DIR`` overrides the ``hwprune`` folder).

Emulated runs check outputs only: timing under emulation means nothing.
Nothing here imports ``tvm``.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hwprune.errors import CompileError, MissingDependencyError

__all__ = ["emulator_available", "applies_to", "run_emulated", "prepare_runtime", "runtime_dir",
           "qemu_path", "EMULATOR", "APT_QEMU"]

EMULATOR = "qemu-aarch64 emulation"
APT_QEMU = "apt-get install qemu-user"
APT_CROSS = "apt-get install gcc-aarch64-linux-gnu"
CROSS_CC = "aarch64-linux-gnu-gcc"
SYSROOT = Path("/usr/aarch64-linux-gnu")
_RUNNER_SRC = Path(__file__).with_name("_vm_runner.c")
_WHEEL_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")
_PACKAGES = {"apache-tvm": "apache_tvm", "apache-tvm-ffi": "apache_tvm_ffi"}
_LIBS = {"apache-tvm": ("tvm/lib/libtvm_runtime.so",), "apache-tvm-ffi": ("tvm_ffi/lib/libtvm_ffi.so",)}
_HEADERS = "tvm_ffi/include/"


def qemu_path() -> str | None:
    return shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")


def applies_to(target: dict[str, Any]) -> bool:
    """True for a CPU (``llvm``) target whose code runs on aarch64."""
    triple = str(target.get("mtriple") or "")
    return target.get("kind") == "llvm" and triple.split("-")[0] in ("aarch64", "arm64")


def emulator_available() -> str | None:
    """None when an aarch64 library can be run here; else why not, in one line with the fix.

    The aarch64 TVM runtime is not checked here (it is downloaded on first use, see
    :func:`prepare_runtime`).
    """
    if qemu_path() is None:
        return f"qemu-aarch64 is not installed ({APT_QEMU})"
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").is_file():
        return f"the aarch64 glibc sysroot {SYSROOT} is missing ({APT_CROSS})"
    if shutil.which(CROSS_CC) is None:
        try:
            built = _runner_path().is_file()
        except MissingDependencyError as exc:
            return str(exc)
        if not built:
            return f"{CROSS_CC} is not installed to build the emulated runner ({APT_CROSS})"
    return None


def _versions() -> dict[str, str]:
    try:
        return {p: importlib.metadata.version(p) for p in _PACKAGES}
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(f"emulated runs use the TVM version installed here, and "
                                     f"{exc.name} is not installed", "pip install apache-tvm") from exc


def _cache_root() -> Path:
    explicit = os.environ.get("HWPRUNE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hwprune"


def runtime_dir() -> Path:
    """The cache folder of the aarch64 runtime matching the installed TVM versions."""
    v = _versions()
    return _cache_root() / "aarch64-runtime" / f"tvm-{v['apache-tvm']}_ffi-{v['apache-tvm-ffi']}"


def _runner_path() -> Path:
    digest = hashlib.sha256(_RUNNER_SRC.read_bytes()).hexdigest()[:12]
    return runtime_dir() / "lib" / f"vm_runner-{digest}"


def _download_hint(dest: Path) -> str:
    v = _versions()
    return (f"{sys.executable} -m pip download --no-deps --only-binary=:all: --platform "
            f"{_WHEEL_PLATFORMS[0]} --python-version {sys.version_info.major}.{sys.version_info.minor} "
            f"apache-tvm=={v['apache-tvm']} apache-tvm-ffi=={v['apache-tvm-ffi']} -d {dest}")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    import fcntl  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prepare_runtime(*, download_timeout_s: float = 900.0, compile_timeout_s: float = 300.0) -> Path:
    """The compiled aarch64 runner (next to its runtime libraries), set up on first use.

    The aarch64 wheels are taken from ``runtime_dir()/wheels`` when present there, else
    downloaded with pip into a temporary folder; only the two runtime libraries and the
    C headers are kept. Raises MissingDependencyError when something cannot be had.
    """
    why = emulator_available()
    if why:
        raise MissingDependencyError(f"cannot run aarch64 code here: {why}")
    runner = _runner_path()
    if runner.is_file():
        return runner
    root = runtime_dir()
    with _locked(root):
        if runner.is_file():  # another process finished it meanwhile
            return runner
        lib, include = root / "lib", root / "include"
        if not all((lib / Path(m).name).is_file() for ms in _LIBS.values() for m in ms) \
                or not (include / "tvm" / "ffi" / "c_api.h").is_file():
            _fetch_runtime(root, download_timeout_s)
        if shutil.which(CROSS_CC) is None:
            raise MissingDependencyError(f"{CROSS_CC} is needed to build the emulated runner", APT_CROSS)
        tmp = runner.with_name(f".{runner.name}.tmp-{os.getpid()}")
        cmd = [CROSS_CC, "-O1", "-std=c11", "-D_ISOC11_SOURCE", "-I", str(include), "-o", str(tmp),
               str(_RUNNER_SRC), "-L", str(lib), "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi",
               "-Wl,-rpath,$ORIGIN"]
        proc = _run(cmd, compile_timeout_s, "building the aarch64 runner")
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise CompileError(f"building the aarch64 runner failed: {_last_line(proc.stderr)}")
        os.replace(tmp, runner)
    return runner


def _fetch_runtime(root: Path, timeout_s: float) -> None:
    versions = _versions()
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp_s:
        tmp = Path(tmp_s)
        wheels = {p: _find_wheel(root / "wheels", p, v) for p, v in versions.items()}
        if not all(wheels.values()):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--progress-bar", "off", "-d", str(tmp),
                   "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"]
            for plat in _WHEEL_PLATFORMS:
                cmd += ["--platform", plat]
            cmd += [f"{p}=={v}" for p, v in versions.items() if not wheels[p]]
            proc = _run(cmd, timeout_s, "downloading the aarch64 TVM runtime")
            if proc.returncode != 0:
                raise MissingDependencyError(
                    f"the aarch64 TVM runtime wheels could not be downloaded: {_last_line(proc.stderr)}",
                    f"download them by hand: {_download_hint(root / 'wheels')}")
            for p, v in versions.items():
                wheels[p] = wheels[p] or _find_wheel(tmp, p, v)
        staged = tmp / "staged"
        for package, wheel in wheels.items():
            if wheel is None:
                raise MissingDependencyError(f"no aarch64 wheel of {package}=={versions[package]} was found",
                                             f"download it: {_download_hint(root / 'wheels')}")
            with zipfile.ZipFile(wheel) as zf:
                names = zf.namelist()
                for member in _LIBS[package]:
                    if member not in names:
                        raise MissingDependencyError(f"{wheel.name} holds no {member}")
                    (staged / "lib").mkdir(parents=True, exist_ok=True)
                    (staged / "lib" / Path(member).name).write_bytes(zf.read(member))
                if package == "apache-tvm-ffi":
                    for name in names:
                        if name.startswith(_HEADERS) and not name.endswith("/"):
                            dest = staged / "include" / name[len(_HEADERS):]
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            dest.write_bytes(zf.read(name))
        for sub in ("lib", "include"):
            shutil.rmtree(root / sub, ignore_errors=True)
            os.replace(staged / sub, root / sub)


def _find_wheel(folder: Path, package: str, version: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(folder.glob(f"{_PACKAGES[package]}-{version}-*aarch64*.whl"))
    return found[0] if found else None


def run_emulated(lib_path: str | os.PathLike, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], *,
                 timeout_s: float = 600.0) -> list[np.ndarray]:
    """Run ``main`` of the exported aarch64 library once under qemu; its outputs, flattened
    in order (like :func:`hwprune.runtimes.tvm.run_vm`).

    ``inputs`` are the arguments of ``main`` in order (a mapping is taken in its order).
    MissingDependencyError when qemu, the sysroot or the runtime is missing; CompileError
    when the library fails to load or run, or the run takes over ``timeout_s``.
    """
    runner = prepare_runtime()
    arrays = list(inputs.values()) if isinstance(inputs, Mapping) else list(inputs)
    lib = Path(lib_path).resolve()
    if not lib.is_file():
        raise CompileError(f"library '{lib}' does not exist")
    with tempfile.TemporaryDirectory(prefix="hwprune-qemu-") as tmp_s:
        tmp = Path(tmp_s)
        cmd = [qemu_path() or "qemu-aarch64", "-L", str(SYSROOT), str(runner), str(lib), str(tmp / "out")]
        for k, a in enumerate(arrays):
            a = np.ascontiguousarray(a)
            if a.dtype.byteorder == ">":
                raise CompileError("big-endian inputs are not supported")
            a.tofile(tmp / f"in{k}.bin")
            cmd += [str(tmp / f"in{k}.bin"), a.dtype.name, ",".join(str(d) for d in a.shape) or ""]
        env = dict(os.environ, TVM_NUM_THREADS="1")  # one emulated core; threads only add overhead
        proc = _run(cmd, timeout_s, f"running {lib.name} under qemu-aarch64", env=env)
        if proc.returncode != 0:
            raise CompileError(f"{lib.name} failed under qemu-aarch64 (exit {proc.returncode}): "
                               f"{_last_line(proc.stderr)}")
        outs = []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[0] != "output":
                continue
            shape = tuple(int(d) for d in parts[3].split(",")) if len(parts) > 3 else ()
            outs.append(np.fromfile(tmp / f"out.{parts[1]}.bin", dtype=parts[2]).reshape(shape))
        if not outs:
            raise CompileError(f"{lib.name} returned no outputs under qemu-aarch64")
    return outs


def _run(cmd: list[str], timeout_s: float, what: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise CompileError(f"{what} took over {timeout_s:.0f} s") from exc


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:400]
