"""bench.timing: the measurement protocol against torch.utils.benchmark and the plain step (CUDA where it exists)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.utils.benchmark as tbench

from bench.cases import Case
from bench.stats import summarize
from bench.timing import Phase, TimingConfig, measure

FAST = TimingConfig(repeats=5, warmup_s=0.05, min_block_s=0.005)
PHASE_SUM_TOLERANCE = 0.35  # instrumented phases vs the plain step: clock reads and noise, never 35%+ apart
TIMER_AGREEMENT_BAND = (0.5, 2.0)  # engine vs torch.utils.benchmark on a noisy shared 2-core box


# --------------------------------------------------------------------------- the timing protocol


def test_phases_add_up_to_the_whole_step():
    case = Case(width=256, depth=2, batch=64, threads=1)  # one thread: immune to OpenMP oversubscription
    m = measure(case, TimingConfig(repeats=9, warmup_s=0.1, min_block_s=0.02))
    step = summarize(m.samples[Phase.STEP]).median
    parts = sum(summarize(m.samples[p]).median for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER))
    assert abs(parts / step - 1) < PHASE_SUM_TOLERANCE, (parts, step)
    assert summarize(m.samples[Phase.INFERENCE]).median < step


def test_engine_agrees_with_torch_utils_benchmark():
    """The whole-step median equals torch.utils.benchmark's blocked_autorange on the same step (loose band)."""
    case = Case(network="fashion_mnist", batch=64, threads=1)
    ours = summarize(measure(case, TimingConfig(repeats=9, warmup_s=0.1)).samples[Phase.STEP]).median
    from bench.timing import build_step

    step = build_step(case)
    x, y = case.make_batch(torch.Generator().manual_seed(1))
    timer = tbench.Timer(stmt="step.step(x, y)", globals={"step": step, "x": x, "y": y}, num_threads=1)
    theirs = timer.blocked_autorange(min_run_time=0.5).median
    assert TIMER_AGREEMENT_BAND[0] < ours / theirs < TIMER_AGREEMENT_BAND[1], (ours, theirs)


def test_first_step_is_not_in_the_samples():
    m = measure(Case(width=32, depth=1, batch=8), FAST)
    assert not math.isnan(m.first_step_s)
    assert all(len(m.samples[p]) == FAST.repeats for p in Phase)
    assert m.iters_per_block[Phase.STEP] >= 1


def test_threads_are_set_per_case_and_restored():
    before = torch.get_num_threads()
    m = measure(Case(width=32, depth=1, batch=8, threads=1), FAST)
    assert m.threads == 1
    assert torch.get_num_threads() == before


def test_gradients_do_not_accumulate_between_steps():
    from bench.timing import build_step

    case = Case(width=16, depth=1, batch=4)
    step = build_step(case)
    x, y = case.make_batch()
    step.step(x, y)
    assert all(p.grad is None for p in step.model.parameters())


# --------------------------------------------------------------------------- CUDA (where it exists)

def cuda(test):
    """Marked ``cuda`` (the GPU kit selects them with ``-m cuda``) and skipped where CUDA is absent."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))


@cuda
@pytest.mark.parametrize("compile_mode", ["none", "reduce-overhead"])
def test_cuda_case_measures_with_events_and_memory(compile_mode):
    case = Case(width=512, depth=2, batch=256, device="cuda", dtype="bf16", compile=compile_mode)
    m = measure(case, FAST)
    assert m.status == "ok"
    step = summarize(m.samples[Phase.STEP]).median
    parts = sum(summarize(m.samples[p]).median for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER))
    assert abs(parts / step - 1) < PHASE_SUM_TOLERANCE * 2  # launch-bound tiny steps: looser
    assert set(m.peak_mem_bytes) == set(Phase) and all(v > 0 for v in m.peak_mem_bytes.values())
    if compile_mode != "none":
        assert m.compile_graphs >= 2 and m.recompiles == 0


@cuda
def test_cuda_analytic_memory_is_below_the_measured_peak():
    import mlp

    case = Case(width=1024, depth=3, batch=512, device="cuda")
    m = measure(case, FAST)
    mem = mlp.memory(case.build_model(), case.batch, case.input_shape, case.loss, case.optimizer, case.dtype)
    # the end of forward holds parameters + saved activations + data; the forward peak includes them
    resident = mem.parameters_bytes + mem.saved_activations_bytes + mem.data_bytes
    assert resident <= m.peak_mem_bytes[Phase.FORWARD]


@cuda
def test_cuda_ceiling_is_measured():
    from bench.ceiling import measure_ceiling

    c = measure_ceiling("cuda", "bf16", sizes=(2048,))
    assert c.measured_tflops > 1 and c.device_name
