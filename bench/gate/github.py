"""``mlpbench check --github-summary``: the gate's Markdown where GitHub Actions shows it.

Two outputs, text only (nothing is measured here):

- the job summary: appended to the file ``$GITHUB_STEP_SUMMARY`` names, when the variable is set (GitHub sets it
  in every step; it shows each step's file under the run, up to ``SUMMARY_LIMIT`` bytes);
- a pull-request comment body: a file the workflow posts (docs/ci/github-actions.yml), at most
  ``COMMENT_LIMIT`` characters, GitHub's limit on a comment's body. A longer report is cut at a line boundary
  before its per-operator detail, and a note says how much was left out and where the whole report is.
"""

from __future__ import annotations

import os
from pathlib import Path

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
COMMENT_LIMIT = 65_536  # characters in an issue or pull-request comment body (GitHub's API refuses more)
SUMMARY_LIMIT = 1024 * 1024  # bytes of one step's summary file that GitHub shows
DEFAULT_COMMENT = "mlpbench-comment.md"
CUT_NOTE = ("\n\n> **Truncated:** {shown:,} of {total:,} characters shown (at most {limit:,} fit here). The whole "
            "report is in {whole}{where}.\n")
IN_SUMMARY, IN_LOG = "the job summary", "the job's log and its --json file"


def comment_body(markdown: str, limit: int = COMMENT_LIMIT, where: str = "", whole: str = IN_SUMMARY) -> str:
    """``markdown`` whole when it fits in ``limit`` characters; else its first lines that fit with the note.

    A line is never cut in half (a table row stays a row). The report puts its headline and tables first and
    the per-operator lists and notes last, so a cut drops detail before verdicts.
    """
    if len(markdown) <= limit:
        return markdown
    note = CUT_NOTE.format(shown=0, total=len(markdown), limit=limit, where=where, whole=whole)
    budget = limit - len(note) - 16  # the shown count's digits may grow; leave room
    kept, size = [], 0
    for line in markdown.splitlines(keepends=True):
        if size + len(line) > budget:
            break
        kept.append(line)
        size += len(line)
    head = "".join(kept).rstrip("\n")
    return head + CUT_NOTE.format(shown=len(head), total=len(markdown), limit=limit, where=where, whole=whole)


def write_outputs(markdown: str, comment_file: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY`` (when set) and write the comment body to ``comment_file``.

    Returns one line per file written, for the command to print.
    """
    environ = os.environ if environ is None else environ
    written = []
    summary = environ.get(SUMMARY_ENV, "")
    if summary:
        fits = len(markdown.encode()) <= SUMMARY_LIMIT  # 4 bytes a character at most: a quarter always fits
        text = markdown if fits else comment_body(markdown, SUMMARY_LIMIT // 4, whole=IN_LOG)
        with open(summary, "a", encoding="utf-8") as out:
            out.write(text.rstrip("\n") + "\n\n")
        written.append(f"job summary: appended to ${SUMMARY_ENV} ({summary})")
    run_url = _run_url(environ)
    body = comment_body(markdown, where=f" of [the workflow run]({run_url})" if run_url else "")
    Path(comment_file).write_text(body, encoding="utf-8")
    written.append(f"pull-request comment body: {comment_file} ({len(body):,} characters)")
    return written


def _run_url(environ) -> str:
    """The workflow run's page, from the variables GitHub sets (empty outside GitHub Actions)."""
    parts = [environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else ""
