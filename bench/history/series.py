"""What makes two numbers comparable: the series key (machine class, case, phase, metric).

A run from another machine class or torch build starts a new series; it is never mixed
into an old one. The machine class is built from the run's environment fingerprint
(``meta.json``'s ``env``) with the fields that change a case's speed on its device, and
without the ones that do not (hostname, date, load): a pool of identical CI runners is
one class.

The class is keyed by a hash (``machine_id``); people read its name (``machine_name``): the CPU model,
its cores and the GPU, then the rest of the class. The name's CPU and GPU come from the run's fingerprint
even where they are not in the class (a CUDA case's host CPU): they name the machine, they do not key it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

# Fingerprint fields that define the machine class of a case, per device.
CPU_CLASS_FIELDS = ("cpu_model", "cpu_count", "cpu_capability", "torch", "torch_threads")
CUDA_CLASS_FIELDS = ("device_name", "cuda_capability", "cuda", "cudnn", "torch", "tf32_matmul_default")
MACHINE_ID_CHARS = 12
NAME_FIELDS = ("cpu_model", "cpu_count", "device_name")  # what a person calls the machine (the GPU: device_name)


@dataclass(frozen=True)
class MachineClass:
    """The device and the fingerprint fields that make its numbers comparable."""

    device: str
    fields: tuple[tuple[str, str], ...]  # (name, value as text), in CPU_/CUDA_CLASS_FIELDS order
    # NAME_FIELDS as the fingerprint recorded them: the machine's name, neither its key nor its identity
    host: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def machine_id(self) -> str:
        text = json.dumps([self.device, list(self.fields)])
        return hashlib.sha1(text.encode()).hexdigest()[:MACHINE_ID_CHARS]

    @property
    def description(self) -> str:
        return machine_name(self.info()) or f"{self.device}: " + ", ".join(f"{k} {v}" for k, v in self.fields)

    def info(self) -> dict[str, str]:
        """The device, the name fields and the class fields (these win where both hold a field)."""
        return {"device": self.device, **dict(self.host), **dict(self.fields)}

    def to_json(self) -> str:
        return json.dumps(self.info(), sort_keys=True)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def machine_class(env: Mapping[str, object], device: str) -> MachineClass:
    """The class of ``device`` in the fingerprint ``env``; a missing field is recorded as missing, not guessed."""
    names = CUDA_CLASS_FIELDS if device == "cuda" else CPU_CLASS_FIELDS
    return MachineClass(device, tuple((k, _text(env.get(k))) for k in names),
                        tuple((k, _text(env.get(k))) for k in NAME_FIELDS if k in env))


def machine_name(info: Mapping[str, object]) -> str:
    """The machine in words: CPU model, cores, GPU, then the rest of its class; "" when ``info`` names nothing.

    ``info``: a ``MachineClass.info()`` as the history stored it. A field the fingerprint did not record is left
    out (never guessed); a recorded empty GPU reads "no GPU".
    """
    cpu, cores = _text(info.get("cpu_model")), _text(info.get("cpu_count"))
    machine = [cpu] if cpu else []
    if cores:
        machine.append(f"{cores} cores")
    if "device_name" in info:
        gpu = _text(info.get("device_name"))
        machine.append(f"GPU {gpu}" if gpu else "no GPU")
    if not machine:
        return ""
    device = _text(info.get("device")) or "cpu"
    if device == "cuda":
        rest = [f"sm {info['cuda_capability']}" if info.get("cuda_capability") else "",
                f"CUDA {info['cuda']}" if info.get("cuda") else "", f"cuDNN {info['cudnn']}" if info.get("cudnn") else ""]
    else:
        rest = [_text(info.get("cpu_capability")),
                f"{info['torch_threads']} threads" if info.get("torch_threads") else ""]
    rest.append(f"torch {info['torch']}" if info.get("torch") else "")
    return f"{', '.join(machine)} ({device} cases: {', '.join(r for r in rest if r) or 'no other field'})"


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One series: like with like. Points of two different keys are never compared."""

    machine_id: str
    case_id: str
    phase: str
    metric: str
