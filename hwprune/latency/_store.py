"""Which table a command reads and where ``profile`` writes: the user's folder over the
shipped one.

Shipped tables are read-only. The first ``profile`` of a device copies the shipped table
into the user's folder (when it describes this machine, or is an estimate for a remote
device) and extends the copy; a shipped host table measured on another machine is not
copied, and the user's table starts empty. Reads take the user's table when there is one,
else the shipped one, and say which.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from hwprune.errors import HwpruneError
from hwprune.latency._lock import table_lock
from hwprune.latency._table import LatencyTable

__all__ = ["table_for_update", "table_warning"]


def table_for_update(profile, directory: Path) -> tuple[LatencyTable, str | None]:
    """The user's table of ``profile`` in ``directory``, seeded from the shipped table on
    first use; and a note on what was done (None: the user's table already existed).

    A table that belongs to another device (its metadata names another device or
    runtime) is refused with a :class:`~hwprune.errors.TableError`."""
    from hwprune._paths import shipped_tables_dir

    shipped = shipped_tables_dir()
    note = None
    if not LatencyTable.exists(directory, profile.name) and directory.resolve() != shipped.resolve() \
            and LatencyTable.exists(shipped, profile.name):
        with table_lock(directory, profile.name):  # another profile may be seeding it right now
            if not LatencyTable.exists(directory, profile.name):
                note = _seed(profile, shipped, directory)
    table = LatencyTable.load(directory, profile.name, create=True)
    table.check_profile(profile)
    if table.meta.runtime is None:
        table.meta.runtime = (profile.runtime or {}).get("name")
    return table, note


def _seed(profile, shipped: Path, directory: Path) -> str:
    """Copy the shipped table into ``directory`` when it describes this device; the note."""
    try:
        base = LatencyTable.load(shipped, profile.name)
        base.check_profile(profile)
        if profile.measurable_here and base.measured_keys():
            base.check_fresh(profile.local_runtime().identity())
        directory.mkdir(parents=True, exist_ok=True)
        for src in LatencyTable.paths(shipped, profile.name)[:2]:
            shutil.copyfile(src, directory / src.name)
        return f"started from the shipped '{profile.name}' table ({len(base.rows)} entries)"
    except HwpruneError as exc:
        return (f"the shipped '{profile.name}' table does not describe this machine ({exc.args[0]}); "
                "starting a new one")


def table_warning(table_kind: str, profile, model_spec: str, estimator: dict | None = None) -> str | None:
    """The one warning for a table that is not all measured on the device (None if it is):
    predictions from it are estimates, of which runtime's speed when that is not the one
    the device deploys with; names the command that measures the real device."""
    if table_kind in ("measured", "empty"):
        return None
    runtime = (estimator or {}).get("estimates_runtime") or _estimated_runtime(profile)
    other = (f", and they follow {runtime} speed while '{profile.name}' deploys with {profile.deploy_runtime}"
             if runtime and runtime != profile.deploy_runtime else "")
    return (f"the '{profile.name}' latency table is {table_kind} (not measured on the device), so "
            f"predicted latencies and budget checks are estimates{other}; measure the real device with: "
            f"{profile.measure_hint(model_spec)}")


def _estimated_runtime(profile) -> str | None:
    """The runtime the shipped calibration of this device class follows (tables estimated
    before the estimator recorded it)."""
    from hwprune.latency._estimate import AnalyticEstimator

    try:
        return AnalyticEstimator(profile).estimates_runtime
    except HwpruneError:
        return None
