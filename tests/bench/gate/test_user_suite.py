"""``mlpbench check --suite FILE``: the gate on a user's own cases, in a throw-away git repository of theirs.

The references are a real git repository (commits, a worktree at a ref) and the user's model itself: the
second commit gives it an extra ``nn.Linear``, whose parameters and matmul FLOPs are known by hand. The fast
tests run the counter layer in-process against a baseline that ``--write-baseline`` wrote; the e2e test runs
``python -m bench check --suite ... --against HEAD~1`` as the user would, from inside their repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.case.cases import Case
from bench.cli import main
from bench.errors import EnvironmentProblem
from bench.gate import ab
from bench.gate import instructions as gi
from bench.gate import worker as gate_worker
from git_cmd import git  # tests/bench/gate/git_cmd.py
from user_model import BATCH, DEPTH, MODEL, SLOWER, SUITE, WIDTH, user_repository  # tests/bench/gate/

REPO = Path(__file__).resolve().parents[3]
FAST_TIMING = ["--rounds", "5", "--block-s", "0.002", "--warmup-s", "0"]
HAVE_VALGRIND = all(shutil.which(t) for t in gi.VALGRIND_TOOLS)


@pytest.fixture
def user_repo(tmp_path) -> Path:
    """The user's repository: model.py and sweeps/ci.toml, one commit; nothing of mlpbench in it."""
    return user_repository(tmp_path)


def _check(*args: str) -> int:
    return main(["check", *args])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- fast: counters vs a baseline


def test_counters_pass_against_their_own_baseline_and_fail_on_an_extra_layer(user_repo, tmp_path, monkeypatch,
                                                                             capsys):
    """Run from a sub-folder of the repository, as CI may: the model path is spelled from the repository root."""
    monkeypatch.chdir(user_repo / "sweeps")
    base = tmp_path / "gate.json"
    assert _check("--suite", "ci.toml", "--write-baseline", str(base), "--layers", "counters") == 0
    data = json.loads(base.read_text())
    [case] = data["cases"]
    assert case["case"]["model"] == "model.py:make" and data["suite"] == "sweeps/ci.toml"
    # the user's model is its own case, not the plain net of the same shape
    plain = Case(width=WIDTH, depth=DEPTH, batch=BATCH, threads=1)
    assert case["case_id"] != plain.case_id and case["label"] != plain.label
    assert case["label"].startswith("model.py:make(")  # the factory's call: model(args)
    # parameters by hand: depth x (w*w + w)
    assert case["counters"]["parameters"] == DEPTH * (WIDTH * WIDTH + WIDTH)

    capsys.readouterr()
    assert _check("--suite", "ci.toml", "--baseline", str(base), "--layers", "counters") == 0
    assert "PASS" in capsys.readouterr().out

    (user_repo / "model.py").write_text(SLOWER)
    report = tmp_path / "r.json"
    assert _check("--suite", "ci.toml", "--baseline", str(base), "--layers", "counters", "--json", str(report)) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "| parameters |" in out and case["label"] in out
    [row] = json.loads(report.read_text())["counters"]
    changed = {c["metric"]: (c["before"], c["after"]) for c in row["changes"]}
    assert changed["parameters"] == (DEPTH * (WIDTH * WIDTH + WIDTH), (DEPTH + 1) * (WIDTH * WIDTH + WIDTH))
    # forward: one more (batch x w) @ (w x w) matmul, 2 FLOPs per multiply-add
    before, after = changed["forward.matmul_flops"]
    assert after - before == 2 * BATCH * WIDTH * WIDTH


def test_a_changed_suite_is_not_compared_with_a_stale_baseline(user_repo, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(user_repo)
    base = tmp_path / "gate.json"
    assert _check("--suite", "sweeps/ci.toml", "--write-baseline", str(base), "--layers", "counters") == 0
    (user_repo / "sweeps" / "ci.toml").write_text(SUITE.replace(f"batch = {BATCH}", "batch = 4"))
    capsys.readouterr()
    assert _check("--suite", "sweeps/ci.toml", "--baseline", str(base), "--layers", "counters") == 2
    err = _one_line_error(capsys)
    assert "not the baseline's" in err and "--write-baseline" in err


# --------------------------------------------------------------------------- fast: bad input, one line, exit 2


def test_against_outside_a_git_repository_is_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "plain"
    (folder / "sweeps").mkdir(parents=True)
    (folder / "model.py").write_text(MODEL)
    (folder / "sweeps" / "ci.toml").write_text(SUITE)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # tmp_path may lie inside some repository
    assert _check("--suite", "sweeps/ci.toml", "--against", "HEAD", "--layers", "counters") == 2
    assert "not in a git repository" in _one_line_error(capsys)


def test_a_suite_file_missing_at_the_ref_is_one_line(user_repo, monkeypatch, capsys):
    monkeypatch.chdir(user_repo)
    (user_repo / "sweeps" / "new.toml").write_text(SUITE)
    git(user_repo, "add", ".")
    git(user_repo, "commit", "-q", "-m", "a second suite")
    assert _check("--suite", "sweeps/new.toml", "--against", "HEAD~1", "--layers", "counters") == 2
    err = _one_line_error(capsys)
    assert "HEAD~1" in err and "has no such file" in err
    assert _check("--suite", "sweeps/none.toml", "--against", "HEAD", "--layers", "counters") == 2
    assert "no such sweep file" in _one_line_error(capsys)
    assert _check("--suite", "sweeps/ci.toml", "--against", "no-such-ref", "--layers", "counters") == 2
    assert "not a commit" in _one_line_error(capsys)
    assert len(git(user_repo, "worktree", "list").splitlines()) == 1


def test_without_suite_the_gate_is_mlpbench_own():
    from bench.commands import check as command

    assert [s.row["device"] for s in command.gate_suite()] == ["cpu"] * 4
    assert not any(s.row["model"] for s in command.gate_suite())


# --------------------------------------------------------------------------- fast: the workers


def test_the_gate_worker_builds_the_step_as_the_runner_does():
    """optimizer_args and the step knobs reach the gate's step; the batches are stored as the step reads them."""
    case = Case(width=16, depth=1, batch=4, threads=1, optimizer="adamw", optimizer_args="lr=0.0005,weight_decay=0.2",
                dtype="bf16", param_dtype="compute")
    suite = gate_worker.Suite([case.to_row()], warmup_s=0)
    step, pool = suite.steps[0], suite.pools[0]
    group = step.optimizer.param_groups[0]
    assert isinstance(step.optimizer, torch.optim.AdamW)
    assert group["lr"] == 0.0005 and group["weight_decay"] == 0.2
    assert {p.dtype for p in step.model.parameters()} == {torch.bfloat16}
    assert pool[0][0].dtype == torch.bfloat16
    assert suite.info()["model_files"] == [""]


def test_a_side_that_imported_the_other_checkout_model_is_refused(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    trees = {"A": ab.Tree(REPO, ref), "B": ab.Tree(REPO, work)}
    info = {"mlp_file": str(REPO / "mlp" / "__init__.py"), "labels": ["m"], "model_files": [str(work / "model.py")]}
    ab.check_imports("B", trees["B"], info, trees)
    with pytest.raises(EnvironmentProblem, match="side A imported the model of m"):
        ab.check_imports("A", trees["A"], info, trees)


# --------------------------------------------------------------------------- e2e: the user's own CI gate


def _run_check(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # mlpbench as installed; the cwd is the user's repository
    return subprocess.run([sys.executable, "-m", "bench", "check", "--suite", "sweeps/ci.toml", *args], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.e2e  # two two-process Callgrind runs: minutes on a loaded 2-core machine; `make test-e2e`
@pytest.mark.skipif(not HAVE_VALGRIND, reason="Valgrind (valgrind, callgrind_*) is not installed")
def test_the_instruction_layer_fails_an_extra_layer_and_an_a_a_pair_passes(user_repo, tmp_path):
    instr = ["--instr-steps", "2", "--instr-warmup", "2"]
    started = time.perf_counter()
    clean = _run_check(user_repo, "--against", "HEAD", "--layers", "counters,timing,instructions",
                       "--timing-advisory", *FAST_TIMING, *instr, "--json", str(tmp_path / "aa.json"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    aa = json.loads((tmp_path / "aa.json").read_text())
    assert aa["counter_regressions"] == 0 and len(aa["timing"]) == 1
    assert not any(r["regressed"] for r in aa["instructions"]["rows"])
    assert "(the same source)" in clean.stdout

    (user_repo / "model.py").write_text(SLOWER)
    git(user_repo, "commit", "-q", "-am", "an extra layer")
    slower = _run_check(user_repo, "--against", "HEAD~1", "--layers", "instructions", *instr,
                        "--json", str(tmp_path / "ab.json"))
    print(f"e2e: {time.perf_counter() - started:.0f} s for both runs")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    rows = json.loads((tmp_path / "ab.json").read_text())["instructions"]["rows"]
    label = rows[0]["label"]
    assert label.startswith("model.py:make(width=32)") and f"| {label} |" in slower.stdout
    step = next(r for r in rows if r["phase"] == "step")
    assert step["regressed"] and step["ratio"] > 1
    print("e2e failing case:", [(r["phase"], round(r["ratio"] - 1, 4)) for r in rows])
    assert len(git(user_repo, "worktree", "list").splitlines()) == 1
