"""The GPU kit (`mlpbench gpu-reference`) on the CPU: its plan fits the device command, stages are bounded, OUT survives.

The end-to-end rehearsal (`make gpu-reference ARGS="--device cpu --tiny"`) is its own step of .ci/run; these
tests check the parts: the 540 s plan, the order of the gpu preset, a stage killed at its limit, the archive.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile

import pytest

from bench.case.cases import preset
from bench.cli import main as cli_main
from tools.gpuref import archive, command, plan, stages
from tools.gpuref.forecast import forecast
from tools.gpuref.plan import Stage, StageName

DEVICE_COMMAND_S = 600  # one device command's limit (docs/gpu-reference.md); the kit must end well inside it


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_the_plan_fits_in_540_seconds_predicted_and_as_limits(gpu):
    predicted = forecast(gpu)
    assert [f.stage.name for f in predicted] == list(StageName)
    assert all(0 < f.predicted_s <= f.stage.limit_s for f in predicted)
    assert sum(f.predicted_s for f in predicted) <= plan.TOTAL_LIMIT_S
    assert sum(s.limit_s for s in plan.STAGES) + plan.ORCHESTRATION_S <= plan.TOTAL_LIMIT_S < DEVICE_COMMAND_S
    # the preflight fails fast, yet holds a cold torch.compile: 20-23 s on the first H100 (2026-11-27)
    assert next(s for s in plan.STAGES if s.name is StageName.PREFLIGHT).limit_s <= 35


def test_the_large_mlp_prediction_follows_the_datasheet():
    """w8192 d4 b8192 bf16: 5 matmuls x 2 x 8192^3 forward, backward twice that but the first input grad."""
    from bench.engine.budget import ACHIEVED_FRACTION, step_matmul_flops

    large = preset("gpu").cases()[0]
    flops = 2 * 8192**3 * (5 + 2 * 5 - 1)
    assert step_matmul_flops(large) == flops
    seconds = flops / (plan.GPUS["h100"].tflops["bf16"] * 1e12 * ACHIEVED_FRACTION)
    assert 0.02 < seconds < 0.025  # ~22 ms per step at 70% of 989 TFLOP/s


def test_the_dry_run_prints_every_stage_and_the_total_and_runs_nothing(tmp_path, capsys):
    assert command.main(["--dry-run", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    for stage in plan.STAGES:
        assert f"| {stage.name.value}" in text
    assert "must be <= 540 s" in text and not (tmp_path / "out").exists()


def test_the_gpu_preset_is_ordered_by_value_and_has_no_max_autotune():
    cases = preset("gpu").cases()
    first = cases[0]
    assert (first.width, first.depth, first.batch, first.dtype, first.compile) == (8192, 4, 8192, "bf16", "none")
    assert cases[1].compile == "default" and all(c.device == "cuda" for c in cases)
    assert "max-autotune" not in {c.compile for c in cases}
    ro = [i for i, c in enumerate(cases) if c.compile == "reduce-overhead"]
    grid = [i for i, c in enumerate(cases) if c.depth == 2 and c.network == "uniform" and c.width in (256, 8192)]
    activations = [i for i, c in enumerate(cases) if c.activation != "relu"]
    assert max(ro) < min(grid) < min(activations)
    assert {c.dtype for c in cases if c.depth == 2 and c.network == "uniform"} == {"fp32", "tf32", "bf16"}


def test_unknown_stages_and_a_busy_out_are_one_line_errors(tmp_path, capsys):
    assert command.main(["--out", str(tmp_path / "a"), "--stages", "preflight,warp"]) == 2
    assert "unknown stage(s) warp" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("kept")
    assert command.main(["--out", str(busy)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err and (busy / "x").read_text() == "kept"


def _fake_stage(name: StageName, limit_s: float, cuda_only: bool = False) -> Stage:
    return Stage(name, f"fake {name.value}", limit_s, limit_s, cuda_only)


def test_a_stage_past_its_limit_is_killed_the_kit_goes_on_and_the_archive_keeps_everything(tmp_path, monkeypatch):
    scripts = {
        StageName.PREFLIGHT: "print('preflight: ok: fake')",
        StageName.GPU_RUN: "import time, pathlib; pathlib.Path(r'%s').write_text('half'); print('working', "
                           "flush=True); time.sleep(60)" % (tmp_path / "out" / "partial.txt"),
        StageName.REPORT: "print('report written')",
    }
    monkeypatch.setattr(command, "commands",
                        lambda stage, layout, device, tiny: [[sys.executable, "-c", scripts[stage.name]]])
    monkeypatch.setattr(command.Kit, "_has_cuda", lambda self: False)
    kit = command.Kit(stages.Layout(tmp_path / "out"), tmp_path / "out.tar.gz", "cpu", tiny=False)
    (tmp_path / "out").mkdir()
    rc = kit.run([_fake_stage(StageName.PREFLIGHT, 30), _fake_stage(StageName.GPU_RUN, 2),
                  _fake_stage(StageName.TIMER, 30, cuda_only=True), _fake_stage(StageName.REPORT, 30)])
    assert rc == 1
    status = json.loads((tmp_path / "out" / "stages.json").read_text())
    assert [r["status"] for r in status["stages"]] == ["ok", "timeout", "skipped", "ok"]
    timed_out = status["stages"][1]
    assert 2 <= timed_out["seconds"] < 2 + 2 * command.KILL_GRACE_S and "working" in timed_out["summary"]
    assert status["stages"][2]["summary"] == "no CUDA"
    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        names = tar.getnames()
        assert "out/partial.txt" in names and "out/stages.json" in names
        assert tar.extractfile("out/partial.txt").read() == b"half"


def test_a_failed_preflight_stops_the_kit(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "commands", lambda stage, layout, device, tiny: [
        [sys.executable, "-c", "import sys; print('preflight: FAILED: events: broken'); sys.exit(1)"]])
    (tmp_path / "out").mkdir()
    kit = command.Kit(stages.Layout(tmp_path / "out"), tmp_path / "out.tar.gz", "cuda", tiny=False)
    assert kit.run([_fake_stage(StageName.PREFLIGHT, 30), _fake_stage(StageName.TESTS, 30)]) == 1
    records = json.loads((tmp_path / "out" / "stages.json").read_text())["stages"]
    assert records[0]["summary"] == "preflight: FAILED: events: broken"
    assert records[1]["status"] == "not run"


def test_the_archive_stays_under_its_limit_by_leaving_out_the_largest_files(tmp_path):
    root = tmp_path / "out"
    (root / "profile").mkdir(parents=True)
    (root / "profile" / "trace.json").write_bytes(os.urandom(300_000))  # incompressible
    (root / "report.md").write_text("# report\n" * 100)
    size, left_out = archive.write_archive(root, tmp_path / "a.tar.gz", max_bytes=100_000)
    assert size == (tmp_path / "a.tar.gz").stat().st_size <= 100_000
    assert left_out == ["profile/trace.json"]
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert tar.extractfile(f"out/{archive.ARCHIVE_NOTE}").read().startswith(b"profile/trace.json")
        assert "out/report.md" in tar.getnames()


def test_the_cuda_tests_stage_selects_every_cuda_and_torchvision_test_file():
    files = {os.path.basename(f) for f in stages.marked_test_files()}
    assert {"test_timing.py", "test_counters.py", "test_profile.py", "test_data.py"} <= files


def test_every_cuda_api_the_kit_lists_resolves_in_this_torch_except_nvml_where_it_is_absent():
    """Here (torch 2.14.1) every torch name resolves; the GPU machine's preflight records the same for 2.11.
    NVML, Triton and torchao are optional packages that this machine may lack."""
    from tools.gpuref import torch_api

    results = torch_api.check_all()
    assert set(torch_api.CUDA_APIS) <= set(results)
    missing = [n for n, ok in results.items() if not ok and not n.startswith(("pynvml.", "triton.", "torchao."))]
    assert missing == []
    assert not torch_api.resolves("torch.cuda.no_such_helper") and not torch_api.resolves("no_such_module.x")


def test_rerunning_some_stages_keeps_the_other_stages_records_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(command, "commands", lambda stage, layout, device, tiny: [
        [sys.executable, "-c", f"print('{stage.name.value} done')"]])
    monkeypatch.setattr(command.Kit, "_has_cuda", lambda self: False)
    (tmp_path / "out").mkdir()
    first = [_fake_stage(StageName.PREFLIGHT, 30), _fake_stage(StageName.GPU_RUN, 30), _fake_stage(StageName.REPORT, 30)]
    assert command.Kit(stages.Layout(tmp_path / "out"), tmp_path / "a.tar.gz", "cpu", False).run(first) == 0
    assert command.Kit(stages.Layout(tmp_path / "out"), tmp_path / "a.tar.gz", "cpu", False).run([first[1]]) == 0
    records = json.loads((tmp_path / "out" / "stages.json").read_text())["stages"]
    assert [r["stage"] for r in records] == ["preflight", "gpu-run", "report"]
    assert all(r["status"] == "ok" for r in records)


def test_timer_check_times_back_to_back_steps_per_do_bench_call():
    """The block reading: a launch-bound step timed k to a do_bench call, divided by k."""
    from tools.gpuref import timercheck

    assert timercheck.block_steps(0.027) == 1  # the large MLP: one step already outlasts the target
    assert timercheck.block_steps(0.001043) == 20  # the FashionMNIST net at b64 on the first H100
    assert timercheck.block_steps(0.0) == 1
    calls = []

    def timer(fn):  # stands in for do_bench: runs the timed callable three times, reports 6 ms per call
        for _ in range(3):
            fn()
        return 0.006

    assert timercheck.block_median_s(lambda: calls.append(1), 4, timer=timer) == pytest.approx(0.0015)
    assert len(calls) == 12
