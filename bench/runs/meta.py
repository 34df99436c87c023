"""meta.json as a dataclass: what a run measured, on what, how, and how far it got.

Read tolerantly: a key this version does not know is kept in ``extra`` and written back
unchanged; a key an older run lacks takes its default (runs before ``kind`` are sweeps).
A new meta key is one field here. Code that reads optional keys by name may use
``meta.get(key, default)`` as it did when meta was a dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from .status import RunKind

# The fingerprint keys two runs must share to be compared (instruments.env records them with the run).
COMPARABILITY_KEYS = ("torch", "cuda", "device_name", "cpu_model", "torch_threads", "hostname")
FLAG_KEYS = ("tf32_matmul_default", "float32_matmul_precision_default", "cpu_capability")  # ... and precision flags

CRASH_LIMIT = 2  # deaths in the same case after which --resume records it as crashed and goes on


class MetaError(ValueError):
    """meta.json holds something that is not a run's metadata (the reader names the file)."""


# The JSON values each annotated field type accepts (an int is a float; a bool is neither, checked apart).
JSON_TYPES = {"dict": dict, "list": list, "str": str, "bool": bool, "int": int, "float": (int, float)}


def _shown(value: Any) -> str:
    return type(value).__name__ + ("" if isinstance(value, (dict, list)) else f" {json.dumps(value)[:40]}")


@dataclass
class RunMeta:
    """A run's metadata. Mutable on purpose: the writer updates it as the run goes and rewrites meta.json."""

    kind: RunKind = RunKind.SWEEP
    preset: str = "custom"
    env: dict = field(default_factory=dict)  # bench.instruments.env.fingerprint()
    timing_config: dict = field(default_factory=dict)
    n_cases: int = 0
    cases: list = field(default_factory=list)  # every planned case as a row (Case.to_row), for --resume
    ceilings: dict = field(default_factory=dict)  # "cpu/fp32" -> bench.limits.ceiling.Ceiling.as_dict()
    bandwidth: dict = field(default_factory=dict)  # "cpu/fp32" -> bench.limits.bandwidth.Bandwidth.as_dict()
    dispatch: dict = field(default_factory=dict)  # "cpu" (or "cpu/t1") -> bench.limits.dispatch.DispatchFloor.as_dict()
    limits_spent_s: dict = field(default_factory=dict)  # what the limits beyond the square ceilings cost
    interrupted: bool = False  # Ctrl-C or SIGTERM ended it
    skip_slow_dtypes: bool = False
    skipped_dtypes: dict = field(default_factory=dict)  # "cpu/bf16" -> why the preset skipped it
    run_s: float = 0.0  # wall time over every invocation (a resumed run adds up)
    load_average_1m_start: float | None = None
    load_average_1m_end: float | None = None
    noise: dict = field(default_factory=dict)  # bench.analysis.noise.run_record: the machine state the noise model reads
    resumed_from: str | None = None  # the date of the first invocation's environment
    in_flight: dict | None = None  # {"case_id", "label", "pid"} while a case is being measured (cleared after it)
    crashes: dict = field(default_factory=dict)  # case_id -> times the process died while measuring it
    ddp: dict | None = None  # mlpbench ddp: processes, backend, threads, the launch
    models: dict = field(default_factory=dict)  # a user's model name -> what rebuilds it (bench.runs.recipe)
    extra: dict = field(default_factory=dict)  # keys this version does not know, written back as they were

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None}
        return {**self.extra, **out, "kind": self.kind.value}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> "RunMeta":
        if not isinstance(data, dict):
            raise MetaError(f"not a JSON object but {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["kind"] = RunKind(values.get("kind", RunKind.SWEEP.value))
        except ValueError:
            raise MetaError(f"unknown kind {data.get('kind')!r}; valid: "
                            f"{', '.join(k.value for k in RunKind)}") from None
        for f in fields(cls):
            value, expected = values.get(f.name), f.type.split()[0]
            if value is not None and f.name != "kind" and not isinstance(value, JSON_TYPES.get(expected, object)) \
                    or isinstance(value, bool) and expected in ("int", "float"):
                raise MetaError(f"{f.name!r} is {_shown(value)}, expected {expected}")
        bad_case = next((i for i, row in enumerate(values.get("cases") or []) if not isinstance(row, dict)), None)
        if bad_case is not None:
            raise MetaError(f"cases[{bad_case}] is {_shown(values['cases'][bad_case])}, expected a case's fields "
                            "(an object)")
        bad_count = next((k for k, n in (values.get("crashes") or {}).items() if type(n) is not int), None)
        if bad_count is not None:
            raise MetaError(f"crashes[{bad_count!r}] is {_shown(values['crashes'][bad_count])}, expected int")
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_json(cls, text: str) -> "RunMeta":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetaError(f"not JSON ({exc})") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------------ mapping-style reads

    def get(self, key: str, default: Any = None) -> Any:
        if key != "extra" and key in {f.name for f in fields(self)}:
            value = getattr(self, key)
            return default if value is None else value
        return self.extra.get(key, default)

    def __getitem__(self, key: str) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    # ------------------------------------------------------------------ limits

    def limit_table(self, name: str) -> dict:
        """A measured limit's table (``bench.runs.limit_tables``), live: its field, or for a limit declared without
        one, its dict in ``extra`` (written to meta.json under ``name`` all the same)."""
        if name != "extra" and name in {f.name for f in fields(self)}:
            return getattr(self, name)
        return self.extra.setdefault(name, {})

    # ------------------------------------------------------------------ crashes

    def crash_count(self, case_id: str) -> int:
        return int(self.crashes.get(case_id, 0))

    def gave_up_on(self, case_id: str) -> bool:
        """The process died in this case ``CRASH_LIMIT`` times: record it, do not measure it again."""
        return self.crash_count(case_id) >= CRASH_LIMIT
