"""Mutation testing with mutmut: each named module against its own fast tests (issue 50).

mutmut (3.x, pinned in constraints.txt, the ``dev`` extra) writes generated mutants of a module and
runs the tests that cover each mutated function. Its settings are ``[tool.mutmut]`` in pyproject.toml;
which tests are a module's own is the table ``[tool.mlpbench.mutation]`` beside it (module path ->
pytest paths or node ids), the one place to re-point when bench/ is re-laid out.

mutmut reads one test selection for a whole run, so each module gets a run of its own, in a child
process: mutmut's settings narrowed to that module (``only_mutate``) and its tests
(``pytest_add_cli_args_test_selection``). A mutant killed only by some other module's tests still
counts as a survivor here: the module's own tests missed it.

    python -m tests.mutation bench/analysis/stats.py bench/analysis/interleaved.py    # what `make mutation` runs
    python -m tests.mutation --list                                 # the table

Each module's surviving mutants, with their diffs, go to ``mutants/<module>.not-killed.diff`` (``mutants/`` is\nignored by git); ``mutmut show`` / ``mutmut browse`` see the last module's mutants only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TABLE = "tool.mlpbench.mutation"


def module_tests() -> dict[str, list[str]]:
    """The module -> tests table of pyproject.toml."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8")).get("tool", {})
    return {module: list(tests) for module, tests in tool.get("mlpbench", {}).get("mutation", {}).items()}


def _run_one(module: str, tests: list[str], jobs: int) -> int:
    """In the child: mutmut's own `run`, narrowed to one module and its tests, then the survivors' diffs."""
    import contextlib
    import io

    from mutmut.configuration import config

    cfg = config()  # [tool.mutmut] of pyproject.toml; a plain dataclass that mutmut reads from here on
    cfg.only_mutate = [module]
    cfg.pytest_add_cli_args_test_selection = list(tests)
    # mutmut copies every file it does not mutate over its mirror in mutants/ on each run, and then takes a
    # copy newer than the source for "already mutated": after another module's run this module's mirror is
    # a plain copy and would yield no mutants. Remove it, so its mutants are generated afresh.
    for stale in (ROOT / "mutants" / module, ROOT / "mutants" / (module + ".meta")):
        stale.unlink(missing_ok=True)
    from mutmut.__main__ import cli

    cli.main(["run", "--max-children", str(jobs)], prog_name="mutmut", standalone_mode=False)
    cli.main(["export-cicd-stats"], prog_name="mutmut", standalone_mode=False)
    # the diffs now, while mutants/ holds this module's mutants (the next module's run overwrites them)
    with contextlib.redirect_stdout(io.StringIO()) as listing:
        cli.main(["results"], prog_name="mutmut", standalone_mode=False)
    with open(_diffs_path(module), "w") as out:
        for name, status in _parse_results(listing.getvalue(), module):
            with contextlib.redirect_stdout(io.StringIO()) as diff:
                cli.main(["show", name], prog_name="mutmut", standalone_mode=False)
            out.write(diff.getvalue() + "\n")  # mutmut's own header names the mutant and its status
    return 0


def _diffs_path(module: str) -> Path:
    return ROOT / "mutants" / (module + ".not-killed.diff")


def _parse_results(listing: str, module: str) -> list[tuple[str, str]]:
    """(mutant, status) of the module's mutants in `mutmut results` output (which lists the not killed)."""
    prefix = module.removesuffix(".py").replace("/", ".") + "."
    rows = [line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line]
    return [(name, status) for name, status in rows if name.startswith(prefix)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", help="module paths, as in the table (bench/analysis/stats.py ...)")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2: a 2-core machine)")
    p.add_argument("--list", action="store_true", help="print the module -> tests table and exit")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child: one module
    args = p.parse_args(argv)
    table = module_tests()
    if args.one:
        return _run_one(args.one, table[args.one], args.jobs)
    if args.list:
        for module, tests in table.items():
            print(module, *(f"    {t}" for t in tests), sep="\n")
        return 0
    if not args.modules:
        print(f"error: name the modules to mutate (MODULES=...); known: {' '.join(table)}", file=sys.stderr)
        return 2
    unknown = [m for m in args.modules if m not in table]
    if unknown:
        print(f"error: {', '.join(unknown)} not in [{TABLE}] of pyproject.toml (known: {' '.join(table)})",
              file=sys.stderr)
        return 2
    rows, failed = [], False
    for module in args.modules:
        start = time.monotonic()
        rc = subprocess.run([sys.executable, "-m", "tests.mutation", "--jobs", str(args.jobs), "--one", module],
                            cwd=ROOT).returncode
        wall = time.monotonic() - start
        stats_file = ROOT / "mutants" / "mutmut-cicd-stats.json"
        if rc != 0 or not stats_file.exists():
            print(f"error: mutmut failed on {module} (exit {rc})", file=sys.stderr)
            failed = True
            continue
        stats = json.loads(stats_file.read_text())
        rows.append((module, stats, wall))
    print("\nmodule | mutants | killed | survived | timeout | suspicious | no tests | wall s")
    for module, s, wall in rows:
        print(f"{module} | {s.get('total')} | {s.get('killed')} | {s.get('survived')} | {s.get('timeout')} | "
              f"{s.get('suspicious')} | {s.get('no_tests')} | {wall:.0f}")
    for module, _, _ in rows:
        print(f"the diffs of {module}'s mutants that no test killed: {_diffs_path(module).relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
