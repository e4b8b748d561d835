"""buildbot-profiler: a low-overhead statistical profiler for Buildbot masters.

Public names are imported lazily, so ``import profiler_service`` stays cheap
and never fails because the C extension cannot load (Buildbot imports every
installed www plugin at master start).
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import Any

try:
    __version__ = _metadata.version("buildbot-profiler")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["Profiler", "ProfilerService", "load", "ProfileError", "__version__"]

_LAZY = {
    "Profiler": ("profiler", "Profiler"),
    "ProfilerService": ("service", "ProfilerService"),
    "load": ("reading", "load"),
    "ProfileError": ("reading", "ProfileError"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'profiler_service' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
