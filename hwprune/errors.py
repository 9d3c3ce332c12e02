"""Error types. Every error a user can cause derives from :class:`HwpruneError`.

The CLI prints ``HwpruneError`` as one line (plus its hint) and exits with code 1;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

__all__ = [
    "HwpruneError",
    "ConfigError",
    "ModelError",
    "PlanError",
    "DeviceError",
    "TableError",
    "MissingKernelsError",
    "StaleTableError",
    "BudgetError",
    "DataError",
    "DeviceTimeoutError",
    "CompileError",
    "MissingDependencyError",
]


class HwpruneError(Exception):
    """Root of all user-facing errors. ``hint`` names the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        msg = super().__str__()
        return f"{msg}; {self.hint}" if self.hint else msg


class ConfigError(HwpruneError, ValueError):
    """A flag, file or value the user gave is invalid."""


class ModelError(HwpruneError, ValueError):
    """A model cannot be found, built or loaded."""


class PlanError(HwpruneError, ValueError):
    """A pruning plan does not fit the model it is applied to."""


class DeviceError(HwpruneError, LookupError):
    """Unknown or invalid device profile."""


class TableError(HwpruneError, LookupError):
    """A latency table is missing, corrupt or cannot answer a query."""


class MissingKernelsError(TableError):
    """Kernels a model needs are not in the table."""

    def __init__(self, message: str, kernels: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.kernels = kernels


class StaleTableError(TableError):
    """A table was measured for another runtime version or CPU."""


class BudgetError(HwpruneError, ValueError):
    """A latency or memory budget is malformed or cannot be met."""


class DataError(HwpruneError, FileNotFoundError):
    """Training or validation data is missing or malformed."""


class DeviceTimeoutError(HwpruneError, TimeoutError):
    """A remote device did not answer in time."""


class CompileError(HwpruneError, RuntimeError):
    """Compiling or exporting an artifact failed."""


class MissingDependencyError(HwpruneError, ImportError):
    """An optional dependency or system tool is not installed."""
