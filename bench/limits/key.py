"""``LimitKey``: which measured limit a case is charged against: device, dtype (for a limit measured per dtype)
and CPU threads. meta.json keys its limit tables by ``str(key)`` (``cpu/fp32``, ``cpu/fp32/t1``, ``cpu/t1``,
``cuda/bf16``); ``LimitKey.parse`` reads them back. No torch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_THREADS = re.compile(r"t(\d+)")


@dataclass(frozen=True, order=True)
class LimitKey:
    """``threads`` 0 is torch's default; a CUDA limit does not depend on the CPU's threads (always 0)."""

    device: str
    dtype: str | None = None  # None: a limit measured once per device (the dispatch floor)
    threads: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "threads", 0 if self.device == "cuda" else int(self.threads or 0))

    def __str__(self) -> str:
        parts = [self.device] + ([self.dtype] if self.dtype else []) + ([f"t{self.threads}"] if self.threads else [])
        return "/".join(parts)

    @classmethod
    def parse(cls, text: str) -> "LimitKey":
        """``cpu/fp32/t1`` -> LimitKey("cpu", "fp32", 1); ``cpu/t1`` -> LimitKey("cpu", None, 1)."""
        device, *rest = str(text).split("/")
        threads = 0
        if rest and (m := _THREADS.fullmatch(rest[-1])):
            threads, rest = int(m.group(1)), rest[:-1]
        if len(rest) > 1 or not device:
            raise ValueError(f"not a limit key: {text!r} (expected device[/dtype][/tN])")
        return cls(device, rest[0] if rest else None, threads)

    @classmethod
    def of(cls, fields: Mapping | object, per_dtype: bool = True) -> "LimitKey":
        """The key of a case (``Case``) or a summary row (a dict with device, dtype, threads)."""
        get = fields.get if isinstance(fields, Mapping) else lambda name: getattr(fields, name, None)
        return cls(str(get("device")), str(get("dtype")) if per_dtype else None, int(get("threads") or 0))

    def for_table(self, per_dtype: bool) -> "LimitKey":
        """This key as a table keyed per device x dtype (``per_dtype``) or per device keys it."""
        return self if per_dtype else LimitKey(self.device, None, self.threads)
