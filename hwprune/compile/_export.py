"""Turn a finished search run into a deployable TVM artifact.

A run directory (written by ``hwprune search``, read through :mod:`hwprune.rundir`) holds
``plan.json``, ``model.onnx`` (static shape, input named ``input``), ``model.pt`` and
``summary.json``. The artifact
directory gets the compiled library, copies of ``model.onnx`` and ``plan.json``,
``metadata.json`` (target, versions, shapes, predicted and measured latency, sha256 of
every file, how the library was linked), a README with the lines that load it, and the
MetaSchedule database when tuning ran.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hwprune.devices._profile import DeviceProfile, load_profile
from hwprune.errors import CompileError, ConfigError, DeviceError, MissingDependencyError
from hwprune.rundir import RunDir, RunSummary

__all__ = ["export_artifact", "SLOWER_THAN_PREDICTED", "SlowerThanPredictedError"]

SLOWER_THAN_PREDICTED = 0.10   # an artifact slower than the prediction by more fails the export


class SlowerThanPredictedError(CompileError):
    """The deployed runtime runs the artifact well above the latency the search promised."""


def export_artifact(run_dir: str | os.PathLike, device: str | DeviceProfile | None = None,
                    out_dir: str | os.PathLike | None = None, *, tune_trials: int = 0,
                    database_dir: str | os.PathLike | None = None, allow_tar: bool = False,
                    overwrite: bool = False, verify: bool = True, tolerance: float = 1e-4,
                    warmup: int = 10, repeats: int = 50, seed: int = 0,
                    tune_timeout_s: float = 600.0, allow_slower: bool = False, rescale: bool = True,
                    tables: str | os.PathLike | None = None,
                    work_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Compile the pruned model of ``run_dir`` for ``device`` and write an artifact.

    Returns the metadata dict (also written as ``metadata.json``); it has a ``warning``
    key when something deserves a plain line on the console. On a device this machine
    runs, the library and onnxruntime are timed with the same protocol and the faster is
    named; when the runtime the device deploys runs more than 10% above the run's
    prediction, export fails (:class:`SlowerThanPredictedError`) unless ``allow_slower``.
    Everything is written to a temporary folder next to ``out_dir`` and renamed at the
    end: a failure leaves ``out_dir`` untouched.

    ``tune_trials`` > 0 runs MetaSchedule (host CPU targets only) with that many
    measured candidates in total; ``database_dir`` names a tuning database shared
    between exports (pruned variants share most layer shapes, so later exports reuse
    earlier records); the database used is copied into the artifact as ``tuning_db/``.
    ``allow_tar``: when the cross compiler is missing, write a ``.tar`` of objects to be
    linked for the device instead of failing.

    >>> meta = export_artifact("runs/demo-host", "host", "artifacts/demo-host")
    >>> meta["measured"]["tvm_median_ms"]      # doctest: +SKIP
    0.41
    """
    from hwprune.runtimes import tvm as _tvm  # lazy: imports nothing heavy until called

    run = RunDir.open(run_dir)
    summary = run.require_finished()
    profile = _profile(device if device is not None else summary.device)
    if profile.tvm_target is None:
        raise ConfigError(f"device '{profile.name}' has no compile target (tvm_target) in its profile",
                          f"export for a device with one, e.g. {_devices_with_target()}")
    if tune_trials < 0:
        raise ConfigError(f"tune trials must be >= 0, got {tune_trials}")
    out = Path(out_dir) if out_dir is not None else run.path / f"artifact-{profile.name}"
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"output folder '{out}' already exists and is not empty",
                          "choose another --out or pass --overwrite")
    cross = _tvm.is_cross(profile.tvm_target)
    kind = _tvm.target_kind(profile.tvm_target)
    if tune_trials and (cross or kind != "llvm"):
        raise ConfigError(f"tuning is only supported for host CPU targets; '{profile.name}' is "
                          f"{'a cross target' if cross else kind}", "export with tune_trials=0")
    cc_info = profile.cross_compiler or {}
    if cross and not allow_tar:  # fail before seconds of compiling
        cc = cc_info.get("cc") or f"{(_tvm.host_triple(profile.tvm_target) or '').split('-')[0]}-linux-gnu-gcc"
        if shutil.which(cc) is None:
            raise MissingDependencyError(
                f"cross compiler '{cc}' for device '{profile.name}' is not on PATH",
                f"apt-get install {cc_info.get('apt', 'gcc-aarch64-linux-gnu')} "
                "(or pass allow_tar / --allow-tar for a .tar of objects to link on the device)")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        meta = _build_artifact(_tvm, run, summary, profile, tmp, out, _Options(
            tune_trials, database_dir, allow_tar, verify, tolerance, warmup, repeats, seed, tune_timeout_s,
            allow_slower, rescale, tables, work_dir))
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    meta["artifact_dir"] = str(out)
    return meta


# --------------------------------------------------------------------------- steps

def _profile(device: str | DeviceProfile | None) -> DeviceProfile:
    if isinstance(device, DeviceProfile):
        return device
    if not device:
        raise ConfigError("no device given and the run summary names none", "pass --device NAME")
    return load_profile(str(device))


def _devices_with_target() -> str:
    from hwprune.devices._profile import list_profiles
    names = []
    for n in list_profiles():
        try:
            if load_profile(n).tvm_target is not None:
                names.append(n)
        except DeviceError:
            continue
    return ", ".join(names) or "none"


@dataclass(frozen=True)
class _Options:
    tune_trials: int
    database_dir: Any
    allow_tar: bool
    verify: bool
    tolerance: float
    warmup: int
    repeats: int
    seed: int
    tune_timeout_s: float
    allow_slower: bool
    rescale: bool = True
    tables: Any = None
    work_dir: Any = None


def _build_artifact(_tvm: Any, run: RunDir, summary: RunSummary, profile: DeviceProfile,
                    tmp: Path, out: Path, opts: _Options) -> dict[str, Any]:
    shutil.copy2(run.file(RunDir.ONNX), tmp / "model.onnx")
    shutil.copy2(run.file(RunDir.PLAN), tmp / "plan.json")
    inputs = _tvm.onnx_inputs(tmp / "model.onnx")
    t0 = time.perf_counter()
    target = _tvm.resolve_target(profile.tvm_target, num_cores=profile.threads if opts.tune_trials else None)
    tuning, db_dir = _tune(_tvm, tmp, out, target, profile, opts)
    cc_info = profile.cross_compiler or {}
    link = _tvm.compile_library(tmp / "model.onnx", target, tmp, database_dir=db_dir, cross_cc=cc_info.get("cc"),
                                cc_apt=cc_info.get("apt"), allow_tar=opts.allow_tar)
    compile_s = time.perf_counter() - t0
    predicted, prediction_note = _prediction(summary, profile)
    verification, measured, warnings = _verify(_tvm, tmp, link, inputs, target, profile, opts)
    if measured is not None:
        drift = _drift(summary, profile, opts)
        if predicted is not None and summary.predicted_table_ms is not None:
            predicted = summary.predicted_table_ms   # the table's value: the search's rescale is not now's
        if drift is not None and drift.significant and predicted is not None:
            factor = drift.ratio_at(predicted)
            warnings.append(f"{drift.describe(profile.name)}; the prediction is scaled by {factor:.2f} "
                            "for the comparison")
            measured["drift"] = drift.to_dict()
            predicted = predicted * factor
        stat = (summary.budget or {}).get("latency_stat", "median")
        measured["stopwatch"] = _stopwatch(tmp, link, profile, opts, predicted, stat)
        warnings += _race(measured, predicted, profile, opts, stat)
    if prediction_note:
        warnings.append(prediction_note)
    if link.format == "tar":
        warnings.append(f"library written as {link.file} (objects, not linked): {link.note}")
    meta: dict[str, Any] = {
        "schema_version": 1,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": profile.name, "device_class": profile.device_class,
        "deploy_runtime": profile.deploy_runtime, "target": target, "profile_target": profile.tvm_target,
        "tvm_version": _tvm.tvm_version(), "library": link.to_dict(),
        "inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in inputs],
        "run_dir": str(run.path), "searched_for": summary.device, "predicted_latency_ms": predicted,
        "accuracy": summary.accuracy, "compile_s": round(compile_s, 3), "tuning": tuning,
        "verification": verification, "measured": measured,
        "build_host": {"machine": platform.machine(), "python": platform.python_version()},
    }
    if warnings:
        meta["warning"] = "; ".join(warnings)
    (tmp / "README.md").write_text(_readme(profile, link, inputs, target))
    meta["files"] = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*"))
                     if p.is_file() and p.name != "metadata.json"}
    (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _tune(_tvm: Any, tmp: Path, out: Path, target: dict[str, Any], profile: DeviceProfile,
          opts: _Options) -> tuple[dict[str, Any] | None, Path | None]:
    """MetaSchedule tuning when asked; returns its report and the database folder."""
    if not opts.tune_trials:
        return None, None
    db_dir = Path(opts.database_dir) if opts.database_dir is not None else tmp / "tuning_db"
    if opts.database_dir is None and (out / "tuning_db").is_dir():  # re-export: keep old records
        shutil.copytree(out / "tuning_db", db_dir, dirs_exist_ok=True)
    report = _tvm.tune(_tvm.import_onnx(tmp / "model.onnx"), target, db_dir, opts.tune_trials,
                       builder_timeout_s=opts.tune_timeout_s, num_threads=profile.threads, seed=opts.seed,
                       log_dir=tmp / "tuning_logs")
    tuning = report.to_dict()
    shutil.rmtree(tmp / "tuning_logs", ignore_errors=True)
    if opts.database_dir is not None:  # ship the records used with the artifact
        shutil.copytree(db_dir, tmp / "tuning_db", dirs_exist_ok=True, ignore=shutil.ignore_patterns("logs"))
    tuning["database_dir"] = "tuning_db" if opts.database_dir is None else str(opts.database_dir)
    return tuning, db_dir


def _prediction(summary: RunSummary, profile: DeviceProfile) -> tuple[float | None, str | None]:
    """The run's predicted latency, which belongs to the device it was searched for (and
    says so when the table behind it is an estimate)."""
    if summary.device in (None, profile.name):
        from hwprune.latency._store import table_warning

        spec = (summary.model or {}).get("spec") or "MODEL"
        return summary.predicted_latency_ms, table_warning(summary.table_kind or "measured", profile, spec)
    return None, (f"the run was searched for '{summary.device}', so its predicted latency is not "
                  f"'{profile.name}''s; predict it with: hwprune latency --device {profile.name} "
                  f"--model MODEL --plan {RunDir.PLAN}")


def _drift(summary: RunSummary, profile: DeviceProfile, opts: _Options) -> Any:
    """This machine's speed against the build of the table the run was predicted from."""
    if not (opts.rescale and profile.measurable_here and summary.device == profile.name and summary.model):
        return None
    from hwprune._paths import resolve_table
    from hwprune.errors import HwpruneError
    from hwprune.latency import open_table
    from hwprune.latency._drift import measure_drift

    model_key = f"{summary.model.get('model_id')}@{'x'.join(map(str, summary.model.get('input_shape', [])))}"
    try:
        directory = resolve_table(profile.name, opts.tables, opts.work_dir)[0]
        return measure_drift(open_table(profile.name, directory), profile.local_runtime(), model_key)
    except HwpruneError:  # no table here any more: nothing to compare with
        return None


def _verify(_tvm: Any, tmp: Path, link: Any, inputs: list[Any], target: dict[str, Any], profile: DeviceProfile,
            opts: _Options) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
    """Outputs against onnxruntime here, or under emulation, or skipped."""
    lib, onnx_path = tmp / link.file, tmp / "model.onnx"
    if opts.verify and not _tvm.is_cross(target) and _tvm.target_kind(target) == "llvm":
        verification, measured = _verify_host(_tvm, lib, onnx_path, inputs, threads=profile.threads,
                                              tolerance=opts.tolerance, seed=opts.seed)
        return verification, measured, []
    if opts.verify:
        emulated = _verify_emulated(_tvm, lib, onnx_path, inputs, target, link, tolerance=opts.tolerance,
                                    seed=opts.seed)
        if emulated is not None:
            return emulated, None, []  # outputs only: no timing under emulation
    where = (f"a GPU ({target.get('arch', 'cuda')})" if _tvm.target_kind(target) == "cuda"
             else _tvm.host_triple(target) or _tvm.target_kind(target))
    reason = ("verification disabled" if not opts.verify else
              f"the library targets {where}, not this machine; time it on the device "
              "(e.g. TvmRpcRunner / `hwprune profile --rpc`)")
    return {"status": "skipped", "reason": reason}, None, []


def _stopwatch(tmp: Path, link: Any, profile: DeviceProfile, opts: _Options, predicted: float | None,
               stat: str) -> dict[str, Any]:
    """Both runtimes timed with the standard stopwatch, each in a fresh process: the
    artifact as the device deploys it (the library, or model.onnx for onnxruntime), then
    the other runtime on the same pruned model, so the race and the check against the
    prediction read the same stopwatch a user would.

    The prediction is the latency on the otherwise idle device. A reading of the deployed
    artifact more than 10% above it is confirmed before export fails: up to four more
    readings, each in its own process a second apart, until one is within; the fastest is
    held to the prediction (a neighbour's slow spell only adds time, so an artifact that is
    really slow is slow in all of them). All readings are kept."""
    from hwprune.runtimes._bench import bench_in_fresh_process

    def request(runtime_name: str) -> dict[str, Any]:
        path = tmp / link.file if runtime_name == "tvm" else tmp / "model.onnx"
        runtime = {"name": runtime_name, "threads": profile.threads}
        if runtime_name == profile.runtime.get("name"):
            runtime = dict(profile.runtime)
        return {"path": str(path), "runtime": runtime, "target": profile.tvm_target,
                "warmup": opts.warmup, "runs": opts.repeats, "min_time_s": 1.0}

    deployed = profile.deploy_runtime
    other = "onnxruntime" if deployed == "tvm" else "tvm"
    readings = [bench_in_fresh_process(request(deployed))]
    rival = bench_in_fresh_process(request(other))  # right after the first reading: the race pair
    limit = (1 + SLOWER_THAN_PREDICTED) * predicted if isinstance(predicted, (int, float)) else float("inf")
    while len(readings) < 5 and min(r[f"{stat}_ms"] for r in readings) > limit:
        time.sleep(1.0)
        readings.append(bench_in_fresh_process(request(deployed)))
    first = readings[0]
    readings.sort(key=lambda r: r[f"{stat}_ms"])
    result = {k: v for k, v in readings[0].items() if k != "path"}
    result["readings_ms"] = [r[f"{stat}_ms"] for r in readings]
    result["race"] = {deployed: {k: first[k] for k in ("median_ms", "p10_ms", "p90_ms")},
                      other: {k: rival[k] for k in ("median_ms", "p10_ms", "p90_ms")}}
    return result


def _race(measured: dict[str, Any], predicted: float | None, profile: DeviceProfile, opts: _Options,
          stat: str = "median") -> list[str]:
    """Name the faster runtime (one fresh-process reading each, back to back), and hold what
    the device deploys (the fastest of its readings) to the run's prediction of ``stat``:
    more than 10% above it is a failure (``SlowerThanPredictedError``) unless allowed."""
    watch = measured["stopwatch"]
    times = {name: r["median_ms"] for name, r in watch["race"].items()}
    for name, r in watch["race"].items():
        measured[f"{name}_median_ms"], measured[f"{name}_p90_ms"] = r["median_ms"], r["p90_ms"]
    faster = min(times, key=times.get)
    other = max(times, key=times.get)
    measured["faster_runtime"] = faster
    measured["deployed_runtime"] = profile.deploy_runtime
    measured["race"] = (f"{faster} is {times[other] / times[faster]:.2f}x faster than {other} on this machine "
                        f"({times[faster]:.3f} vs {times[other]:.3f} ms, median, fresh processes); "
                        f"'{profile.name}' deploys with {profile.deploy_runtime}")
    notes: list[str] = []
    deployed = watch.get(f"{stat}_ms")
    if not isinstance(deployed, (int, float)) or not isinstance(predicted, (int, float)) or predicted <= 0:
        return notes
    ratio = deployed / predicted
    measured["deployed_over_predicted"] = round(ratio, 4)
    if ratio > 1 + SLOWER_THAN_PREDICTED:
        message = (f"the artifact ({profile.deploy_runtime}) runs in {deployed:.3f} ms here ({stat}, fastest of "
                   f"{len(watch['readings_ms'])} stopwatch readings), {(ratio - 1) * 100:.0f}% above the "
                   f"{predicted:.3f} ms the run predicted")
        if not opts.allow_slower:
            raise SlowerThanPredictedError(message, "re-measure the table (hwprune profile) and search again, "
                                                    "or pass --allow-slower to keep it")
        notes.append(message)
    return notes


def _verify_host(_tvm: Any, lib: Path, onnx_path: Path, inputs: list[Any], *, threads: int,
                 tolerance: float, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the exported library and onnxruntime on one seeded input and compare; the
    timing is :func:`_stopwatch`'s, in fresh processes."""
    from hwprune.runtimes import RuntimeSpec
    from hwprune.runtimes.ort import OrtRuntime, ort_version

    feeds = _tvm.random_inputs(inputs, seed)
    _tvm.set_num_threads(threads)
    tvm_out = _tvm.vm_session(lib, inputs).run(feeds)
    ort_out = OrtRuntime(RuntimeSpec("onnxruntime", threads)).session(str(onnx_path)).run(feeds)
    worst = _compare(tvm_out, ort_out, tolerance, "the compiled model")
    verification = {"status": "passed", "reference": "onnxruntime", "seed": seed,
                    "max_abs_diff_over_scale": worst, "tolerance": tolerance}
    measured = {"where": platform.node() or "host", "threads": threads, "onnxruntime_version": ort_version()}
    return verification, measured


def _compare(got: list[Any], ref: list[Any], tolerance: float, what: str) -> float:
    """Max abs difference over output scale against onnxruntime's outputs; CompileError
    when the outputs do not line up or differ by more than ``tolerance``."""
    if len(got) != len(ref):
        raise CompileError(f"{what} returns {len(got)} outputs, onnxruntime {len(ref)}")
    worst = 0.0
    for a, b in zip(got, ref):
        if a.shape != b.shape:
            raise CompileError(f"{what}: output shape {a.shape} differs from onnxruntime {b.shape}")
        scale = float(np.max(np.abs(b))) or 1.0
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))) / scale)
    if not worst <= tolerance:
        raise CompileError(f"{what} disagrees with onnxruntime: max abs diff / output scale = {worst:.2e} > "
                           f"{tolerance:.0e}", "report this with the run directory")
    return worst


def _verify_emulated(_tvm: Any, lib: Path, onnx_path: Path, inputs: list[Any], target: dict[str, Any],
                     link: Any, *, tolerance: float, seed: int) -> dict[str, Any] | None:
    """Check a cross-compiled aarch64 library against onnxruntime by running it under qemu
    on the seeded input :func:`_verify_host` uses. None when this does not apply (not an
    aarch64 CPU library linked against glibc); ``"skipped"`` with the install command when
    the emulator is missing; CompileError when the library fails or disagrees."""
    from hwprune.runtimes.ort import OrtRuntime
    from hwprune.runtimes import RuntimeSpec
    from hwprune.runtimes.tvm import emulate

    if not (emulate.applies_to(target) and link.format == "so" and "linux-gnu" in link.linker):
        return None
    why = emulate.emulator_available()
    if why is None:
        feeds = _tvm.random_inputs(inputs, seed)
        try:
            got = emulate.run_emulated(lib, [feeds[i.name] for i in inputs])
        except MissingDependencyError as exc:  # e.g. the aarch64 runtime cannot be downloaded
            why = str(exc)
    if why is not None:
        return {"status": "skipped", "reason": f"the library targets {_tvm.host_triple(target)}, not this "
                f"machine, and cannot be run under emulation here: {why}"}
    ref = OrtRuntime(RuntimeSpec("onnxruntime", 1)).session(str(onnx_path)).run(feeds)
    worst = _compare(got, ref, tolerance, f"the aarch64 library under {emulate.EMULATOR}")
    return {"status": "passed", "reference": "onnxruntime", "where": emulate.EMULATOR, "seed": seed,
            "max_abs_diff_over_scale": worst, "tolerance": tolerance,
            "note": "outputs checked on an emulated aarch64 CPU; time it on the device"}


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder to ``out``, replacing an old artifact only now."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; an artifact is meant to be shared
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _readme(profile: DeviceProfile, link: Any, inputs: list[Any], target: dict[str, Any]) -> str:
    inp = inputs[0] if inputs else None
    shape = tuple(inp.shape) if inp else ()
    dev = "tvm.cuda(0)" if _target_is_cuda(target) else "tvm.cpu(0)"
    lines = [
        f"# hwprune artifact for {profile.name}",
        "",
        f"Compiled with Apache TVM for target `{json.dumps(target)}`.",
        f"Library: `{link.file}` (linked with {link.linker}).",
    ]
    if link.note:
        lines.append(f"Note: {link.note}.")
    lines += [
        "`metadata.json` lists the target, TVM version, input shape, predicted and measured",
        "latency and the sha256 of every file.",
        "",
        "Load and run (needs the TVM runtime on the device, same version as in metadata.json):",
        "",
        "```python",
        "import numpy as np, tvm",
        "from tvm import relax",
        f"dev = {dev}",
        f'lib = tvm.runtime.load_module("{link.file if link.format == "so" else link.file[:-4] + ".so"}")',
        "vm = relax.VirtualMachine(lib, dev)",
        f'x = np.random.rand(*{shape}).astype("{inp.dtype if inp else "float32"}")  # input "{inp.name if inp else "input"}"',
        'y = vm["main"](tvm.runtime.tensor(x, dev)).numpy()',
        "```",
        "",
    ]
    return "\n".join(lines)


def _target_is_cuda(target: dict[str, Any]) -> bool:
    return target.get("kind") == "cuda"

