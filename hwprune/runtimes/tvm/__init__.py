"""Everything that touches TVM. The only place in hwprune that imports ``tvm``.

``import tvm`` costs seconds, so nothing here imports it at module load: each function
calls :func:`import_tvm` first. A missing TVM raises :class:`MissingDependencyError`
naming the pip command.

Verified with apache-tvm 0.27 (see ``tests/compile``):

* targets are JSON dicts (``{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}``);
  ``"mcpu": "native"`` is *not* resolved by TVM's LLVM backend (it warns and falls back
  to ``generic``), so :func:`resolve_target` replaces it with LLVM's host CPU name.
* the default pipeline applies no CPU schedules; MetaSchedule needs ``num-cores`` in
  the target and a builder timeout far above its 30 s default on a busy machine.
* the pip wheel's CUDA runtime needs the driver's ``libcuda.so.1`` to load; without it
  TVM keeps CUDA *source* in the library. :func:`_enable_cuda_codegen` loads a
  compile-only driver stub in that case, so kernels are compiled by nvcc to a fatbin
  and embedded (no kernel ever runs in this process).

Times: every timing function returns milliseconds; :func:`seconds_to_ms` is the one
place TVM's seconds are converted.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from hwprune.errors import CompileError, DeviceError, MissingDependencyError
from hwprune.runtimes import Runtime, RuntimeSpec, Session
from hwprune.runtimes.tvm import schedule

__all__ = [
    "import_tvm", "tvm_version", "seconds_to_ms", "resolve_target", "target_kind",
    "OnnxInput", "onnx_inputs", "import_onnx", "build", "schedule_for_build", "last_schedule_report", "tune", "TuneReport",
    "LinkInfo", "export_library", "load_vm", "run_vm", "time_vm", "random_inputs",
    "time_onnx_local", "time_onnx_rpc", "remote_threads", "connect_rpc", "parse_tracker", "host_triple",
    "is_cross", "set_num_threads", "nvcc_path", "TvmRuntime", "build_cuda_library", "compile_library", "compile_library_here", "vm_session", "HOST_TARGET",
]

PIP_TVM = "pip install apache-tvm"
HOST_TARGET = {"kind": "llvm", "mcpu": "native"}  # this CPU
_CUDA_DRIVER_SYMBOLS = (  # what libtvm_runtime_cuda.so needs from libcuda.so.1 (nm -D -u)
    "cuDeviceGetName", "cuFuncSetAttribute", "cuGetErrorName", "cuGetErrorString",
    "cuLaunchKernelEx", "cuModuleGetFunction", "cuModuleLoadData", "cuModuleUnload",
    "cuTensorMapEncodeTiled",
)
_TUNED_OPS = ("conv2d", "matmul", "dense")
_FATBIN_MAGIC = bytes.fromhex("50ed55ba")  # 0xBA55ED50, little endian: start of a CUDA fatbin
_cuda_state: dict[str, Any] = {}
_lock = threading.Lock()


def import_tvm() -> Any:
    """Import and return the ``tvm`` package, or raise MissingDependencyError."""
    try:
        import tvm  # noqa: PLC0415  (lazy on purpose: seconds to import)
        from tvm import relax  # noqa: F401,PLC0415
    except ImportError as exc:
        raise MissingDependencyError(f"compiling needs Apache TVM, which is not installed ({exc})",
                                     f"install it with: {PIP_TVM}") from exc
    return tvm


def tvm_version() -> str:
    return str(import_tvm().__version__)


def seconds_to_ms(seconds: float | Sequence[float]) -> Any:
    """The one place TVM's seconds become milliseconds."""
    if isinstance(seconds, (int, float)):
        return float(seconds) * 1e3
    return [float(s) * 1e3 for s in seconds]


# --------------------------------------------------------------------------- targets

def target_kind(target: dict[str, Any]) -> str:
    return str(target.get("kind", ""))


def host_triple(target: dict[str, Any]) -> str | None:
    """The LLVM triple code runs on (the host part for GPU targets); None = this machine."""
    if target_kind(target) == "llvm":
        return target.get("mtriple")
    host = target.get("host")
    return host.get("mtriple") if isinstance(host, dict) else None


def is_cross(target: dict[str, Any]) -> bool:
    triple = host_triple(target)
    if not triple:
        return False
    import platform  # noqa: PLC0415
    here = platform.machine().lower()
    arch = triple.split("-")[0].lower()
    return not (arch == here or (arch == "x86_64" and here in ("amd64", "x86_64")))


def resolve_target(target: dict[str, Any], *, num_cores: int | None = None) -> dict[str, Any]:
    """A copy of ``target`` TVM can act on.

    ``"mcpu": "native"`` becomes this machine's CPU name from LLVM (TVM 0.27 would
    otherwise silently compile for ``generic``). ``num_cores`` is added for tuning when
    the target has none (MetaSchedule refuses a CPU target without it).
    """
    tvm = import_tvm()
    out = json.loads(json.dumps(target))
    if out.get("mcpu") == "native":
        if out.get("mtriple") and is_cross(out):
            raise CompileError(f"target {json.dumps(target)} asks for mcpu 'native' on another "
                               "architecture", "name the CPU, e.g. \"mcpu\": \"cortex-a76\"")
        out["mcpu"] = str(tvm.target.codegen.llvm_get_system_cpu())
    if num_cores and target_kind(out) == "llvm" and "num-cores" not in out:
        out["num-cores"] = int(num_cores)
    if isinstance(out.get("host"), dict):
        out["host"] = resolve_target(out["host"])
    try:
        tvm.target.Target(out)
    except Exception as exc:  # TVM raises its own error types
        raise CompileError(f"TVM rejects target {json.dumps(target)}: {_first_line(exc)}") from exc
    return out


def _target(target: dict[str, Any]) -> Any:
    tvm = import_tvm()
    return tvm.target.Target(target)


# --------------------------------------------------------------------------- ONNX -> relax

@dataclass(frozen=True)
class OnnxInput:
    name: str
    shape: tuple[int, ...]
    dtype: str


def _load_onnx(model: str | os.PathLike | bytes) -> Any:
    import onnx  # noqa: PLC0415
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_model_from_string(bytes(model))
        return onnx.load(str(model))
    except Exception as exc:
        raise CompileError(f"cannot read ONNX model: {_first_line(exc)}") from exc


def onnx_inputs(model: Any) -> list[OnnxInput]:
    """Graph inputs that are not initializers, with static shapes (else CompileError)."""
    import onnx  # noqa: PLC0415
    if not hasattr(model, "graph"):
        model = _load_onnx(model)
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise CompileError(f"ONNX input '{vi.name}' has a dynamic dimension "
                                   f"'{d.dim_param or '?'}'", "export the model with a static shape")
            dims.append(int(d.dim_value))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        out.append(OnnxInput(vi.name, tuple(dims), dtype))
    return out


def import_onnx(model: str | os.PathLike | bytes) -> Any:
    """ONNX (path or bytes) -> relax IRModule with static input shapes, weights as constants."""
    import_tvm()
    from tvm.relax.frontend.onnx import from_onnx  # noqa: PLC0415
    proto = _load_onnx(model)
    inputs = onnx_inputs(proto)
    try:
        return from_onnx(proto, shape_dict={i.name: list(i.shape) for i in inputs},
                         dtype_dict={i.name: i.dtype for i in inputs}, keep_params_in_input=False)
    except Exception as exc:  # the importer lists every unsupported op at once
        raise CompileError(f"TVM cannot import the ONNX model: {_first_line(exc)}") from exc


# --------------------------------------------------------------------------- CUDA codegen

def nvcc_path() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def _cuda_runtime_loaded() -> bool:
    import tvm_ffi  # noqa: PLC0415
    return "ffi.Module.load_from_bytes.cuda" in tvm_ffi.registry.list_global_func_names()


def _enable_cuda_codegen(arch: str) -> dict[str, Any]:
    """Make tvm.compile embed an nvcc-built fatbin for ``arch``; returns how.

    TVM's CUDA codegen only produces a binary when its CUDA runtime (a sidecar library
    linked against the driver's libcuda.so.1) is loaded. On a build machine without the
    NVIDIA driver we load a generated stub libcuda.so.1 whose functions all return an
    error: the codegen only stores the binary, it never calls the driver.
    """
    tvm = import_tvm()
    import tvm_ffi  # noqa: PLC0415
    nvcc = nvcc_path()
    if nvcc is None:
        raise MissingDependencyError(
            "CUDA export needs nvcc (the CUDA toolkit) to compile kernels, and none was found",
            "install the CUDA toolkit (e.g. apt-get install nvidia-cuda-toolkit) or set CUDA_HOME")
    with _lock:
        how = _cuda_state.get("driver", "NVIDIA driver (libcuda.so.1)")
        if not _cuda_runtime_loaded():
            how = "NVIDIA driver (libcuda.so.1)" if _dlopen("libcuda.so.1") else _load_cuda_stub()
            from tvm.base import _LOADED_LIBS  # noqa: PLC0415
            from tvm_ffi.libinfo import load_lib_ctypes  # noqa: PLC0415
            try:
                _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
                    package="tvm", target_name="tvm_runtime_cuda",
                    extra_lib_paths=[Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent],
                    mode="RTLD_LOCAL")
            except (OSError, FileNotFoundError, RuntimeError) as exc:
                raise MissingDependencyError(
                    f"this TVM build has no loadable CUDA runtime ({_first_line(exc)})",
                    f"install a CUDA-enabled TVM: {PIP_TVM}") from exc
        from tvm.support import nvcc as tvm_nvcc  # noqa: PLC0415

        def _compile(code: str, *_: Any) -> bytes:
            # _compile_cuda_nvcc reads the arch from Target.current(), hence the scope
            with tvm.target.Target({"kind": "cuda", "arch": arch}):
                return tvm_nvcc.compile_cuda(code, target_format="fatbin", arch=arch,
                                             compiler="nvcc")

        tvm_ffi.register_global_func("tvm_callback_cuda_compile", _compile, override=True)
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip()
        _cuda_state.update(arch=arch, nvcc=nvcc, driver=how,
                           nvcc_version=next((ln for ln in version.splitlines() if "release" in ln),
                                             version.splitlines()[-1] if version else ""))
    return dict(_cuda_state)


def _dlopen(name: str) -> bool:
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        return False


def _load_cuda_stub() -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise MissingDependencyError(
            "CUDA export on a machine without the NVIDIA driver needs a C compiler (cc) "
            "to build a compile-only libcuda stub", "apt-get install gcc, or export on the GPU machine")
    with tempfile.TemporaryDirectory(prefix="hwprune-cudastub-") as tmp:
        src = Path(tmp) / "stub.c"
        # 999 = CUDA_ERROR_UNKNOWN: any accidental driver call fails loudly
        src.write_text("".join(f"int {s}(void) {{ return 999; }}\n" for s in _CUDA_DRIVER_SYMBOLS))
        lib = Path(tmp) / "libcuda.so.1"
        subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(lib), str(src)],
                       check=True, capture_output=True)
        ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    return "compile-only stub (no NVIDIA driver on this machine)"


# --------------------------------------------------------------------------- build / tune

def build(mod: Any, target: dict[str, Any], *, database_dir: str | os.PathLike | None = None,
          cuda_info: dict[str, Any] | None = None, schedules: bool = True) -> Any:
    """Compile a relax module for ``target`` (a resolved dict).

    CPU targets (``llvm``, host or cross) get hwprune's schedule library
    (:mod:`hwprune.runtimes.tvm.schedule`) after legalization and fusion; with
    ``database_dir``, a function is compiled from its MetaSchedule record only where
    :func:`tune` found the record faster than the library; the library schedules the rest
    (:func:`schedule_for_build`). ``schedules=False`` is TVM's plain default
    pipeline (what ``tvm.compile`` does alone: correct, far slower on a CPU)."""
    tvm = import_tvm()
    tgt = _target(target)
    if target_kind(target) == "cuda" and cuda_info is None:
        arch = str(target.get("arch") or "")
        if not arch:
            raise CompileError(f"CUDA target {json.dumps(target)} has no 'arch'", "add e.g. \"arch\": \"sm_87\"")
        _enable_cuda_codegen(arch)
    try:
        if target_kind(target) == "llvm" and schedules:
            return _build_scheduled(tvm, mod, target, tgt, database_dir)
        if database_dir is not None and _has_records(database_dir):
            from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
            return ms.relax_integration.compile_relax(_open_database(database_dir, target), _fuse(mod), tgt, None)
        return tvm.compile(mod, target=tgt)
    except Exception as exc:
        if isinstance(exc, (CompileError, MissingDependencyError)):
            raise
        raise CompileError(f"TVM failed to compile for {json.dumps(target)}: {_first_line(exc)}") from exc


def _build_scheduled(tvm: Any, mod: Any, target: dict[str, Any], tgt: Any,
                     database_dir: str | os.PathLike | None) -> Any:
    return tvm.compile(schedule_for_build(mod, target, database_dir), target=tgt)


def schedule_for_build(mod: Any, target: dict[str, Any], database_dir: str | os.PathLike | None = None) -> Any:
    """The fused, scheduled relax module :func:`build` compiles for a CPU ``target``.

    With ``database_dir``, a function is compiled from its best MetaSchedule record only
    where tuning decided the record beats the library (``decisions.json``); the schedule
    library takes every other function."""
    from tvm import relax  # noqa: PLC0415

    from hwprune.runtimes.tvm._tuning import apply_decisions, check_database  # noqa: PLC0415
    from hwprune.runtimes.tvm.schedule import schedule_module  # noqa: PLC0415

    tgt = _target(target)
    fused = _fuse(mod)
    if database_dir is not None and Path(database_dir).is_dir():
        check_database(database_dir, target)
        fused = apply_decisions(fused, tgt, database_dir, _open_database)  # checked just above
    scheduled, report = schedule_module(fused, target, skip_scheduled=True)
    _last_schedule_report.clear()
    _last_schedule_report.update(report)
    scheduled = relax.transform.SplitLayoutRewritePreproc()(scheduled)
    return relax.transform.FoldConstant()(scheduled)


_last_schedule_report: dict[str, Any] = {}


def last_schedule_report() -> dict[str, Any]:
    """Which rule scheduled each function in the last CPU build (``"fallback"``: none
    matched, TVM's default lowering; ``"tuned"``: a tuning record won)."""
    return dict(_last_schedule_report)


def _fuse(mod: Any) -> Any:
    """Legalize and fuse, so tuning tasks (fused TIR functions) exist and the tuned
    records match the functions compile_relax looks up (same prepared module for both)."""
    from tvm import relax  # noqa: PLC0415
    return relax.get_pipeline("zero")(mod)


@dataclass
class TuneReport:
    """What :func:`tune` did. ``tasks``: conv/matmul/dense tasks of the model;
    ``reused_tasks``: decided by an earlier tuning in the database; ``tuned_tasks``: given
    trials now (the largest by latency share); ``kept_tuned``: of those, how many records
    beat the library and are compiled in; ``decisions``: per tuned task, both times."""

    tasks: int = 0
    tuned_tasks: int = 0
    reused_tasks: int = 0
    kept_tuned: int = 0
    max_trials: int = 0
    trials_per_task: int = 0
    seconds: float = 0.0
    database_dir: str = ""
    decisions: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.__dict__))


def _db_paths(database_dir: str | os.PathLike) -> tuple[Path, Path]:
    d = Path(database_dir)
    return d / "database_workload.json", d / "database_tuning_record.json"


def _has_records(database_dir: str | os.PathLike) -> bool:
    rec = _db_paths(database_dir)[1]
    return rec.is_file() and rec.stat().st_size > 0


def _open_database(database_dir: str | os.PathLike, target: dict[str, Any] | None = None) -> Any:
    """The JSON database in ``database_dir`` (created when missing); with ``target``, a
    database tuned for another target or a corrupt file is refused first (one line)."""
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from hwprune.runtimes.tvm._tuning import check_database  # noqa: PLC0415
    if target is not None:
        check_database(database_dir, target)
    wl, rec = _db_paths(database_dir)
    Path(database_dir).mkdir(parents=True, exist_ok=True)
    try:
        return ms.database.JSONDatabase(path_workload=str(wl), path_tuning_record=str(rec),
                                        allow_missing=True, module_equality="structural")
    except Exception as exc:  # TVM's parser: bad base64, unknown instruction, ...
        raise CompileError(f"tuning database {database_dir} cannot be read: {_first_line(exc)}",
                           "delete the folder to tune afresh") from None


def tune(mod: Any, target: dict[str, Any], database_dir: str | os.PathLike, max_trials: int, *,
         builder_timeout_s: float = 600.0, runner_timeout_s: float = 60.0,
         num_threads: int = 1, seed: int = 0, log_dir: str | os.PathLike | None = None) -> TuneReport:
    """MetaSchedule-tune the largest tasks of ``mod`` with at most ``max_trials`` measured
    candidates in total, on top of the schedule library (see :mod:`._tuning`).

    Tasks are ranked by their share of the latency (library schedule timed once); only the
    largest get trials (at least 16 each). Per tuned task the best record and the library
    schedule are timed with the same runner and the faster is kept (``decisions.json``
    beside the JSON database): :func:`build` applies a record only where it won, so
    tuning never makes a function slower. Tasks decided earlier (same layer shapes, e.g.
    another pruned variant) are reused. ``target`` must be a resolved host CPU target
    with ``num-cores``; a database tuned for another target is refused.

    >>> tune(import_onnx("model.onnx"), resolve_target(HOST_TARGET, num_cores=1), "db", 64)  # doctest: +SKIP
    TuneReport(tasks=12, tuned_tasks=4, reused_tasks=0, kept_tuned=1, ...)
    """
    import_tvm()
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415

    from hwprune.runtimes.tvm import _tuning  # noqa: PLC0415
    if max_trials <= 0:
        raise CompileError(f"max_trials must be positive, got {max_trials}")
    if target_kind(target) == "llvm" and "num-cores" not in target:
        raise CompileError("MetaSchedule needs 'num-cores' in a CPU target",
                           "resolve_target(target, num_cores=N)")
    if target_kind(target) == "llvm" and is_cross(target):
        raise CompileError("tuning a cross-compiled CPU target needs the device over RPC; "
                           "this build tunes for the host only", "export without --tune-trials, or tune on the device")
    t0 = time.perf_counter()
    tgt = _target(target)
    db = _open_database(database_dir, target)
    tasks = [t for t in ms.relax_integration.extract_tasks(_fuse(mod), tgt)
             if any(op in t.task_name for op in _TUNED_OPS)]
    decided = _tuning.load_decisions(database_dir)["tasks"]
    todo = [t for t in tasks if _tuning.task_key(t.dispatched[0]) not in decided]
    report = TuneReport(tasks=len(tasks), reused_tasks=len(tasks) - len(todo), max_trials=max_trials,
                        database_dir=str(database_dir))
    if todo:
        work_dir = Path(log_dir) if log_dir else Path(database_dir) / "logs"
        work_dir.mkdir(parents=True, exist_ok=True)
        with _env(TVM_NUM_THREADS=str(num_threads)):  # the runner's worker process reads it
            builder = ms.builder.LocalBuilder(max_workers=1, timeout_sec=builder_timeout_s,
                                              f_build=_tuning.build_candidate)
            runner = ms.runner.LocalRunner(timeout_sec=runner_timeout_s, evaluator_config=ms.runner.EvaluatorConfig(
                number=3, repeat=1, min_repeat_ms=20))
            done = _tuning.tune_tasks(todo, target, tgt, db, database_dir, max_trials, builder=builder,
                                      runner=runner, work_dir=work_dir, seed=seed)
        report.decisions, report.skipped = done["tuned"], done["skipped"]
        report.tuned_tasks = len(report.decisions)
        report.kept_tuned = sum(d["decision"] == "tuned" for d in report.decisions)
        report.trials_per_task = max((d["trials"] for d in report.decisions), default=0)
    report.seconds = time.perf_counter() - t0
    return report


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- export

@dataclass
class LinkInfo:
    """How a library file was produced, recorded in the artifact metadata."""

    file: str
    format: str                 # "so" or "tar"
    linker: str                 # compiler used to link, or "none (object archive)"
    note: str = ""
    cuda: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", {})}


def export_library(executable: Any, out_dir: str | os.PathLike, target: dict[str, Any], *,
                   stem: str = "model", cross_cc: str | None = None, allow_tar: bool = False,
                   cc_apt: str | None = None) -> LinkInfo:
    """Write the compiled library into ``out_dir``; returns how it was linked.

    Host targets link with the system compiler. Cross targets link with ``cross_cc``
    when it is on PATH; otherwise, only when ``allow_tar``, the objects are written as a
    ``.tar`` to be linked on/for the device (``tvm.runtime.load_module`` cannot load a
    tar directly), else MissingDependencyError naming the apt package.
    """
    import_tvm()
    from tvm.support import cc as tvm_cc  # noqa: PLC0415
    out = Path(out_dir)
    triple = host_triple(target) or ""
    try:
        if not is_cross(target):
            path = out / f"{stem}.so"
            executable.export_library(str(path))
            info = LinkInfo(path.name, "so", os.environ.get("CXX", "g++") + " (host)")
        else:
            cc_name = cross_cc or f"{triple.split('-')[0]}-linux-gnu-gcc"
            cc = shutil.which(cc_name)
            if cc is not None:
                path = out / f"{stem}.so"
                executable.export_library(str(path), fcompile=tvm_cc.cross_compiler(cc))
                info = LinkInfo(path.name, "so", cc_name)
                if "android" in triple:
                    info.note = (f"code generated for {triple}, linked with {cc_name} against glibc: "
                                 "runs on aarch64 Linux; for an Android app link the objects with the "
                                 "NDK (tvm.support.ndk.create_shared, TVM_NDK_CC)")
            elif allow_tar:
                path = out / f"{stem}.tar"
                executable.export_library(str(path), fcompile=_tar_objects)
                info = LinkInfo(path.name, "tar", "none (object archive)",
                                f"{cc_name} was not found: link on the device with "
                                f"`gcc -shared -o {stem}.so` over the extracted objects, or re-export "
                                f"after `apt-get install {cc_apt or 'gcc-aarch64-linux-gnu'}`")
            else:
                raise MissingDependencyError(
                    f"cross compiler '{cc_name}' for {triple} is not on PATH",
                    f"apt-get install {cc_apt or 'gcc-aarch64-linux-gnu'} (or allow a .tar of objects)")
    except (MissingDependencyError, CompileError):
        raise
    except Exception as exc:
        raise CompileError(f"exporting the library failed: {_first_line(exc)}") from exc
    if target_kind(target) == "cuda":
        info.cuda = dict(_cuda_state)
        if info.format == "so" and _FATBIN_MAGIC not in (out / info.file).read_bytes():
            raise CompileError(f"the CUDA library {info.file} holds no compiled kernels (CUDA source only)",
                               "export on a machine with nvcc and a CUDA-enabled TVM")
        info.cuda["embedded"] = "fatbin"
    return info


def build_cuda_library(onnx_path: str | os.PathLike, target: dict[str, Any], out_dir: str | os.PathLike,
                       *, timeout_s: float = 3600.0) -> LinkInfo:
    """Compile ``onnx_path`` for a CUDA ``target`` and export the library into ``out_dir``,
    in a child process (``_child``), so the CUDA codegen workaround never loads a driver
    stub into this process."""
    import sys  # noqa: PLC0415

    from hwprune import errors  # noqa: PLC0415

    cmd = [sys.executable, "-m", "hwprune.runtimes.tvm._child", str(onnx_path), json.dumps(target), str(out_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise CompileError(f"compiling for {json.dumps(target)} took over {timeout_s:.0f} s") from exc
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if proc.returncode == 0 and "file" in answer:
        return LinkInfo(**answer)
    if "error" in answer:
        cls = getattr(errors, str(answer.get("type")), CompileError)
        raise (cls if isinstance(cls, type) and issubclass(cls, errors.HwpruneError) else CompileError)(
            answer["error"], answer.get("hint"))
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise CompileError(f"the CUDA build process failed (exit {proc.returncode}): {last}")


def compile_library(onnx_path: str | os.PathLike, target: dict[str, Any], out_dir: str | os.PathLike, *,
                    database_dir: str | os.PathLike | None = None, cross_cc: str | None = None,
                    cc_apt: str | None = None, allow_tar: bool = False) -> LinkInfo:
    """The deployable library of ``onnx_path`` for ``target`` (resolved), written into
    ``out_dir`` as ``hwprune export`` ships it: the schedule library (and the tuning
    records of ``database_dir`` where they won), linked for the target (see
    :func:`export_library`); CUDA targets compile in a child process
    (:func:`build_cuda_library`). Returns how it was linked."""
    if target_kind(target) == "cuda":
        return build_cuda_library(onnx_path, target, out_dir)
    return compile_library_here(onnx_path, target, out_dir, database_dir=database_dir, cross_cc=cross_cc,
                                cc_apt=cc_apt, allow_tar=allow_tar)


def compile_library_here(onnx_path: str | os.PathLike, target: dict[str, Any], out_dir: str | os.PathLike, *,
                         database_dir: str | os.PathLike | None = None, cross_cc: str | None = None,
                         cc_apt: str | None = None, allow_tar: bool = False) -> LinkInfo:
    """:func:`compile_library` in this process, whatever the target (the CUDA child runs it)."""
    exe = build(import_onnx(onnx_path), target, database_dir=database_dir)
    return export_library(exe, out_dir, target, cross_cc=cross_cc, allow_tar=allow_tar, cc_apt=cc_apt)


def _tar_objects(output: str, files: Sequence[str], options: Any = None) -> None:
    """Bundle object files as a gzip tar in Python (TVM's own shells out to tar + gzip)."""
    import tarfile  # noqa: PLC0415
    with tarfile.open(output, "w:gz") as tf:
        for f in files:
            tf.add(f, arcname=os.path.basename(f))


_tar_objects.output_format = "tar"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- run / time

def load_vm(lib: str | os.PathLike | Any, device: str = "cpu") -> tuple[Any, Any]:
    """Load an exported library (or an executable) into a relax VirtualMachine."""
    tvm = import_tvm()
    from tvm import relax  # noqa: PLC0415
    dev = tvm.device(device, 0)
    mod = tvm.runtime.load_module(str(lib)) if isinstance(lib, (str, os.PathLike)) else lib
    return relax.VirtualMachine(mod, dev), dev


def set_num_threads(n: int) -> None:
    """Size TVM's CPU thread pool to ``n`` threads (1 = match onnxruntime's 1 thread), free to
    run on every core this process may use: no pinning, as a deployment that does not ask
    for it runs. (TVM's "big cores" mode would pin the calling thread, and with it the rest
    of the process, to one core.)"""
    tvm = import_tvm()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share_all_cores = -3  # threading::ThreadGroup::kSpecifyThreadShareAllCore
    tvm.get_global_func("runtime.config_threadpool")(share_all_cores, int(n), [str(c) for c in cores])
    if cores:
        os.sched_setaffinity(0, cores)  # the calling thread keeps the cores it had


def random_inputs(inputs: Sequence[OnnxInput], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal(i.shape).astype(i.dtype) for i in inputs}


def _to_numpy(out: Any) -> list[np.ndarray]:
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [x for o in out for x in _to_numpy(o)]


def run_vm(vm: Any, dev: Any, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    tvm = import_tvm()
    args = [tvm.runtime.tensor(x, dev) for x in inputs]
    return _to_numpy(vm["main"](*args))


def time_vm(vm: Any, dev: Any, inputs: Sequence[np.ndarray], *, warmup: int = 10, repeats: int = 50,
            min_time_s: float = 0.05) -> list[float]:
    """Per-run latency in milliseconds, ``repeats`` samples after ``warmup`` runs.

    Each sample averages enough runs to last ``min_time_s / repeats`` so that tiny
    kernels are not dominated by timer resolution.
    """
    tvm = import_tvm()
    args = [tvm.runtime.tensor(x, dev) for x in inputs]
    for _ in range(warmup):
        vm["main"](*args)
    dev.sync()
    min_repeat_ms = max(0, int(round(seconds_to_ms(min_time_s) / max(1, repeats))))
    evaluator = vm.time_evaluator("main", dev, number=1, repeat=repeats, min_repeat_ms=min_repeat_ms)
    return seconds_to_ms(list(evaluator(*args).results))


def time_onnx_local(onnx_bytes: bytes, target: dict[str, Any], warmup: int, repeats: int,
                    min_time_s: float, num_threads: int = 1) -> list[float]:
    """Compile a (micro) ONNX model for the host and time it here; milliseconds per run.

    Module level and picklable: :class:`hwprune.devices.TvmLocalRunner` calls it in a
    worker process so that a hung kernel can be killed.
    """
    mod = import_onnx(onnx_bytes)
    tgt = resolve_target(target)
    exe = build(mod, tgt)
    set_num_threads(num_threads)
    vm, dev = load_vm(exe)
    inputs = random_inputs(onnx_inputs(_load_onnx(onnx_bytes)))
    return time_vm(vm, dev, list(inputs.values()), warmup=warmup, repeats=repeats, min_time_s=min_time_s)


def parse_tracker(tracker: str) -> tuple[str, int]:
    host, _, port = tracker.rpartition(":")
    if not host or not port.isdigit():
        raise DeviceError(f"RPC tracker must be HOST:PORT, got '{tracker}'", "e.g. --rpc 127.0.0.1:9190")
    return host, int(port)


def connect_rpc(tracker: str, key: str, *, timeout_s: float = 30.0, session_timeout_s: float = 0) -> Any:
    """Request a session for ``key`` from a TVM RPC tracker; DeviceError instead of hanging.

    The tracker answers a request only once a server with that key is free, so the key
    is checked in the tracker summary first and the socket gets a timeout.
    """
    import_tvm()
    from tvm import rpc  # noqa: PLC0415
    host, port = parse_tracker(tracker)
    try:
        # TVM's own connect retries for 60 s; probe once with our timeout first
        socket.create_connection((host, port), timeout=timeout_s).close()
        tsess = rpc.connect_tracker(host, port)
    except Exception as exc:
        raise DeviceError(f"cannot reach RPC tracker {tracker}: {_first_line(exc)}",
                          "start one with: python -m tvm.exec.rpc_tracker --port PORT") from exc
    try:
        tsess._sock.settimeout(timeout_s)
        summary = tsess.summary()
        keys = _tracker_keys(summary)
        if key not in keys:
            raise DeviceError(f"no RPC server with key '{key}' at tracker {tracker}; "
                              f"registered: {', '.join(sorted(keys)) or 'none'}",
                              f"start one: python -m tvm.exec.rpc_server --tracker {tracker} --key {key}")
        return tsess.request(key, priority=1, session_timeout=session_timeout_s, max_retry=1)
    except DeviceError:
        raise
    except Exception as exc:
        raise DeviceError(f"RPC session for '{key}' at {tracker} failed: {_first_line(exc)}") from exc
    finally:
        tsess.close()


def _tracker_keys(summary: dict[str, Any]) -> set[str]:
    keys = set()
    for entry in summary.get("server_info", []):
        k = str(entry.get("key", ""))
        # the tracker reports "server:KEY" for a registered server
        keys.add(k.split(":", 1)[1] if k.startswith("server:") else k)
    for k in (summary.get("queue_info") or {}):
        keys.add(k)
    return keys


def remote_threads(session: Any, threads: int | None = None) -> int:
    """The size of the RPC server's CPU thread pool, first set to ``threads`` when given and
    different. The server's own default is its environment's (TVM_NUM_THREADS) or, without
    one, its core count: a phone's server would time 4-8 threads against a 1-thread profile.
    TVM sizes it in "big cores" mode, as its Android guide does (on a big.LITTLE phone the
    threads run on the fast cores)."""
    current = int(session.get_function("runtime.NumThreads")())
    if threads and threads != current:
        big_cores = 1  # threading::ThreadGroup::kBig
        session.get_function("runtime.config_threadpool")(big_cores, int(threads))
        current = int(session.get_function("runtime.NumThreads")())
    return current


def time_onnx_rpc(session: Any, onnx_bytes: bytes, target: dict[str, Any], *, warmup: int,
                  repeats: int, min_time_s: float, cross_cc: str | None = None,
                  device: str = "cpu") -> list[float]:
    """Compile here, upload to the RPC ``session``, time remotely; milliseconds per run.

    The uploaded library is removed from the device in ``finally``.
    """
    import_tvm()
    from tvm import relax  # noqa: PLC0415
    mod = import_onnx(onnx_bytes)
    tgt = resolve_target(target)
    exe = build(mod, tgt)
    inputs = random_inputs(onnx_inputs(_load_onnx(onnx_bytes)))
    with tempfile.TemporaryDirectory(prefix="hwprune-rpc-") as tmp:
        stem = f"k{os.getpid()}_{time.monotonic_ns()}"
        info = export_library(exe, tmp, tgt, stem=stem, cross_cc=cross_cc)
        if info.format != "so":
            raise CompileError("RPC timing needs a linked .so")
        remote_name = info.file
        session.upload(str(Path(tmp) / info.file))
    try:
        rlib = session.load_module(remote_name)
        dev = session.device(device, 0)
        vm = relax.VirtualMachine(rlib, dev)
        return time_vm(vm, dev, list(inputs.values()), warmup=warmup, repeats=repeats,
                       min_time_s=min_time_s)
    finally:
        with contextlib.suppress(Exception):  # session may be dead; nothing else to clean then
            session.remove(remote_name)


# --------------------------------------------------------------------------- helpers

def _first_line(exc: BaseException) -> str:
    """TVM errors carry multi-line tracebacks; keep the message line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
    return (msg or type(exc).__name__)[:400]


# --------------------------------------------------------------------------- the Runtime

def vm_session(exe: Any, inputs: Sequence[OnnxInput]) -> Session:
    """A :class:`~hwprune.runtimes.Session` over a compiled executable or exported library."""
    tvm = import_tvm()
    vm, dev = load_vm(exe)
    names = [i.name for i in inputs]

    def call(feeds: dict[str, np.ndarray]) -> Any:
        args = [tvm.runtime.tensor(feeds[n], dev) for n in names]
        fn = vm["main"]
        return lambda: fn(*args)

    return Session([(i.name, tuple(i.shape)) for i in inputs],
                   lambda feeds: run_vm(vm, dev, [feeds[n] for n in names]), call)


class TvmRuntime(Runtime):
    """TVM on this machine: each model compiled for the profile's target (this CPU's
    LLVM by default, with hwprune's schedule library) and run in a relax VirtualMachine
    with the profile's threads.

    Kernel keys still follow onnxruntime's fusions (the tables of TVM devices are keyed
    that way), so :meth:`kernels` reads onnxruntime's graph.
    """

    name = "tvm"

    def __init__(self, spec: RuntimeSpec | None = None) -> None:
        super().__init__(spec or RuntimeSpec("tvm", target=dict(HOST_TARGET)))
        self.target = resolve_target(dict(self.spec.target or HOST_TARGET))

    def facts(self) -> dict[str, Any]:
        import platform  # noqa: PLC0415

        from hwprune.runtimes.ort import cpu_model  # noqa: PLC0415

        return {"machine": platform.node(), "arch": platform.machine(), "cpu": cpu_model(),
                "runtime": "tvm", "runtime_version": tvm_version(), "target": self.target,
                "schedules": schedule.library_version(), "threads": self.threads}

    def session(self, model: bytes | str) -> Session:
        if is_cross(self.target):
            raise DeviceError(f"target {json.dumps(self.target)} is not this machine; time it over TVM RPC")
        exe = build(import_onnx(model), self.target)
        set_num_threads(self.threads)
        return vm_session(exe, onnx_inputs(_load_onnx(model)))

    def kernels(self, onnx_bytes: bytes) -> list:
        from hwprune.runtimes.ort import extract_kernels  # noqa: PLC0415

        return extract_kernels(onnx_bytes)
