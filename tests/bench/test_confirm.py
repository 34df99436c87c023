"""compare --confirm's choices without measuring: which cases it re-measures (``--confirm-cases``), on which CPUs
(both workers on the same ones, as many as the stored runs' threads), and its flag's bad values. The interleaved
measurement itself: tests/bench/test_noise_e2e.py."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from bench.commands import compare as confirm
from bench.cli import main
from bench.gate import ab

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no sched_getaffinity here")


@needs_affinity
def test_workers_share_one_cpu_by_default_and_as_many_as_asked_up_to_all():
    allowed = sorted(os.sched_getaffinity(0))
    assert ab.shared_cpu() == str(allowed[-1])
    assert ab.shared_cpu(len(allowed)) == ",".join(map(str, allowed))
    assert ab.shared_cpu(10 * len(allowed)) == ",".join(map(str, allowed))


def test_threads_used_is_what_the_stored_run_timed_at():
    summary = pd.DataFrame({"case_id": ["a", "a", "b", "c"], "phase": ["step", "forward", "step", "step"],
                            "threads": [0, 0, 1, 0], "torch_threads": [2, 2, 1, None]})
    assert confirm.threads_used(summary, ["a"]) == 2  # threads 0: torch's default, which the run recorded as 2
    assert confirm.threads_used(summary, ["b"]) == 1
    assert confirm.threads_used(summary, ["c"]) == 1  # not recorded: one
    assert confirm.threads_used(summary.drop(columns="torch_threads"), ["a", "b"]) == 1


def _table(ratios: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(len(ratios))], "phase": "step", "ratio": ratios,
                         "relative": ratios, "verdict": "inconclusive"})


def test_confirm_cases_zero_takes_every_case_the_largest_moves_first():
    table = _table([1.0, 1.30, 0.90, 1.02, 1.08, 0.50, 1.20, 1.06, 0.93, 1.11])
    moved = [r for r in table["ratio"] if abs(r - 1) >= 0.05 or abs(1 / r - 1) >= 0.05]
    by_size = sorted(moved, key=lambda r: -abs(r - 1 if r >= 1 else 1 / r - 1))
    assert confirm.cases_to_confirm(table)["ratio"].tolist() == by_size[:confirm.MAX_CASES]
    assert confirm.cases_to_confirm(table, 2)["ratio"].tolist() == by_size[:2]
    every = confirm.cases_to_confirm(table, 0)
    assert sorted(every["case_id"]) == sorted(table["case_id"]) and every["ratio"].iloc[0] == 0.50


@pytest.mark.parametrize("value", ["-1", "all", "2.5"])
def test_a_bad_confirm_cases_is_one_line_and_exit_2(value, capsys):
    assert main(["compare", "nowhere-a", "nowhere-b", "--confirm", "--confirm-cases", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--confirm-cases" in err[0], err


@pytest.mark.parametrize("value", ["4", "many", "0"])
def test_a_bad_confirm_rounds_is_one_line_and_exit_2(value, capsys):
    assert main(["compare", "nowhere-a", "nowhere-b", "--confirm", "--confirm-rounds", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--confirm-rounds" in err[0], err


def test_confirm_rounds_defaults_to_adaptive_rounds_and_reaches_the_plan(monkeypatch):
    import argparse

    from bench.report import compare_flags

    parser = argparse.ArgumentParser()
    compare_flags.add_arguments(parser)
    assert parser.parse_args(["a", "b"]).confirm_rounds is None  # adaptive rounds (bench.analysis.sequential)
    assert parser.parse_args(["a", "b", "--confirm-rounds", "80"]).confirm_rounds == 80
    plans = []

    class Stop(Exception):
        pass

    def fake_worker(name, tree, cpus):  # the plan is built before any worker starts: stop at the first
        raise Stop

    monkeypatch.setattr(ab, "TimingPlan", lambda *a: plans.append(a) or Stop)
    monkeypatch.setattr(ab, "ProcessWorker", fake_worker)
    with pytest.raises(Stop):
        confirm.interleaved([{}], [{}], ".", ".", 1, 80)
    assert plans[0][0] == 80


# --------------------------------------------------------------------------- a user's model, as each run recorded it


@pytest.fixture(scope="module")
def edited_runs(tmp_path_factory):
    """Runs A (hidden 16) and B (hidden 1024: 64x the matmul FLOPs, deliberately far beyond the noise) of a nested
    ``nn.Sequential`` given as a relative ``models/edited.py:make``; then the file is edited once more (hidden 4), so
    that only the runs' own copies hold what they measured."""
    from edited_model import measure_run, write_model  # tests/bench/ is on sys.path

    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("confirm-edited")
    project = root / "project"
    try:
        write_model(project, 16)
        a = measure_run(project, root / "A", monkeypatch, batch=64, in_features=64, out_features=64)
        write_model(project, 1024)
        b = measure_run(project, root / "B", monkeypatch, batch=64, in_features=64, out_features=64)
        write_model(project, 4)
    finally:
        monkeypatch.undo()
    return root, a, b


def _confirm(a, b, monkeypatch, where) -> str:
    from bench import runs as run_record
    from bench.report import compare

    monkeypatch.chdir(where)  # any working folder: the relative path resolves in the run's, not here nor in mlpbench
    monkeypatch.setattr(confirm, "CONFIRM_BLOCK_BUDGET", 0)  # 5 blocks a side: the 64x change needs no more
    run_a, run_b = run_record.load_run(a), run_record.load_run(b)
    table = compare.compare(run_a, run_b).table
    return "\n".join(confirm.confirm_lines(run_a, run_b, table, rounds=5))


@pytest.mark.e2e  # two workers import torch and time 5 blocks a side: ~25 s on the loaded 2-core box
def test_confirm_measures_each_runs_own_model_from_any_folder(edited_runs, monkeypatch):
    """The issue's three failures at once: a model change (both sides were rebuilt from the current tree), a relative
    ``--model`` path (resolved in the mlpbench tree) and a nested Sequential (the analytic ``mlp.flops``)."""
    import hashlib

    from bench.runs.recipe import SOURCE_DIR

    root, a, b = edited_runs
    elsewhere = root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    text = _confirm(a, b, monkeypatch, elsewhere)
    shas = [next((run / SOURCE_DIR).iterdir()).name for run in (a, b)]
    for side, sha, run in zip("AB", shas, (a, b)):
        copy = run / SOURCE_DIR / sha / "edited.py"
        assert hashlib.sha256(copy.read_bytes()).hexdigest()[:len(sha)] == sha
        assert f"Side {side}: models/edited.py:make from its run's copy of its source ({sha[:8]}..)" in text, text
    row = next(line for line in text.splitlines() if line.startswith("| models/edited.py:make"))
    assert row.rstrip().endswith("| slower |"), text


def test_confirm_refuses_a_side_whose_measured_source_is_gone(edited_runs, tmp_path, monkeypatch):
    import shutil

    from bench.runs.recipe import SOURCE_DIR

    root, a, b = edited_runs
    lost = tmp_path / "A-without-copy"
    shutil.copytree(a, lost)
    sha = next((lost / SOURCE_DIR).iterdir()).name
    shutil.rmtree(lost / SOURCE_DIR)  # as a run made before mlpbench kept a copy; the file has been edited since
    text = _confirm(lost, b, monkeypatch, tmp_path)
    assert text.startswith("Confirm: not re-measured: side A rebuilt models/edited.py:make") and \
        f"but its run measured {sha[:8]}.." in text, text


def test_the_cpu_clock_leaves_out_time_the_thread_does_not_run_and_only_on_one_thread():
    """Reference: ``time.sleep`` (the thread runs nothing for a known time, as when another job holds the core)."""
    import time

    import torch

    from bench.instruments import clocks

    cpu = torch.device("cpu")
    with clocks.torch_threads(1):
        clock = clocks.clock_for(cpu, cpu_time=True)
        assert isinstance(clock, clocks.ThreadCpuClock)
        assert clocks.time_block(lambda i: time.sleep(0.02), 3, clock) < 0.005
        assert clocks.time_block(lambda i: time.sleep(0.02), 3, clocks.clock_for(cpu)) >= 0.02
    with clocks.torch_threads(2):  # more threads: the process's CPU time, every thread's summed
        assert type(clocks.clock_for(cpu, cpu_time=True)) is clocks.ProcessCpuClock
    assert type(clocks.clock_for(cpu)) is clocks.Clock
