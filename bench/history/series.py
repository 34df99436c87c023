"""What makes two numbers comparable: the series key (machine class, case, phase, metric).

A run from another machine class or torch build starts a new series; it is never mixed
into an old one. The machine class is built from the run's environment fingerprint
(``meta.json``'s ``env``) with the fields that change a case's speed on its device, and
without the ones that do not (hostname, date, load): a pool of identical CI runners is
one class.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

# Fingerprint fields that define the machine class of a case, per device.
CPU_CLASS_FIELDS = ("cpu_model", "cpu_count", "cpu_capability", "torch", "torch_threads")
CUDA_CLASS_FIELDS = ("device_name", "cuda_capability", "cuda", "cudnn", "torch", "tf32_matmul_default")
MACHINE_ID_CHARS = 12


@dataclass(frozen=True)
class MachineClass:
    """The device and the fingerprint fields that make its numbers comparable."""

    device: str
    fields: tuple[tuple[str, str], ...]  # (name, value as text), in CPU_/CUDA_CLASS_FIELDS order

    @property
    def machine_id(self) -> str:
        text = json.dumps([self.device, list(self.fields)])
        return hashlib.sha1(text.encode()).hexdigest()[:MACHINE_ID_CHARS]

    @property
    def description(self) -> str:
        return f"{self.device}: " + ", ".join(f"{k} {v}" for k, v in self.fields)

    def to_json(self) -> str:
        return json.dumps({"device": self.device, **dict(self.fields)}, sort_keys=True)


def machine_class(env: Mapping[str, object], device: str) -> MachineClass:
    """The class of ``device`` in the fingerprint ``env``; a missing field is recorded as missing, not guessed."""
    names = CUDA_CLASS_FIELDS if device == "cuda" else CPU_CLASS_FIELDS
    return MachineClass(device, tuple((k, "" if env.get(k) is None else str(env.get(k))) for k in names))


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One series: like with like. Points of two different keys are never compared."""

    machine_id: str
    case_id: str
    phase: str
    metric: str
