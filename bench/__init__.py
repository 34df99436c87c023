"""mlpbench's benchmark engine: cases, timing, runner, results store, reports.

``from bench import measure, sweep`` (``bench.api``) is resolved on first use, so that ``import bench``
and the CLI's start stay light (no torch until something is measured).
"""

_LAZY = {"measure": "bench.api", "sweep": "bench.api", "Result": "bench.api"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
