"""`mlpbench profile`: files, tables, attribution, FLOPs and memory against independent references, bad input.

Every profiled case is tiny (uniform width 32, depth 1, batch 8, one thread: no
OpenMP oversubscription on a shared 2-core box); only the FLOP check uses the
FashionMNIST net, and without the profiler.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.autograd import DeviceType

import mlp
from bench import cli
from bench.profile import accounting, attribution, capture, render, results
from bench.case.cases import Case

TINY_FLAGS = ["--network", "uniform", "--width", "32", "--depth", "1", "--batch", "8", "--threads", "1"]
TINY_CASE = Case(network="uniform", width=32, depth=1, batch=8, threads=1, device="cpu")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cpu_profile(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("profile") / "tiny"
    assert cli.main(["profile", *TINY_FLAGS, "--device", "cpu", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cpu_result(tmp_path_factory) -> results.ProfileResult:
    out = tmp_path_factory.mktemp("profile-result")
    return capture.profile_case(TINY_CASE, results.ProfileConfig(), out)


# --------------------------------------------------------------------------- files


def test_trace_is_json_with_the_three_phase_labels(cpu_profile):
    trace = json.loads((cpu_profile / results.TRACE_FILE).read_text())
    ranges = {e["name"] for e in trace["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "user_annotation"}
    assert {"forward", "backward", "optimizer"} <= ranges


def test_profile_md_has_the_tables(cpu_profile):
    text = (cpu_profile / results.REPORT_FILE).read_text()
    for heading in ("## Overhead split per phase", "### forward", "### backward", "### optimizer",
                    "## FLOPs by module", "## Memory: analytic vs measured", "### Per phase"):
        assert heading in text
    for header in ("| operator", "| module", "| component", "| phase"):
        assert header in text, header
    assert "aten::addmm" in text
    assert "FlopCounterMode vs analytic: **equal**" in text


def test_meta_round_trips_the_case(cpu_profile):
    from bench.runs import RunKind, read_meta

    meta = read_meta(cpu_profile / results.META_FILE)  # the run record's reader: a profile folder is a run record
    assert meta.kind is RunKind.PROFILE
    assert [Case.from_row(row) for row in meta.cases] == [TINY_CASE]
    assert meta.env["torch"] == torch.__version__
    assert set(meta.extra["files"]) >= {results.TRACE_FILE, results.REPORT_FILE, results.META_FILE}
    assert json.loads((cpu_profile / results.META_FILE).read_text())["schedule"]["active_steps"] >= 1


# --------------------------------------------------------------------------- attribution and numbers


def test_phase_labels_are_the_engine_phases():
    from bench.instruments.timing import TRAINING_PHASES

    assert attribution.PHASE_LABELS == tuple(p.value for p in TRAINING_PHASES)


def test_operators_land_in_their_phase(cpu_result):
    names = {phase: {s.name for s in stats} for phase, stats in cpu_result.operators.items()}
    assert "aten::addmm" in names["forward"] and "aten::mm" not in names["forward"]
    assert {"aten::mm", "aten::mse_loss"} <= names["backward"] and "aten::addmm" not in names["backward"]
    assert any("sgd" in n for n in names["optimizer"]), names["optimizer"]
    addmm = next(s for s in cpu_result.operators["forward"] if s.name == "aten::addmm")
    assert addmm.calls == 2  # one per Linear, per step


def test_operator_time_fits_inside_phase_wall_time(cpu_result):
    for t in cpu_result.times:  # CPU: one thread does all the work, so self times cannot exceed the range
        assert 0 < t.operator_self_cpu_us <= t.wall_us + 1.0, t
        assert t.unprofiled_wall_us > 0


def test_forward_leaves_exactly_the_saved_activations_alive(cpu_result):
    # relu output + logits (MSE saves its input): what the profiler sees stay allocated after forward
    forward = next(m for m in cpu_result.memory_phases if m.phase == "forward")
    assert forward.allocated_bytes - forward.freed_bytes == cpu_result.memory_analytic.saved_activations_bytes


def test_attribution_is_by_time_across_threads():
    # CUDA autograd runs backward ops on its own thread: no parent in the `backward` range, still backward.
    def event(name, start, end, thread, annotation=False, cpu=1.0, dev=0.0):
        return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end), thread=thread,
                               device_type=DeviceType.CPU, is_async=False, is_user_annotation=annotation,
                               self_cpu_time_total=cpu, self_device_time_total=dev, input_shapes=[])
    events = [event("forward", 0, 10, 1, True), event("aten::addmm", 1, 5, 1, dev=7.0),
              event("backward", 10, 30, 1, True), event("aten::mm", 12, 15, 2, dev=3.0),
              event("optimizer", 30, 40, 1, True), event("ProfilerStep#1", 0, 40, 1, True),
              event("aten::stray", 41, 42, 1)]
    ranges = attribution.phase_ranges(events)
    ops = attribution.operators_by_phase(events, ranges, steps=1)
    assert [s.name for s in ops["forward"]] == ["aten::addmm"]
    assert [(s.name, s.device_us) for s in ops["backward"]] == [("aten::mm", 3.0)]
    assert ops["optimizer"] == []
    times = {t.phase: t for t in attribution.phase_times(events, ranges, 1, {})}
    assert (times["backward"].wall_us, times["backward"].operator_self_cpu_us) == (20, 1.0)


@pytest.mark.parametrize("case", [
    Case(network="fashion_mnist", batch=64),
    Case(width=48, depth=2, batch=8, activation="gelu", in_features=20, out_features=3),
    Case(network="teaching", batch=4, optimizer="adam"),
], ids=lambda c: c.label)
def test_flops_by_module_total_equals_the_analytic_count(case):
    modules, (fwd, bwd), _ = accounting.eager_accounting(case)
    analytic = mlp.flops(case.build_model(), case.batch, case.loss, case.optimizer)
    assert (fwd, bwd) == (analytic.forward_matmul, analytic.backward_matmul)
    linears = [m for m in modules if m.kind.startswith("Linear")]
    assert sum(m.forward + m.backward for m in linears) == analytic.step_matmul


@pytest.mark.parametrize("case", [
    TINY_CASE,
    Case(width=32, depth=2, batch=8, activation="gelu", dtype="bf16", optimizer="adam"),
    Case(network="fashion_mnist", batch=16, optimizer="sgd_momentum"),
], ids=lambda c: c.label)
def test_measured_memory_equals_the_analytic_breakdown(case):
    _, _, measured = accounting.eager_accounting(case)
    analytic = mlp.memory(case.build_model(), case.batch, case.input_shape, case.loss, case.optimizer, case.dtype)
    assert measured == results.MeasuredMemory(analytic.parameters_bytes, analytic.gradients_bytes,
                                           analytic.optimizer_state_bytes, analytic.saved_activations_bytes,
                                           analytic.data_bytes)


def test_cuda_tables_render_without_a_gpu(cpu_result):
    cuda_case = TINY_CASE.with_(device="cuda")
    times = [dataclasses.replace(t, device_us=t.wall_us / 2) for t in cpu_result.times]
    memory = [dataclasses.replace(m, cuda_peak_allocated_bytes=4096) for m in cpu_result.memory_phases]
    text = render.render_markdown(dataclasses.replace(cpu_result, case=cuda_case, times=times, memory_phases=memory))
    assert "device kernel ms" in text and "| host " in text and "CUDA peak allocated" in text
    assert "device ms" in text.split("### forward")[1]


# --------------------------------------------------------------------------- bad input: one line, exit 2


def _usage_error(capsys, *argv: str) -> str:
    assert cli.main(["profile", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlpbench: error:") and "\n" not in err, err
    return err


def test_multi_case_request_is_rejected(capsys, tmp_path):
    err = _usage_error(capsys, *TINY_FLAGS[:-4], "--batch", "8,16", "--out", str(tmp_path / "p"))
    assert "exactly one case" in err and "--batch" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("argv", [
    ["--width", "abc"],
    ["--width", "0"],
    ["--activation", "nope"],
    ["--bogus-flag"],
    ["--active-steps", "0"],
    ["--top", "0"],
], ids=lambda a: " ".join(a))
def test_bad_flags_exit_2(capsys, argv):
    _usage_error(capsys, *argv)


def test_memory_snapshot_on_cpu_says_why(capsys):
    assert "needs --device cuda" in _usage_error(capsys, "--device", "cpu", "--memory-snapshot")


# --------------------------------------------------------------------------- separation from `run`


def test_measurement_modules_never_import_the_profiler():
    for name in ("engine/runner", "instruments/timing", "case/cases", "analysis/stats", "limits/ceiling", "runs/writer",
                 "runs/reader"):
        tree = ast.parse((REPO / "bench" / f"{name}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any("profile" in m for m in imported), (name, imported)


def test_importing_the_command_does_not_import_torch():
    code = "import sys, bench.commands.profile; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_profile_has_kernel_time_peaks_and_snapshot(tmp_path):
    out = tmp_path / "cuda"
    assert cli.main(["profile", *TINY_FLAGS, "--device", "cuda", "--memory-snapshot", "--out", str(out)]) == 0
    assert (out / results.SNAPSHOT_FILE).stat().st_size > 0
    json.loads((out / results.TRACE_FILE).read_text())
    result = capture.profile_case(TINY_CASE.with_(device="cuda"), results.ProfileConfig(), tmp_path / "again")
    assert all(t.device_us > 0 for t in result.times)
    assert all((m.cuda_peak_allocated_bytes or 0) > 0 for m in result.memory_phases)
    forward = {s.name: s for s in result.operators["forward"]}
    assert forward["aten::addmm"].device_us > 0
    backward = {s.name for s in result.operators["backward"]}
    assert "aten::mm" in backward  # ran on autograd's device thread, attributed by time


KINETO_PROBE = """
import torch
from torch.profiler import ProfilerActivity, profile
from bench.profile.capture import kineto_quiet_without_gpu
with kineto_quiet_without_gpu(), profile(activities=[ProfilerActivity.CPU]):
    torch.ones(4) + 1
print("profiled")
"""


@pytest.mark.e2e  # its own process imports torch and profiles (~20 s on 2 cores); `make test-e2e` runs it
@pytest.mark.skipif(torch.cuda.is_available(), reason="the silenced line is a machine without a usable GPU's")
def test_profiling_without_a_gpu_prints_no_kineto_device_error():
    """A CUDA build of torch on a machine without a driver: kineto printed 'ERROR ... DeviceProperties.cpp ...
    gpuGetDeviceCount failed with code 35' (and two 'USDT: ... profiler_start/stop' lines) when a CPU trace
    stopped; the same probe without kineto_quiet_without_gpu prints them here. Its own process: kineto reads its
    log level once per process, at the first profile."""
    env = {k: v for k, v in os.environ.items() if k != capture.KINETO_LOG_LEVEL_ENV}
    proc = subprocess.run([sys.executable, "-c", KINETO_PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "profiled" in proc.stdout, proc.stderr[-2000:]
    assert "gpuGetDeviceCount" not in proc.stderr and "ERROR:" not in proc.stderr, proc.stderr
