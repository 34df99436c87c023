"""The regression gate: exit codes, the counter layer's verdicts, the timing test, worktree hygiene.

Timing numbers are never asserted (the machine is noisy): the statistics are
checked on synthetic samples with known shifts, and end-to-end runs are checked
for their deterministic parts (counters, exit codes, clean-up).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.gate import ab as gate_ab
from bench.commands import check as gate
from bench.case.cases import Case
from bench.cli import main
from bench.instruments.counters import Change
from bench.gate.report import CounterResult, GateReport, TimingResult, render_markdown
from bench.analysis.interleaved import compare_samples
from bench.analysis.verdict import Verdict
from git_cmd import git  # tests/bench/gate/git_cmd.py

REPO = Path(__file__).resolve().parents[3]
FAST_TIMING = ["--rounds", "5", "--block-s", "0.002", "--warmup-s", "0"]  # exercises the path, measures nothing


@pytest.fixture
def tiny_suite(monkeypatch):
    """Two small cases instead of the CI suite, so each in-process gate run takes about a second."""
    suite = [gate.SuiteCase(Case(network="teaching", batch=8, threads=1).to_row(), True),
             gate.SuiteCase(Case(width=16, depth=1, batch=4, threads=1).to_row(), False)]
    monkeypatch.setattr(gate, "gate_suite", lambda device="cpu": suite)
    return suite


@pytest.fixture
def baseline(tmp_path, tiny_suite) -> Path:
    path = tmp_path / "gate.json"
    assert main(["check", "--write-baseline", str(path), *FAST_TIMING]) == 0
    return path


def _check(*args: str) -> int:
    return main(["check", *args])


# --------------------------------------------------------------------------- layer 1 through the CLI


def test_unchanged_code_passes_the_counter_gate(baseline, capsys):
    capsys.readouterr()
    assert _check("--baseline", str(baseline), "--layers", "counters") == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "are identical" in out


def test_an_injected_extra_op_fails_the_counter_gate_every_time(baseline, tmp_path, capsys):
    for attempt in range(2):  # deterministic: the same verdict and the same diff each time
        report = tmp_path / f"report{attempt}.json"
        assert _check("--baseline", str(baseline), "--layers", "counters", "--inject-regression", "extra-op",
                      "--json", str(report)) == 1
    first, second = (json.loads((tmp_path / f"report{i}.json").read_text()) for i in range(2))
    assert first["counters"] == second["counters"]
    teaching = first["counters"][0]
    changed = {c["metric"]: (c["before"], c["after"]) for c in teaching["changes"]}
    forward_before, forward_after = changed["forward.aten_ops"]
    assert forward_after == forward_before + 1
    assert ["forward", "aten.mul.Tensor", 0, 1] in teaching["op_changes"]
    out = capsys.readouterr().out
    assert "| forward.aten_ops |" in out and "**regression**" in out and "FAIL" in out


def test_a_decrease_is_reported_and_passes(baseline, capsys):
    data = json.loads(baseline.read_text())
    phases = data["cases"][0]["counters"]["phases"]
    phases["forward"]["aten_ops"] += 3  # the baseline did more work than the code does now
    baseline.write_text(json.dumps(data))
    capsys.readouterr()
    assert _check("--baseline", str(baseline), "--layers", "counters") == 0
    out = capsys.readouterr().out
    assert "| forward.aten_ops |" in out and "improvement" in out


def test_a_baseline_from_another_torch_is_an_environment_error(baseline, capsys):
    data = json.loads(baseline.read_text())
    data["counter_env"]["torch"] = "2.11.0"
    baseline.write_text(json.dumps(data))
    assert _check("--baseline", str(baseline), "--layers", "counters") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch 2.11.0" in err and "not comparable" in err
    assert _check("--baseline", str(baseline), "--layers", "counters", "--on-env-mismatch", "skip") == 0
    assert "Skipped:" in capsys.readouterr().out


def test_timing_against_a_baseline_from_another_host_is_an_environment_error(baseline, capsys):
    data = json.loads(baseline.read_text())
    data["env"]["hostname"] = "elsewhere"
    baseline.write_text(json.dumps(data))
    assert _check("--baseline", str(baseline), "--layers", "timing") == 2
    assert "hostname elsewhere" in capsys.readouterr().err


def test_timing_against_a_baseline_runs_and_reports_every_timed_case(baseline, tmp_path):
    report = tmp_path / "r.json"
    code = _check("--baseline", str(baseline), "--layers", "timing", *FAST_TIMING, "--json", str(report))
    assert code in (0, 1)  # the verdict depends on the machine's noise; the shape does not
    rows = json.loads(report.read_text())["timing"]
    assert [r["label"] for r in rows] == [Case(network="teaching", batch=8, threads=1).label]
    assert rows[0]["n_a"] == rows[0]["n_b"] == 5


@pytest.mark.parametrize("args, message", [
    ([], "say what to compare"),
    (["--against", "HEAD", "--layers", "speed"], "--layers"),
    (["--against", "HEAD", "--inject-regression", "slow"], "--inject-regression"),
    (["--baseline", "/nonexistent/gate.json"], "no baseline"),
    (["--write-baseline", "x.json", "--against", "HEAD"], "--write-baseline"),
    (["--against", "no-such-ref-xyz", "--layers", "counters"], "not a commit"),
    (["--against", "HEAD", "--rounds", "0"], "--rounds"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys):
    assert _check(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# --------------------------------------------------------------------------- layer 2 statistics


def _noisy(n: int, median_s: float, spread: float, seed: int) -> np.ndarray:
    return median_s * np.exp(np.random.default_rng(seed).normal(0.0, spread, n))


def test_the_same_distribution_passes():
    result = compare_samples(_noisy(20, 1e-3, 0.1, 1), _noisy(20, 1e-3, 0.1, 2))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.ci_low <= 1 <= result.ci_high


def test_a_clear_slowdown_is_a_regression_and_a_speedup_an_improvement():
    a = _noisy(20, 1e-3, 0.05, 1)
    slower = compare_samples(a, _noisy(20, 1.3e-3, 0.05, 2))
    assert slower.verdict is Verdict.SLOWER
    assert slower.ratio == pytest.approx(np.median(_noisy(20, 1.3e-3, 0.05, 2)) / np.median(a))
    assert slower.ci_low > 1 and slower.p_slower < 0.01
    assert compare_samples(a, _noisy(20, 0.7e-3, 0.05, 2)).verdict is Verdict.FASTER


def test_a_significant_but_small_slowdown_is_below_the_minimum_effect():
    a = _noisy(40, 1e-3, 0.005, 1)
    result = compare_samples(a, a * 1.02)
    assert result.p_slower < 0.01 and result.ci_low > 1  # significant ...
    assert result.verdict is Verdict.INCONCLUSIVE  # ... but 2% is below the 5% that counts


def test_pairing_cancels_drift_that_both_sides_share():
    drift = np.linspace(1.0, 3.0, 20)  # the machine slows threefold during the run
    rng = np.random.default_rng(0)
    a = 1e-3 * drift * np.exp(rng.normal(0, 0.02, 20))
    b = 1.2e-3 * drift * np.exp(rng.normal(0, 0.02, 20))
    unpaired, paired = compare_samples(a, b), compare_samples(a, b, paired=True)
    assert unpaired.verdict is Verdict.INCONCLUSIVE  # drift swamps a 20% slowdown ...
    assert paired.verdict is Verdict.SLOWER  # ... unless the back-to-back blocks are compared as pairs
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low


def test_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="at least"):
        compare_samples([1.0] * 3, [1.0] * 3)


# --------------------------------------------------------------------------- report


def test_markdown_report_reads_as_tables():
    comparison = compare_samples(_noisy(20, 1e-3, 0.05, 1), _noisy(20, 1.3e-3, 0.05, 2))
    report = GateReport(
        title="against HEAD",
        counters=[CounterResult("teaching b64", "abc", [Change("forward.aten_ops", 14, 15)],
                                [("forward", "aten.mul.Tensor", 0, 1)], 24)],
        timing=[TimingResult("teaching b64", "abc", 10, comparison)], timing_advisory=True)
    text = render_markdown(report)
    assert report.exit_code == 1  # counters fail; timing is advisory
    assert "| teaching b64 | forward.aten_ops | 14 | 15 | +1 (+7.1%) | **regression** |" in text
    assert "`aten.mul.Tensor` 0 → 1" in text
    assert "(advisory: never fails the gate)" in text
    assert f"| teaching b64 | {comparison.median_a_s * 1e3:.3f} ms | {comparison.median_b_s * 1e3:.3f} ms |" in text
    report.counters = []
    assert report.exit_code == 0


# --------------------------------------------------------------------------- A/B: worktrees and processes


@pytest.fixture
def source_repo(tmp_path) -> Path:
    """A throwaway git repository holding a copy of this tree's mlp/ and bench/ (a fresh clone, in effect)."""
    repo = tmp_path / "repo"
    for package in ("mlp", "bench"):
        shutil.copytree(REPO / package, repo / package, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "snapshot")
    return repo


def _worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree")]


def test_the_worktree_is_removed_after_ctrl_c(source_repo):
    with pytest.raises(KeyboardInterrupt):
        with gate_ab.worktree(source_repo, "HEAD") as path:
            assert (path / "mlp" / "__init__.py").exists() and len(_worktrees(source_repo)) == 2
            raise KeyboardInterrupt
    assert not path.exists() and len(_worktrees(source_repo)) == 1


def test_sigterm_unwinds_and_stops_the_workers(source_repo, monkeypatch):
    monkeypatch.setattr(gate_ab, "tree_root", lambda: source_repo)
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with gate_ab.workers_for("HEAD") as workers:
            procs = [w._proc for w in workers.values()]
            os.kill(os.getpid(), signal.SIGTERM)  # as a CI timeout would
    assert all(p.poll() is not None for p in procs)
    assert len(_worktrees(source_repo)) == 1
    assert signal.getsignal(signal.SIGTERM) is handler_before


@pytest.mark.e2e  # a worktree and two interleaved measurements: ~23 s; `make test-e2e` (its own .ci/run step) runs it
def test_against_a_ref_measures_both_trees_and_catches_the_extra_op(source_repo, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    report = tmp_path / "ab.json"
    done = subprocess.run([sys.executable, "-m", "bench", "check", "--against", "HEAD", *FAST_TIMING,
                           "--inject-regression", "extra-op", "--json", str(report)],
                          cwd=source_repo, capture_output=True, text=True,
                          # torch's own inductor cache (made on `import torch._dynamo`) is not the gate's to clean
                          env={**os.environ, "TMPDIR": str(scratch), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")})
    assert done.returncode == 1, done.stderr
    data = json.loads(report.read_text())
    suite = gate.gate_suite()
    assert data["counter_regressions"] == len(suite)  # every case got the extra op on side B only
    assert len(data["timing"]) == sum(s.timed for s in suite)
    assert "A = HEAD, B = this tree" in done.stdout
    assert len(_worktrees(source_repo)) == 1 and list(scratch.iterdir()) == []


def test_a_baseline_comparison_keeps_only_verdicts_that_survive_the_between_run_noise():
    """--baseline compares two runs made at different times (bench.analysis.noise): every case 1.3x slower together is
    the machine; one case 3x slower while the others hold is kept; a load far from the baseline's blocks all."""
    from bench.instruments.env import fingerprint
    from bench.commands.check import between_run_check
    from bench.gate.report import TimingResult

    rng = np.random.default_rng(0)
    base = rng.lognormal(0.0, 0.02, 20) * 1e-3

    def results(factors):
        return [TimingResult(f"case{i}", f"id{i}", 10, compare_samples(base, base * f * rng.lognormal(0, 0.02, 20)))
                for i, f in enumerate(factors)]

    env = {k: v for k, v in fingerprint().items() if k != "load_average_1m"}
    together = results([1.3, 1.3, 1.3])
    assert all(r.comparison.verdict is Verdict.SLOWER for r in together)
    notes = between_run_check(together, {"env": env})
    assert all(r.comparison.verdict is Verdict.INCONCLUSIVE for r in together) and len(notes) == 3
    one = results([3.0, 1.0, 1.0])
    assert between_run_check(one, {"env": env}) == [] and one[0].comparison.verdict is Verdict.SLOWER
    busy = results([3.0, 1.0, 1.0])
    loaded = {**env, "load_average_1m": os.getloadavg()[0] + 10.0}
    notes = between_run_check(busy, {"env": loaded})
    assert busy[0].comparison.verdict is Verdict.INCONCLUSIVE and "machine states differ: load" in notes[0]
