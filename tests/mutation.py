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
    python -m tests.mutation --changed HEAD~1 --budget 300 --strict # CI (.ci/mutation-changed)

A mutant that no test kills and that is not marked equivalent is a survivor. Each is printed in one line,
``module mutant: function: <old line> -> <new line>``; that line after the module's name is also the key
by which ``tests/mutation_equivalent.toml`` marks a mutant equivalent, with one line saying why (a line,
not mutmut's number, because the numbers move whenever the function changes).

Each module's not-killed mutants, with their diffs, go to ``mutants/<module>.not-killed.diff`` (``mutants/``
is ignored by git); ``mutmut show`` / ``mutmut browse`` see the last module's mutants only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
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
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.toml"
KILLED = {"killed", "timeout", "segfault", "caught by type check"}  # a hang or crash is a failing test too


def module_tests() -> dict[str, list[str]]:
    """The module -> tests table of pyproject.toml."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8")).get("tool", {})
    return {module: list(tests) for module, tests in tool.get("mlpbench", {}).get("mutation", {}).items()}


def not_gated() -> list[str]:
    """Modules whose survivors are listed but do not fail --strict (``not-gated`` of [tool.mlpbench.mutation-gate]):
    a module enters the table there, and leaves that list once its survivors are killed or marked equivalent."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8")).get("tool", {})
    return list(tool.get("mlpbench", {}).get("mutation-gate", {}).get("not-gated", []))


def equivalents() -> dict[str, dict[str, str]]:
    """module -> {one-line diff -> why it is equivalent}, from tests/mutation_equivalent.toml."""
    return tomllib.loads(EQUIVALENT.read_text("utf-8")) if EQUIVALENT.exists() else {}


def function_of(mutant: str) -> str:
    """`bench.analysis.stats.x_median_ci__mutmut_4` -> `median_ci`; `bench.analysis.stats.xǁSummaryǁas_dict__mutmut_1` ->
    `Summary.as_dict`."""
    name = re.sub(r"__mutmut_\d+$", "", mutant.rsplit(".", 1)[-1])
    if name.startswith("xǁ"):
        return ".".join(part for part in name[2:].split("ǁ") if part)
    return name.removeprefix("x_")


def one_line(mutant: str, diff: str) -> str:
    """A mutant's unified diff as `function: <old> -> <new>`, each side its changed lines (` / `-joined),
    whitespace runs squeezed: the key of tests/mutation_equivalent.toml and what CI prints."""
    def squeeze(line: str) -> str:
        return " ".join(line[1:].split())
    lines = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++"))]
    old = " / ".join(squeeze(ln) for ln in lines if ln.startswith("-"))
    new = " / ".join(squeeze(ln) for ln in lines if ln.startswith("+"))
    return f"{function_of(mutant)}: {old} -> {new or '(removed)'}"


def _run_one(module: str, tests: list[str], jobs: int) -> int:
    """In the child: mutmut's own `run`, narrowed to one module and its tests; then every mutant's status and
    each not-killed one's diff, to mutants/<module>.result.json (read by the parent) and .not-killed.diff."""
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
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    cli.main(["run", "--max-children", str(jobs)], prog_name="mutmut", standalone_mode=False)
    data = SourceFileMutationData(path=Path(module))
    data.load()
    statuses = {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}
    not_killed = []
    # the diffs now, while mutants/ holds this module's mutants (the next module's run overwrites them)
    with open(_diffs_path(module), "w") as out:
        for name, status in statuses.items():
            if status in KILLED:
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                diff = get_diff_for_mutant(name, path=Path(module))
            not_killed.append({"name": name, "status": status, "line": one_line(name, diff)})
            out.write(f"# {name}: {status}\n{diff}\n\n")
    _result_path(module).write_text(json.dumps({"statuses": statuses, "not_killed": not_killed}, indent=1))
    return 0


def _diffs_path(module: str) -> Path:
    return ROOT / "mutants" / (module + ".not-killed.diff")


def _result_path(module: str) -> Path:
    return ROOT / "mutants" / (module + ".result.json")


def tally(module: str, result: dict, marked: dict[str, str]) -> tuple[dict[str, int], list[dict], list[str]]:
    """(counts, survivors, stale marks) of one module's run: generated, killed (a timeout included),
    equivalent (not killed, its line marked), survived and no tests (not killed, not marked)."""
    not_killed = result["not_killed"]
    survivors = [m for m in not_killed if m["line"] not in marked]
    lines = {m["line"] for m in not_killed}
    counts = {
        "mutants": len(result["statuses"]),
        "killed": sum(s in KILLED for s in result["statuses"].values()),
        "timeout": sum(s == "timeout" for s in result["statuses"].values()),  # of the killed
        "equivalent": len(not_killed) - len(survivors),
        "survived": sum(m["status"] != "no tests" for m in survivors),
        "no tests": sum(m["status"] == "no tests" for m in survivors),
    }
    return counts, survivors, [line for line in marked if line not in lines]


def changed_modules(ref: str, table: dict[str, list[str]], root: Path = ROOT) -> list[str] | None:
    """The table's modules that `git diff REF` touches, or whose own tests it touches; None without REF."""
    done = subprocess.run(["git", "diff", "--name-only", ref, "--"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    changed = set(done.stdout.split())
    return [m for m, tests in table.items() if m in changed or any(t.partition("::")[0] in changed for t in tests)]


def _child(module: str, jobs: int, timeout: float | None, quiet: bool) -> int | None:
    """One module's mutmut run in a child process group; None when it ran past ``timeout`` (the group is
    killed: mutmut's forked workers with it)."""
    # mutmut forks each mutant from the pytest process that ran the tests once; a fork after torch started its
    # thread pool hangs at the child's first kernel (a "timeout", counted as killed). One thread: no pool.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "tests.mutation", "--jobs", str(jobs), "--one", module],
                             cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL if quiet else None)
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:  # past the budget, or Ctrl-C (which the new session does not pass on)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.splitlines()[0])
    p.add_argument("modules", nargs="*", help="module paths, as in the table (bench/analysis/stats.py ...)")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2: a 2-core machine)")
    p.add_argument("--list", action="store_true", help="print the module -> tests table and exit")
    p.add_argument("--changed", metavar="REF", help="the modules `git diff REF` changed, or whose tests it changed")
    p.add_argument("--budget", type=float, metavar="S", help="start no module after S seconds; stop one at S")
    p.add_argument("--strict", action="store_true", help="exit 1 when a mutant survives that is not marked equivalent")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child: one module
    args = p.parse_args(argv)
    table = module_tests()
    if args.one:
        return _run_one(args.one, table[args.one], args.jobs)
    if args.list:
        for module, tests in table.items():
            print(module, *(f"    {t}" for t in tests), sep="\n")
        return 0
    modules = args.modules
    if args.changed:
        modules = changed_modules(args.changed, table)
        if modules is None:
            print(f"mutation: no {args.changed} to diff against (a shallow clone?): nothing checked")
            return 0
        if not modules:
            print(f"mutation: `git diff {args.changed}` touches no module of [{TABLE}] nor its tests: nothing to do")
            return 0
        print(f"mutation: `git diff {args.changed}` touches {' '.join(modules)}")
    if not modules:
        print(f"error: name the modules to mutate (MODULES=...); known: {' '.join(table)}", file=sys.stderr)
        return 2
    unknown = [m for m in modules if m not in table]
    if unknown:
        print(f"error: {', '.join(unknown)} not in [{TABLE}] of pyproject.toml (known: {' '.join(table)})",
              file=sys.stderr)
        return 2
    marks = equivalents()
    # a CI that stops this step sends SIGTERM: exit through _child's `finally`, which kills the module's run
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows, survivors, unchecked, failed = [], [], [], False
    begin = time.monotonic()
    for module in modules:
        start = time.monotonic()
        left = None if args.budget is None else args.budget - (start - begin)
        if left is not None and left <= 0:
            unchecked.append(module)
            continue
        _result_path(module).unlink(missing_ok=True)
        rc = _child(module, args.jobs, left, quiet=args.strict)
        if rc is None:
            unchecked.append(module)
            continue
        wall = time.monotonic() - start
        if rc != 0 or not _result_path(module).exists():
            print(f"error: mutmut failed on {module} (exit {rc})", file=sys.stderr)
            failed = True
            continue
        counts, left_alive, stale = tally(module, json.loads(_result_path(module).read_text()), marks.get(module, {}))
        rows.append((module, counts, wall))
        survivors += [(module, m) for m in left_alive]
        for line in stale:
            print(f"note: {module}: marked equivalent but no such mutant is left alive: {line}")
    print("\nmodule | mutants | killed (timeout) | equivalent | survived | no tests | killed of non-equivalent | wall s")
    for module, c, wall in rows:
        rate = c["killed"] / max(1, c["mutants"] - c["equivalent"])
        print(f"{module} | {c['mutants']} | {c['killed']} ({c['timeout']}) | {c['equivalent']} | {c['survived']} | "
              f"{c['no tests']} | {rate:.1%} | {wall:.0f}")
    lenient = set(not_gated())
    for module, m in survivors:
        print(f"SURVIVED ({m['status']}) {module} {m['name']}: {m['line']}")
    for module in sorted(lenient & {module for module, _ in survivors}):
        count = sum(1 for m, _ in survivors if m == module)
        print(f"mutation: {module} is not gated yet (not-gated in [tool.mlpbench.mutation-gate]): its {count} "
              "survivor(s) above do not fail the step")
    gating = [(module, m) for module, m in survivors if module not in lenient]
    for module in unchecked:
        print(f"mutation: {module} not checked: the {args.budget:.0f} s budget ran out")
    for module, _, _ in rows:
        print(f"the diffs of {module}'s mutants that no test killed: {_diffs_path(module).relative_to(ROOT)}")
    if failed:
        return 1
    if args.strict and gating:
        print(f"mutation: {len(gating)} mutant(s) survived that no line of "
              f"{EQUIVALENT.relative_to(ROOT)} marks equivalent: kill each with a test, or mark it with why")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
