"""Predicted time of each stage of the GPU kit on an H100/H200, for ``gpu-reference --dry-run``.

The ``gpu`` preset's cases are predicted with the run budget's model (``bench.engine.budget.prior_case_s``)
at the datasheet rates of ``plan.GPUS``; a run stage is never predicted past its ``--max-run-s``
(the budget stops it there), and the cases that fit are counted. Stages that are not a list of
cases have a planned figure (``plan.PLANNED_S``). Nothing here measures anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.engine.budget import prior_case_s
from bench.case.cases import preset
from tools.gpuref.plan import CEILING_S, GPUS, IMPORT_S, PLANNED_S, STAGES, Stage, StageName, run_max_s, tune_max_s

GPU_PRESET, CPU_PRESET = "gpu", "crossover"


@dataclass(frozen=True)
class StageForecast:
    stage: Stage
    predicted_s: float
    note: str


def preset_forecast(gpu: str, stage: Stage) -> tuple[float, str]:
    """Seconds the gpu preset's run stage will take on ``gpu``, and how many of its cases fit its budget."""
    spec = GPUS[gpu]
    cases = preset(GPU_PRESET).cases()
    budget = run_max_s(stage, tiny=False)
    spent = IMPORT_S + CEILING_S * len({c.dtype for c in cases})
    fitted = 0
    total = spent
    for case in cases:
        estimate = prior_case_s(case, spec.tflops[case.dtype], bytes_per_s=spec.hbm_bytes_per_s).total_s
        total += estimate
        if spent + estimate <= budget:
            spent += estimate
            fitted += 1
    note = (f"{len(cases)} cases predicted {total:.0f} s in all; --max-run-s {budget:.0f} measures the first "
            f"{fitted} in order (~{spent:.0f} s), the rest are `skipped` (run budget)")
    return min(total, stage.limit_s), note


def forecast(gpu: str = "h100") -> list[StageForecast]:
    """One predicted time per stage on ``gpu`` ('h100' or 'h200'), each within its limit."""
    out = []
    for stage in STAGES:
        if stage.name is StageName.GPU_RUN:
            seconds, note = preset_forecast(gpu, stage)
        elif stage.name is StageName.FASTEST:
            seconds = stage.limit_s
            budgets = " and ".join(f"{tune_max_s(stage, False, f):.0f}" for f in ("large", "batch64"))
            note = (f"two `mlpbench tune` runs under --max-run-s {budgets}: knob chains first (the knobs without a "
                    "compile, then the cold compiles), the other combinations while time is left")
        elif stage.name is StageName.CPU_RUN:
            seconds = stage.limit_s
            note = (f"the {CPU_PRESET} preset on the machine's CPU cores: bounded by --max-run-s "
                    f"{run_max_s(stage, tiny=False):.0f} (the CPU's speed is unknown until measured)")
        else:
            seconds, note = min(PLANNED_S[stage.name], stage.limit_s), "planned (see docs/gpu-reference.md)"
        out.append(StageForecast(stage, seconds, note))
    return out
