"""``--clock wall|cpu`` (issue 49): what a block's seconds are, both clocks in samples.csv, the clock in meta.json,
compare's refusal of two clocks, and the gate's adaptive rounds reaching their plan.

The reference is ``time.sleep``: a sleeping thread runs nothing, so its CPU time leaves the sleep out while the wall
clock holds all of it (the step of ``sleeping_steps`` sleeps 40 ms over ~0.1 ms of real work)."""

from __future__ import annotations

import argparse
import itertools
import math

import pandas as pd
import pytest

from bench.case.cases import Case
from bench.cli import main
from bench.gate import ab
from bench.analysis.sequential import Design
from bench.engine.runner import run_sweep
from bench.runs import load_run
from bench.instruments.timing import TimingConfig

TINY = Case(width=16, depth=1, batch=4, threads=1)
SLEEPY = dict(repeats=3, warmup_s=0.0, min_block_s=0.005)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same sleeping one-thread case run on each clock."""
    from sleeping_step import SLEEPS, sleeping_build  # tests/bench/ is on sys.path

    from bench.instruments import timing

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(timing, "build_step", sleeping_build(timing.build_step))
    root = tmp_path_factory.mktemp("clocks")
    try:
        for clock in ("wall", "cpu"):
            run_sweep([TINY], root / clock, TimingConfig(**SLEEPY, clock=clock), progress=False, limits=False)
    finally:
        monkeypatch.undo()
    return root, SLEEPS


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_a_run_s_seconds_are_its_clock_and_samples_csv_keeps_both(two_runs, clock):
    root, sleeps = two_runs
    run = load_run(root / clock)
    assert run.meta.timing_config["clock"] == clock
    rows = run.samples[run.samples["phase"].isin(["step", "inference"])]
    assert len(rows) == 2 * SLEEPY["repeats"]
    assert (rows["seconds"] == rows[f"{clock}_s"]).all()
    sleep = rows["phase"].map({"step": sleeps.step_s, "inference": sleeps.forward_s})
    assert (rows["wall_s"] >= sleep).all()  # time.sleep never returns early
    assert (rows["cpu_s"] < rows["wall_s"] - 0.75 * sleep).all()  # the thread's CPU time leaves the sleep out
    phases = run.samples[run.samples["phase"] == "forward"]  # timed on the run's clock only
    assert phases["wall_s"].isna().all() and phases["cpu_s"].isna().all()
    step = run.summary[run.summary["phase"] == "step"].iloc[0]
    assert step["median_s"] == pytest.approx(float(rows.loc[rows["phase"] == "step", "seconds"].median()))


def test_compare_refuses_two_runs_on_different_clocks_in_one_line(two_runs, capsys):
    root, _ = two_runs
    assert main(["compare", str(root / "wall"), str(root / "cpu")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wall clock" in err[0] and "cpu clock" in err[0], err


def test_compare_names_the_clock_of_two_runs_on_the_same_one(two_runs, capsys):
    root, _ = two_runs
    assert main(["compare", str(root / "cpu"), str(root / "cpu")]) == 0
    assert "Both runs timed on the cpu clock" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--clock", "cpu", "--device", "cuda", "--width", "8"], "--clock cpu times CPU work"),
    (["--clock", "gpu"], "--clock"),
])
def test_a_bad_clock_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    assert main(["run", *argv, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert words in err[-1], err


def test_a_resumed_run_keeps_its_clock(two_runs, capsys):
    root, _ = two_runs
    assert main(["run", "--resume", str(root / "cpu"), "--clock", "wall", "--no-progress"]) == 2
    assert "timed on the cpu clock" in capsys.readouterr().err


def test_the_timing_config_refuses_an_unknown_clock():
    with pytest.raises(ValueError, match="clock"):
        TimingConfig(clock="cycles")


# --------------------------------------------------------------------------- the gate's adaptive rounds


class FakeWorker:
    """Answers "time" with B = A x ``ratio`` x exp(noise): the noise is a fixed sequence (``spread`` 0: none)."""

    def __init__(self, name: str, ratio: float, spread: float):
        self.name, self.ratio, self.spread, self.calls = name, ratio, spread, 0
        self._noise = itertools.cycle([0.0, 1.0, -1.0, 0.5, -0.5])

    def send(self, message):
        self._message = message

    def receive(self):
        self.calls += 1
        factor = 1.0 if self.name == "A" else self.ratio * math.exp(self.spread * next(self._noise))
        return {"ok": True, "samples_s": [1e-3 * factor]}

    def close(self):
        pass


def _adaptive(spread: float, max_s: float = math.inf, clock=None):
    workers = {"A": FakeWorker("A", 1.1, spread), "B": FakeWorker("B", 1.1, spread)}
    plan = ab.TimingPlan(ab.ADAPTIVE_MAX_ROUNDS, 0.1, 0.0, "cpu", 0.05, max_s)
    kwargs = {"clock": clock} if clock else {}
    return ab.interleaved_samples(workers, [0], {0: 1}, plan, 0.01, **kwargs)


def test_adaptive_rounds_stop_at_the_first_look_whose_interval_is_precise():
    """Reference: ``Design``'s looks and interval, computed here on the same numbers. A steady case stops at the
    first look (10 rounds); a noisy one runs to the first look whose 99% repeated interval is within 5%."""
    design = Design()
    steady = _adaptive(0.0)
    assert len(steady["A"][0]) == len(steady["B"][0]) == design.looks[0]
    noisy = _adaptive(0.1)
    n = len(noisy["B"][0])
    assert n in design.looks and n > design.looks[0]
    assert design.precise(design.interval(noisy["A"][0], noisy["B"][0]))
    before = design.looks[design.looks.index(n) - 1]
    assert not design.precise(design.interval(noisy["A"][0][:before], noisy["B"][0][:before]))


def test_adaptive_rounds_end_at_the_first_look_after_the_time_budget():
    ticks = itertools.count()
    out = _adaptive(0.3, max_s=0.5, clock=lambda: next(ticks))  # every reading a second later
    assert len(out["B"][0]) == Design().looks[0]


def _gate_args(*argv):
    from bench.commands.check import add_measure_arguments

    parser = argparse.ArgumentParser()
    add_measure_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_gate_s_flags_reach_its_timing_plan():
    from bench.commands.check import measure_options

    plan = measure_options(_gate_args())[0]
    assert (plan.rounds, plan.precision, plan.max_s) == (ab.ADAPTIVE_MAX_ROUNDS, 0.05, 120.0)
    plan = measure_options(_gate_args("--precision", "0.02", "--max-timing-s", "30"))[0]
    assert (plan.precision, plan.max_s) == (0.02, 30.0) and plan.sequential(0.01).precision == 0.02
    plan = measure_options(_gate_args("--rounds", "7"))[0]
    assert (plan.rounds, plan.precision, plan.sequential(0.01)) == (7, 0.0, None)
    assert plan.fixed().rounds == 20 and ab.TimingPlan(200, precision=0.05).fixed().precision == 0.0


def test_the_advice_quotes_the_issue_s_measured_table():
    from bench.report import change

    for figure in ("17.5%", "8.3%", "1.13x", "1.62x", "5.7%", "AMD EPYC", "--clock cpu"):
        assert figure in change.CPU_CLOCK_ADVICE


def test_samples_csv_reads_back_with_both_clocks(two_runs):
    root, _ = two_runs
    frame = pd.read_csv(root / "cpu" / "samples.csv")
    assert {"seconds", "wall_s", "cpu_s"} <= set(frame.columns)
