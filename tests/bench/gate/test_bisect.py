"""``mlpbench bisect GOOD BAD``: the first bad commit by halving, in throw-away git repositories.

The reference for the search is git itself: ``git bisect run`` with a script that reads the same verdict from
each commit (exit 0 good, 1 bad, 125 cannot test) must name the same first bad commit, or the same set of
candidates when skipped commits leave several, and the step counts are bounded by halving. The e2e test runs
the real gate (counters layer) over a user's 16-commit repository whose commit 11 adds a layer, and checks the
counters it reports against a hand count, as tests/bench/gate/test_user_suite.py does.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.commands import bisect as gb
from bench.gate.bisect_report import BAD, GOOD, SKIP, BisectResult, Step
from git_cmd import git  # tests/bench/gate/git_cmd.py
from user_model import BATCH, DEPTH, MODEL, SLOWER, SUITE, WIDTH, parameters, user_repository  # tests/bench/gate/

REPO = Path(__file__).resolve().parents[3]


def _chain(repo: Path, verdicts: list[str], *, merge_at: int | None = None) -> list[str]:
    """One commit per verdict, oldest first; each commit's verdict.txt holds it (good, bad or skip).

    ``merge_at``: commit number ``merge_at`` is a merge of a side branch (two commits off the commit before it,
    carrying that commit's verdict) into the chain, so the history is not a line.
    """
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    shas = []
    for number, verdict in enumerate(verdicts, start=1):
        if merge_at is not None and number == merge_at:
            git(repo, "checkout", "-q", "-b", "side")
            for k in range(2):
                (repo / f"side{k}.txt").write_text(str(k))
                git(repo, "add", ".")
                git(repo, "commit", "-q", "-m", f"side {k}")
            git(repo, "checkout", "-q", "main")
            git(repo, "merge", "-q", "--no-ff", "--no-commit", "side")
        (repo / "verdict.txt").write_text(verdict + "\n")
        (repo / "log.txt").write_text(f"commit {number}\n")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"commit {number}")
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return shas


def _fake_measure(repo: Path, seen: list[str]):
    """A gate stand-in: the verdict the commit's verdict.txt states (a side-branch commit has its base's)."""
    def measure(sha: str) -> Step:
        seen.append(sha)
        verdict = git(repo, "show", f"{sha}:verdict.txt").strip()
        return Step(len(seen), sha, "", verdict, "cannot build" if verdict == SKIP else "", None, "", 0.0)
    return measure


def _git_bisect(repo: Path, good: str, bad: str) -> tuple[str, int]:
    """``git bisect run``'s answer and the number of commits it tested; the repository is left as it was."""
    script = repo.parent / "judge.sh"
    script.write_text('v=$(cat verdict.txt); [ "$v" = good ] && exit 0; [ "$v" = skip ] && exit 125; exit 1\n')
    git(repo, "bisect", "start", bad, good)
    try:
        out = git(repo, "bisect", "run", "sh", str(script))
    except subprocess.CalledProcessError as exc:  # only skipped commits left: git says so and exits non-zero
        out = exc.stdout
    log = git(repo, "bisect", "log")
    git(repo, "bisect", "reset")
    marked = set(re.findall(r"^git bisect (?:good|bad|skip) ([0-9a-f]{40})", log, re.M))
    tested = len(marked - {good, bad})  # some git versions log the start's two marks as such lines too
    return out, tested


def _result(good: str, bad: str, repo: Path) -> BisectResult:
    return BisectResult(str(repo), good, bad, ("counters",), len(git(repo, "rev-list", bad, "--not", good).split()))


@pytest.mark.parametrize("first_bad", [2, 5, 11, 16])
def test_the_search_names_git_bisects_first_bad_commit_in_as_few_steps(tmp_path, first_bad):
    """16 commits, GOOD = commit 1, BAD = commit 16; the gate turns bad at ``first_bad`` and stays bad."""
    repo = tmp_path / "r"
    shas = _chain(repo, [GOOD if n < first_bad else BAD for n in range(1, 17)])
    seen: list[str] = []
    found = gb.search(repo, shas[0], shas[-1], _fake_measure(repo, seen), _result(shas[0], shas[-1], repo))
    out, git_tested = _git_bisect(repo, shas[0], shas[-1])
    assert found.first_bad == shas[first_bad - 1]
    assert f"{shas[first_bad - 1]} is the first bad commit" in out
    assert found.first_bad_subject == f"commit {first_bad}"
    # 15 commits may be the first bad one: 4 halvings, one more when the answer is BAD itself (then measured)
    assert len(seen) == len(set(seen)) <= math.ceil(math.log2(15)) + (first_bad == 16) <= 5
    assert len(seen) <= git_tested + 1
    assert shas[0] not in seen and (shas[-1] in seen) == (first_bad == 16)
    assert found.exit_code == 0 and found.could_be == []


def test_a_bad_that_passes_means_nothing_to_find(tmp_path):
    repo = tmp_path / "r"
    shas = _chain(repo, [GOOD] * 6)
    seen: list[str] = []
    found = gb.search(repo, shas[0], shas[-1], _fake_measure(repo, seen), _result(shas[0], shas[-1], repo))
    assert found.first_bad is None and found.exit_code == 1 and seen[-1] == shas[-1]
    assert "nothing to find" in found.conclusion


def test_a_commit_that_cannot_be_measured_is_skipped_never_bad(tmp_path):
    """Commits 7-9 cannot build; the first bad is 12: the skips cost steps, the answer is git's."""
    repo = tmp_path / "r"
    verdicts = [SKIP if n in (7, 8, 9) else GOOD if n < 12 else BAD for n in range(1, 17)]
    shas = _chain(repo, verdicts)
    seen: list[str] = []
    found = gb.search(repo, shas[0], shas[-1], _fake_measure(repo, seen), _result(shas[0], shas[-1], repo))
    out, _ = _git_bisect(repo, shas[0], shas[-1])
    assert found.first_bad == shas[11] and f"{shas[11]} is the first bad commit" in out
    assert all(s.verdict != BAD for s in found.steps if s.sha in shas[6:9])


def test_skipped_commits_next_to_the_first_bad_leave_the_candidates_git_names(tmp_path):
    """Commits 9 and 10 cannot build and 11 is the first bad: 9, 10 or 11, as git bisect says."""
    repo = tmp_path / "r"
    verdicts = [SKIP if n in (9, 10) else GOOD if n < 11 else BAD for n in range(1, 17)]
    shas = _chain(repo, verdicts)
    seen: list[str] = []
    found = gb.search(repo, shas[0], shas[-1], _fake_measure(repo, seen), _result(shas[0], shas[-1], repo))
    out, _ = _git_bisect(repo, shas[0], shas[-1])
    assert "only 'skip'ped commits left" in out
    git_candidates = {line.split()[0] for line in out.splitlines() if re.fullmatch(r"[0-9a-f]{40}( .*)?", line)}
    assert set(found.could_be) == git_candidates == set(shas[8:11])
    assert found.could_be[-1] == shas[10] and found.first_bad is None and found.exit_code == 1


def test_a_merge_in_the_range_is_searched_as_git_does(tmp_path):
    repo = tmp_path / "r"
    shas = _chain(repo, [GOOD if n < 9 else BAD for n in range(1, 13)], merge_at=6)
    seen: list[str] = []
    found = gb.search(repo, shas[0], shas[-1], _fake_measure(repo, seen), _result(shas[0], shas[-1], repo))
    out, _ = _git_bisect(repo, shas[0], shas[-1])
    assert found.first_bad == shas[8] and f"{shas[8]} is the first bad commit" in out
    assert len(seen) <= math.ceil(math.log2(13))  # 11 chain commits after GOOD and the 2 side commits


# --------------------------------------------------------------------------- bad input: one line, exit 2


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    repo = user_repository(tmp_path)
    git(repo, "commit", "-q", "--allow-empty", "-m", "two")
    monkeypatch.chdir(repo)
    suite = ["--suite", "sweeps/ci.toml"]
    assert main(["bisect", "HEAD~1", "HEAD", *suite, "--layer", "wall"]) == 2
    assert "--layer 'wall'" in _one_line_error(capsys)
    assert main(["bisect", "nope", "HEAD", *suite]) == 2
    assert "GOOD 'nope': not a commit" in _one_line_error(capsys)
    assert main(["bisect", "HEAD", "HEAD~1", *suite]) == 2
    assert "is not an ancestor of BAD" in _one_line_error(capsys)
    assert main(["bisect", "HEAD", "HEAD", *suite]) == 2
    assert "the same commit" in _one_line_error(capsys)
    assert main(["bisect", "HEAD~1", "HEAD", *suite, "--width", "64"]) == 2
    assert "give no case flags" in _one_line_error(capsys)
    assert main(["bisect", "HEAD~1", "HEAD", "--suite", "sweeps/none.toml"]) == 2
    assert "no such sweep file" in _one_line_error(capsys)
    assert main(["bisect", "HEAD~1", "HEAD", "--model", "model.py:make"]) == 2
    assert "--model" in _one_line_error(capsys)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "ci.toml").write_text(SUITE.replace("../model.py", "model.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert main(["bisect", "HEAD~1", "HEAD", "--suite", str(plain / "ci.toml")]) == 2
    assert "not in a git repository" in _one_line_error(capsys)
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_without_suite_the_cases_are_the_flags_grid_on_mlpbenchs_own_history():
    plan = gb.plan_from(gb._parser().parse_args(["HEAD~1", "HEAD", "--width", "64,128", "--batch", "8",
                                                 "--layer", "timing,counters"]))
    assert plan.repo == REPO.resolve() and plan.user_repo is None
    assert [(r["width"], r["batch"], r["threads"], r["device"]) for r in plan.rows] == [(64, 8, 1, "cpu"),
                                                                                     (128, 8, 1, "cpu")]
    assert plan.layers == ("counters", "timing") and plan.timed == [0, 1]  # exact first, whatever the order given
    gate = gb.plan_from(gb._parser().parse_args(["HEAD~1", "HEAD"]))
    assert len(gate.rows) == 4 and gate.layers == ("counters",) and gate.timed == []  # the gate suite, counted


def test_each_step_command_repeats_the_cases_and_layers():
    args = gb._parser().parse_args(["a", "b", "--suite", "my suite.toml", "--layer", "timing,counters",
                                    "--rounds", "5", "--no-pin"])
    text = gb._flags_text(args, ("counters", "timing"))
    assert shlex.split(text) == ["--suite", "my suite.toml", "--layer", "counters,timing", "--rounds", "5",
                                 "--no-pin"]
    own = gb._parser().parse_args(["a", "b", "--width", "64,128", "--batch", "8"])
    assert shlex.split(gb._flags_text(own, ("counters",))) == ["--width", "64,128", "--batch", "8"]


# --------------------------------------------------------------------------- e2e: the real gate, 16 commits


BROKEN = MODEL.replace("def make(width, depth):", "def make(width, depth)  # a syntax error")


def _user_history(repo: Path) -> list[str]:
    """16 commits of a user's repository: commit 11 adds a layer; commit 4 cannot import its model (fixed in 5)."""
    (repo / "sweeps").mkdir(parents=True)
    (repo / "sweeps" / "ci.toml").write_text(SUITE)
    git(repo, "init", "-q")
    shas = []
    for number in range(1, 17):
        (repo / "model.py").write_text(BROKEN if number == 4 else SLOWER if number >= 11 else MODEL)
        (repo / "README").write_text(f"release {number}\n")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", f"commit {number}")
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return shas


def _bisect(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # mlpbench as installed; the cwd is the user's repository
    return subprocess.run([sys.executable, "-m", "bench", "bisect", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
@pytest.mark.e2e  # 5-6 worker processes importing torch: ~55 s on a loaded 2-core machine; `make test-e2e`
def test_bisect_finds_the_commit_that_adds_a_layer_in_at_most_5_steps(tmp_path):
    repo = tmp_path / "user"
    shas = _user_history(repo)
    status_before = git(repo, "status", "--porcelain")
    report = tmp_path / "bisect.json"
    done = _bisect(repo, shas[0], "HEAD", "--suite", "sweeps/ci.toml", "--layer", "counters", "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["first_bad"] == shas[10] and result["first_bad_subject"] == "commit 11"
    steps = result["steps"]
    assert len(steps) <= 5 and {s["sha"] for s in steps if s["verdict"] == "bad"} >= {shas[10]}
    assert all(s["verdict"] == "good" for s in steps if shas.index(s["sha"]) < 10)
    assert f"first bad commit {shas[10][:12]} (commit 11)" in done.stdout
    # the figures: one more w x w layer, by hand
    bad = next(s for s in steps if s["sha"] == shas[10])
    [case] = bad["gate"]["counters"]
    changed = {c["metric"]: (c["before"], c["after"]) for c in case["changes"]}
    assert changed["parameters"] == (parameters(DEPTH), parameters(DEPTH + 1))
    before, after = changed["forward.matmul_flops"]
    assert after - before == 2 * BATCH * WIDTH * WIDTH
    assert f"parameters {parameters(DEPTH):,} → {parameters(DEPTH + 1):,}" in done.stdout
    # the user's checkout is untouched and no worktree is left behind
    assert git(repo, "rev-parse", "HEAD").strip() == shas[-1] and git(repo, "status", "--porcelain") == status_before
    assert len(git(repo, "worktree", "list").splitlines()) == 1

    # each step's printed command measures it again: the first bad commit is bad again, with the same counters
    assert f"`{bad['command']}`" in done.stdout
    again = _bisect(repo, *shlex.split(bad["command"])[2:], "--json", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stdout + again.stderr
    [step] = json.loads((tmp_path / "again.json").read_text())["steps"]
    assert step["verdict"] == "bad" and step["gate"]["counters"] == bad["gate"]["counters"]

    # commit 4 cannot import its model: skipped (exit 1: no commit named), never bad
    broken = _bisect(repo, shas[0], shas[3], "--suite", "sweeps/ci.toml", "--no-search")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "| skipped |" in broken.stdout and "**bad**" not in broken.stdout
