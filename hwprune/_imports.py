"""Importing user code (model factories, data modules) by file path or module name."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from hwprune.errors import HwpruneError

__all__ = ["is_path_spec", "import_user_module"]


def is_path_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def import_user_module(spec: str, what: str, error: Callable[..., HwpruneError],
                       hint: str | None = None) -> ModuleType:
    """Import ``spec`` (``path/to/file.py`` or ``package.module``) or raise ``error(...)``.

    A file's folder is on ``sys.path`` while it loads, so it can import its siblings.
    Errors in user code are reported in one line, never as a crash of hwprune.
    """
    if is_path_spec(spec):
        path = Path(spec)
        if not path.is_file():
            raise error(f"{what} file '{spec}' does not exist", hint)
        mod_name = f"hwprune_user_{abs(hash(str(path.resolve())))}"
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise error(f"cannot import {what} file '{spec}'", hint)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)
        try:
            mod_spec.loader.exec_module(module)
        except Exception as exc:  # user code: report, do not crash
            sys.modules.pop(mod_name, None)
            raise error(f"importing {what} '{spec}' failed: {type(exc).__name__}: {exc}") from exc
        finally:
            if folder in sys.path:
                sys.path.remove(folder)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise error(f"cannot import {what} module '{spec}': {exc}", hint) from exc
    except Exception as exc:
        raise error(f"importing {what} '{spec}' failed: {type(exc).__name__}: {exc}") from exc
