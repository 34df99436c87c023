"""The run-level time budget (``mlpbench run --max-run-s``) and the a-priori time of a case.

A case's time is predicted twice. Before it starts, from its analytic FLOPs and a matmul rate
(the run's own ceiling where one was measured, else a datasheet rate or a floor) plus a per-op
overhead and, for compiled cases, a compile allowance (``prior_case_s``); the GPU kit's dry-run
plan uses the same model with datasheet rates. After its first step, by the engine's own
prediction (``timing.predict_measure_s``), the one ``--max-case-s`` uses. A run with
``--max-run-s`` starts a case only while the time left covers the first prediction, and lets it
measure only while the time left covers the second; every case it does not measure becomes a
``skipped`` row whose reason starts with ``run budget``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

import mlp

from ..case.accounting import case_figures, meta_model
from ..case.cases import Case
from ..instruments.timing import TimingConfig, predict_measure_s

RUN_BUDGET = "run budget"  # the first words of every reason a case was skipped for the run's budget
ACHIEVED_FRACTION = 0.7  # of a matmul rate (measured ceiling or datasheet) that an MLP step reaches
CPU_FALLBACK_TFLOPS = 0.05  # no ceiling known: a slow CPU's fp32 rate (2-core AVX2 EPYC: ~0.1)
CUDA_FALLBACK_TFLOPS = 10.0  # no ceiling known on a GPU: an old card's rate, on the safe side
OP_OVERHEAD_S = {"cpu": 5e-6, "cuda": 8e-6}  # eager dispatch + launch per ATen op (host-bound)
GRAPH_REPLAY_STEP_S = 30e-6  # reduce-overhead on CUDA: one CUDA-graph replay per step
OPS_PER_LINEAR = 6  # addmm forward; mm, mm and the bias sum backward; the optimiser's share; zero_grad
OPS_PER_ACTIVATION = 2  # forward and backward
OPS_PER_STEP = 10  # loss forward/backward, autograd engine, optimiser launch
COMPILE_ALLOWANCE_S = {"cpu": 25.0, "cuda": 20.0}  # cold torch.compile of a small MLP: training + inference graphs
FALLBACK_BYTES_PER_S = {"cpu": 10e9, "cuda": 1e12}  # no bandwidth known: a small server's, an old card's
PARAM_PASSES = 6  # weight read twice, gradient written, optimiser: weight and gradient read, weight written
UNTIMED_STEPS = 8  # first step, the probe's block, the peak-memory pass: steps outside predict_measure_s


@dataclass(frozen=True)
class CaseEstimate:
    """A-priori step time of a case and what the engine will spend on it."""

    step_s: float
    compile_s: float
    total_s: float


def step_matmul_flops(case: Case) -> int:
    """Matmul FLOPs of one training step, from the architecture alone (or counted, ``bench.case.accounting``)."""
    return int(case_figures(case).matmul_flops["step"])


def step_bytes(case: Case) -> int:
    """Bytes one training step moves through memory, roughly: parameter-sized passes plus saved activations.

    Weights are read in forward and backward, gradients written, and the optimiser reads weights,
    gradients and its state and writes weights and state; autocast writes and reads the cast copies;
    saved activations are written in forward and read in backward.
    """
    m = case_figures(case).memory  # a counted case's saved activations are unknown: left out (a lower bound)
    saved = 0 if math.isnan(m["saved_activations_bytes"]) else m["saved_activations_bytes"]
    param_passes = PARAM_PASSES * m["parameters_bytes"] + 2 * m["optimizer_state_bytes"]
    return int(param_passes + 2 * saved + m["data_bytes"])


def _op_count(case: Case) -> int:
    model = meta_model(case)
    try:
        kinds = [layer.kind for layer in mlp.layers_of(model)]
    except ValueError:  # a module the accounting does not know: its leaf modules, a Linear or not
        kinds = ["linear" if isinstance(m, torch.nn.Linear) else "other" for m in model.modules()
                 if not list(m.children())]
    linear = kinds.count("linear")
    return OPS_PER_STEP + OPS_PER_LINEAR * linear + OPS_PER_ACTIVATION * (len(kinds) - linear)


def prior_case_s(case: Case, tflops: float | None, config: TimingConfig = TimingConfig(),
                 compile_allowance_s: float | None = None, bytes_per_s: float | None = None) -> CaseEstimate:
    """Predicted wall time of measuring ``case`` at ``ACHIEVED_FRACTION`` of ``tflops`` (None: a fallback rate).

    step = max(matmul FLOPs / rate, bytes / bandwidth) + ops x per-op overhead (one graph replay for
    reduce-overhead on CUDA); total = the engine's warm-up and rounds for that step
    (``predict_measure_s``) + the untimed steps + the compile allowance of a compiled case.
    """
    device = case.device
    rate = tflops if tflops and tflops > 0 else (CUDA_FALLBACK_TFLOPS if device == "cuda" else CPU_FALLBACK_TFLOPS)
    bandwidth = bytes_per_s or FALLBACK_BYTES_PER_S.get(device, FALLBACK_BYTES_PER_S["cpu"])
    compute_s = max(step_matmul_flops(case) / (rate * 1e12 * ACHIEVED_FRACTION),
                    step_bytes(case) / (bandwidth * ACHIEVED_FRACTION))
    overhead_s = GRAPH_REPLAY_STEP_S if case.cuda_graphs else _op_count(case) * OP_OVERHEAD_S.get(device, 5e-6)
    step_s = compute_s + overhead_s
    compile_s = 0.0
    if case.compiled:
        compile_s = COMPILE_ALLOWANCE_S.get(device, 25.0) if compile_allowance_s is None else compile_allowance_s
    total = predict_measure_s(step_s, config) + UNTIMED_STEPS * step_s + compile_s
    return CaseEstimate(step_s, compile_s, total)


class RunBudget:
    """Wall-clock budget of a whole run, counted from its start (ceilings included)."""

    def __init__(self, max_run_s: float, clock=time.perf_counter):
        if not (0 < max_run_s < math.inf):
            raise ValueError(f"max_run_s must be a positive number of seconds, got {max_run_s}")
        self.max_run_s = max_run_s
        self.clock = clock
        self.start = clock()

    def left_s(self) -> float:
        return self.max_run_s - (self.clock() - self.start)

    def not_started_reason(self, predicted_s: float, case: Case) -> str | None:
        """Why the case is not started (None: start it): the time left is below its a-priori prediction."""
        left = self.left_s()
        if predicted_s <= left:
            return None
        return (f"{RUN_BUDGET}: predicted {predicted_s:.3g} s for the case > {max(left, 0.0):.3g} s left of "
                f"--max-run-s {self.max_run_s:g}; measure it with: mlpbench run {case.cli_flags()}")

    def measuring_reason(self, predicted_measure_s: float, left_s: float, case: Case) -> str:
        """Reason for a case the engine skipped after its first step because of the time left."""
        return (f"{RUN_BUDGET}: predicted {predicted_measure_s:.3g} s of measuring > {max(left_s, 0.0):.3g} s left "
                f"of --max-run-s {self.max_run_s:g}; measure it with: mlpbench run {case.cli_flags()}")
