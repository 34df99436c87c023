"""README.md is a front door, and every link of it and of docs/ leads somewhere (issue 48).

Each check has its own reference, none of them this project's code: the Markdown is read by a CommonMark
parser (markdown-it-py), a link by the file system, an anchor by GitHub's rule for heading ids, a `make`
target by GNU make's own reading of the Makefile (its database), a subcommand by `python -m bench --help`
as a user sees it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = (README, *sorted((REPO / "docs").glob("*.md")))
COMMAND_PAGES = (README, REPO / "docs" / "commands.md")  # the pages that name commands for a user to type
MAX_README_LINES = 150
# The two commands, and the subcommands that start the five questions of issue 48 (a section of the README each).
FRONT_DOOR_TARGETS = {"bench", "test"}
FRONT_DOOR_SUBCOMMANDS = {"run", "report", "profile", "compare", "check", "history"}


@cache
def tokens(page: Path) -> list:
    return MarkdownIt("commonmark").enable("table").parse(page.read_text(encoding="utf-8"))


def inline_children(page: Path):
    for token in tokens(page):
        yield from token.children or ()


def links(page: Path) -> list[str]:
    """Every link and image target of a page, code spans and code blocks left out (the parser knows which is which)."""
    return [child.attrGet("href") if child.type == "link_open" else child.attrGet("src")
            for child in inline_children(page) if child.type in ("link_open", "image")]


def github_slug(text: str) -> str:
    """GitHub's id for a heading: lower case, punctuation and symbols dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings; a repeated heading gets -1, -2, ... as GitHub numbers them."""
    found: set[str] = set()
    stream = tokens(page)
    for index, token in enumerate(stream):
        if token.type != "heading_open":
            continue
        text = "".join(child.content for child in stream[index + 1].children if child.type in ("text", "code_inline"))
        slug, number = github_slug(text), 0
        while (slug if not number else f"{slug}-{number}") in found:
            number += 1
        found.add(slug if not number else f"{slug}-{number}")
    return found


def relative_links(page: Path) -> list[tuple[str, Path, str]]:
    """(as written, the file it names, its #fragment) for each link within the repository."""
    out = []
    for target in links(page):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:  # https://..., mailto:...
            continue
        path = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        out.append((target, path, unquote(parts.fragment)))
    return out


def code_texts(page: Path) -> list[str]:
    """What a page shows as code: fenced and indented blocks and inline code spans."""
    blocks = [token.content for token in tokens(page) if token.type in ("fence", "code_block")]
    return blocks + [child.content for child in inline_children(page) if child.type == "code_inline"]


def named(page: Path, pattern: str) -> set[str]:
    """The words that follow ``pattern`` where it starts a command in the page's code (upper case: a placeholder)."""
    regex = re.compile(rf"(?:^|[\s;(&|]){pattern}[ \t]+([a-z][\w-]*)", re.M)
    return {match for text in code_texts(page) for match in regex.findall(text)}


@cache
def subcommands() -> set[str]:
    """The subcommands `python -m bench --help` lists (argparse indents each by four spaces under COMMAND)."""
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True)
    return set(re.findall(r"^    ([a-z][\w-]*)", done.stdout, flags=re.M))


@cache
def make_targets() -> set[str]:
    """The targets GNU make reads from the Makefile: its own database (``make -p``), which runs no recipe here.

    Not ``make -n TARGET``: a name with no rule that is a file or folder of the checkout (``tests``) is
    "nothing to be done", exit 0. The database lists a file only under a rule (``# Not a target:`` otherwise).
    """
    if shutil.which("make") is None:
        pytest.fail("GNU make is not installed: the README's two commands need it")
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "-p", "-q", "-r", "-R", "-f", "Makefile", "mlpbench-test-probe-no-such-target"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # not the caller's make flags
    files = done.stdout.split("\n# Files\n", 1)[-1].splitlines()
    return {match.group(1) for before, line in zip(["", *files], files)
            if before != "# Not a target:" and (match := re.match(r"([\w./-]+):(?!=)", line))}


# --------------------------------------------------------------------------- the README


def test_the_readme_is_a_front_door_of_at_most_150_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"


def test_the_readme_names_the_two_commands_and_a_start_for_each_question():
    assert FRONT_DOOR_TARGETS <= named(README, "make")
    assert FRONT_DOOR_SUBCOMMANDS <= named(README, "mlpbench")


def test_ci_runs_the_readmes_test_command():
    """`.ci/run` says it runs the README's test command: the line of the README's first block that runs tests."""
    first_block = next(token.content for token in tokens(README) if token.type == "fence")
    (command,) = [line.split("#")[0].strip() for line in first_block.splitlines() if line.startswith("make test")]
    ci_lines = {line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()}
    assert command in ci_lines


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda page: page.name)
def test_every_make_target_named_exists(page):
    targets = named(page, "make")
    assert targets, f"{page.name} names no make target"
    assert {"bench", "test", "venv"} <= make_targets()  # make's database was read, not an empty listing
    missing = sorted(targets - make_targets())
    assert not missing, f"{page.name} names make targets the Makefile lacks: {missing}"


@pytest.mark.parametrize("page", COMMAND_PAGES, ids=lambda page: page.name)
def test_every_subcommand_named_exists(page):
    names = named(page, "mlpbench") | named(page, r"python3? -m bench")
    assert names, f"{page.name} names no subcommand"
    assert "run" in subcommands()  # the help was read, not an empty listing
    missing = sorted(names - subcommands())
    assert not missing, f"{page.name} names subcommands mlpbench lacks: {missing}"


# --------------------------------------------------------------------------- links of the README and docs/


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    """Each link names a file or folder of the checkout, and a #fragment of a Markdown page one of its headings."""
    broken = []
    for target, path, fragment in relative_links(page):
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading #{fragment} in {path.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_link_reader_finds_what_github_renders(tmp_path):
    """The readers above on a page whose answer is known by hand, so that they cannot pass by finding nothing."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Limits: `--max-run-s` (a budget)\n\n## Limits: `--max-run-s` (a budget)\n\n"
                    "See [a](docs/x.md#y), ![b](img/c.png) and <https://example.org>; not `[d](e.md)`;\n"
                    "`mlpbench COMMAND`.\n\n"
                    "| a | [f](g.md) |\n|---|---|\n\n```bash\nmlpbench run x  # [h](i.md)\nmake   bench\n```\n",
                    encoding="utf-8")
    assert links(page) == ["docs/x.md#y", "img/c.png", "https://example.org", "g.md"]
    assert anchors(page) == {"title", "limits---max-run-s-a-budget", "limits---max-run-s-a-budget-1"}
    assert [(target, fragment) for target, _, fragment in relative_links(page)] == [
        ("docs/x.md#y", "y"), ("img/c.png", ""), ("g.md", "")]
    assert named(page, "mlpbench") == {"run"} and named(page, "make") == {"bench"}
