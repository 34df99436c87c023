"""compare --confirm's choices without measuring: which cases it re-measures (``--confirm-cases``), on which CPUs
(both workers on the same ones, as many as the stored runs' threads), and its flag's bad values. The interleaved
measurement itself: tests/bench/test_noise_e2e.py."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from bench import confirm
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


def test_confirm_rounds_defaults_to_the_gate_s_blocks_and_reaches_the_plan(monkeypatch):
    import argparse

    from bench.report import compare_flags

    parser = argparse.ArgumentParser()
    compare_flags.add_arguments(parser)
    assert parser.parse_args(["a", "b"]).confirm_rounds == confirm.CONFIRM_ROUNDS == ab.TimingPlan().rounds
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
