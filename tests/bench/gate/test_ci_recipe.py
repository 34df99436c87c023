"""The CI recipe a user copies (docs/ci/github-actions.yml) and ``check --github-summary``'s two outputs.

The workflow test reads the file with PyYAML, as GitHub does, and runs its ``run:`` steps in order the way a
runner does (``bash --noprofile --norc -eo pipefail``, the workflow's ``env:``, ``$GITHUB_ENV`` carried from
a step to the next, later steps skipped after a failure) in a throw-away user repository whose pull request
adds a layer to the model. The steps that need the network (checkout, setup-python, cache, the comment) are
``uses:`` steps and are not run; the venv is an existing one, through the variable the workflow honours. The
references: GitHub's documented limit on a comment body (65,536 characters) and the model's counters by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.gate import github
from git_cmd import git  # tests/bench/gate/git_cmd.py
from user_model import DEPTH, SLOWER, parameters, user_repository  # tests/bench/gate/user_model.py

REPO = Path(__file__).resolve().parents[3]
WORKFLOW = REPO / "docs" / "ci" / "github-actions.yml"
GITLAB = REPO / "docs" / "ci" / "gitlab-ci.yml"
GITHUB_COMMENT_LIMIT = 65_536  # https://docs.github.com: "body ... maximum 65536 characters"
NETWORK_ACTIONS = {"actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact",
                   "marocchino/sticky-pull-request-comment"}


# --------------------------------------------------------------------------- the comment body


def _report(rows: int) -> str:
    head = "## mlpbench perf gate: FAIL (1 case(s) with more work per step)\n\n| case | counter | before | after |\n"
    return head + "|---|---|---:|---:|\n" + "".join(f"| case {i} | step.aten_ops | {i} | {i + 1} |\n"
                                                     for i in range(rows))


def test_a_report_that_fits_is_the_comment_unchanged():
    text = _report(10)
    assert github.comment_body(text) == text


def test_a_long_report_is_cut_at_a_line_with_a_note_under_githubs_limit():
    text = _report(5000)
    assert len(text) > GITHUB_COMMENT_LIMIT
    body = github.comment_body(text, where=" of [the workflow run](https://example/run/1)")
    assert len(body) <= GITHUB_COMMENT_LIMIT
    kept, note = body.split("\n\n> **Truncated:** ")
    assert text.startswith(kept) and text[len(kept)] == "\n"  # whole lines only: the cut is at a line end
    assert kept.splitlines()[0] == text.splitlines()[0]  # the verdict stays
    shown, total = (int(n.replace(",", "")) for n in note.split(" characters")[0].split(" of "))
    assert (shown, total) == (len(kept), len(text))
    assert "65,536" in note and "https://example/run/1" in note
    assert GITHUB_COMMENT_LIMIT - len(body) < 200  # it keeps as much as fits, not a fraction


def test_outputs_append_to_the_step_summary_and_write_the_comment(tmp_path):
    summary, comment = tmp_path / "summary.md", tmp_path / "comment.md"
    summary.write_text("an earlier step's summary\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_REPOSITORY": "me/model", "GITHUB_RUN_ID": "42"}
    github.write_outputs(_report(3), comment, env)
    github.write_outputs(_report(4000), comment, env)
    text = summary.read_text()
    assert text.startswith("an earlier step's summary\n") and text.count("## mlpbench perf gate") == 2
    assert "| case 3999 |" in text  # the summary holds the whole report (GitHub shows up to 1 MiB a step)
    body = comment.read_text()
    assert len(body) <= GITHUB_COMMENT_LIMIT and "https://github.com/me/model/actions/runs/42" in body
    # outside GitHub Actions: no summary file, the comment body still written
    github.write_outputs(_report(3), tmp_path / "alone.md", {})
    assert (tmp_path / "alone.md").read_text() == _report(3)


def test_a_report_over_the_step_summary_limit_is_cut_there(tmp_path):
    summary = tmp_path / "summary.md"
    text = _report(40_000)
    assert len(text.encode()) > 1024 * 1024  # GitHub shows at most 1 MiB of a step's summary
    github.write_outputs(text, tmp_path / "comment.md", {"GITHUB_STEP_SUMMARY": str(summary)})
    written = summary.read_text()
    assert len(written.encode()) <= 1024 * 1024 and "Truncated:" in written and "--json" in written
    assert text.startswith(written.split("\n\n> **Truncated:** ")[0])


# --------------------------------------------------------------------------- the workflow's run: steps


def _pull_request_repo(root: Path) -> Path:
    """main: the model and its suite; the pull request (HEAD) adds a layer. origin/main is main's commit."""
    repo = user_repository(root)
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "checkout", "-q", "-b", "wider")
    (repo / "model.py").write_text(SLOWER)
    git(repo, "commit", "-q", "-am", "one more layer")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a second commit in the pull request")
    return repo


def _run_steps(workflow: dict, repo: Path, env: dict[str, str]) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The job's ``run:`` steps as a runner runs them; stops after the first that fails (no ``if:`` on them)."""
    [job] = workflow["jobs"].values()
    ran = []
    for step in job["steps"]:
        if "uses" in step:
            assert "run" not in step and step["uses"].split("@")[0] in NETWORK_ACTIONS, step
            continue
        assert "${{" not in step["run"] and "if" not in step, step  # runs as is, outside GitHub
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=1200)
        ran.append((step["name"], done))
        for line in Path(env["GITHUB_ENV"]).read_text().splitlines():  # KEY=VALUE for the steps after it
            key, value = line.split("=", 1)
            env[key] = value
        if done.returncode != 0:
            break
    return ran


@pytest.mark.e2e  # one gate run against the merge base: two workers importing torch (~30 s on 2 loaded cores)
def test_the_workflow_fails_a_pull_request_that_adds_a_layer_and_writes_the_summary(tmp_path):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    repo = _pull_request_repo(tmp_path)
    summary, github_env = tmp_path / "summary.md", tmp_path / "github_env"
    summary.write_text("")
    github_env.write_text("")
    venv = Path(sys.executable).parents[1]  # an already-built venv, as the cache step restores one
    env = {**os.environ, **workflow["env"], "MLPBENCH_VENV": str(venv), "MLPBENCH_LAYERS": "counters",
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ENV": str(github_env), "GITHUB_BASE_REF": "main",
           "GITHUB_EVENT_NAME": "pull_request", "GITHUB_SERVER_URL": "https://github.com",
           "GITHUB_REPOSITORY": "me/model", "GITHUB_RUN_ID": "7",
           "PYTHONPATH": str(REPO)}  # this checkout's mlpbench, as the venv's installed one
    ran = _run_steps(workflow, repo, env)
    names = [name for name, _ in ran]
    assert names == ["Virtual environment (skipped when the cache restored it)", "Merge base", "Performance gate"]
    assert [done.returncode for _, done in ran] == [0, 0, 1], [d.stdout + d.stderr for _, d in ran]
    main_sha = git(repo, "rev-parse", "main").strip()
    assert env["MLPBENCH_BASE"] == main_sha  # the merge base of the pull request with origin/main
    # the summary: the gate's report, failing on the counters a hand count gives
    text = summary.read_text()
    assert text.startswith("## mlpbench perf gate: FAIL") and f"against {main_sha}" in text
    params = f"| parameters | {parameters(DEPTH):,} | {parameters(DEPTH + 1):,} |"
    assert params in text
    comment = (repo / workflow["env"]["MLPBENCH_COMMENT"]).read_text()
    assert comment.strip() == text.strip() and len(comment) <= GITHUB_COMMENT_LIMIT
    gate = json.loads((repo / "mlpbench-gate.json").read_text())
    assert gate["exit_code"] == 1 and gate["counter_regressions"] == 1
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_the_gitlab_recipe_runs_the_same_gate():
    job = yaml.safe_load(GITLAB.read_text())["mlpbench-gate"]
    script = "\n".join(job["script"])
    assert '-m bench check --suite "$MLPBENCH_SUITE" --against "$base"' in script
    assert job["variables"]["GIT_DEPTH"] == 0 and job["cache"]["paths"] == [job["variables"]["MLPBENCH_VENV"] + "/"]
    assert set(job["artifacts"]["paths"]) == {"mlpbench-gate.json", job["variables"]["MLPBENCH_COMMENT"]}
