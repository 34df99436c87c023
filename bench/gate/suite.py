"""``mlpbench check --suite FILE``: the gate's cases from a user's sweep file, and the repository that holds it.

The file has the format of ``mlpbench run FILE.toml`` (``bench.model.sweep_file``); every case of it is gated:
counted, and timed by the timing layer (keep the file small: each case costs ``--rounds`` timed blocks per
side). Its run-level keys (budgets, ``all_devices``, ...) are for ``mlpbench run`` and are not read here.
A case that leaves ``threads`` at 0 (torch's default) is gated on one thread, as the built-in suite is.

With ``--against REF``, REF is a commit of the git repository that holds FILE (``git rev-parse
--show-toplevel``), not of mlpbench: ``bench.gate.ab.sides`` checks REF out in a worktree and each side's
worker runs in its own checkout, so side A measures the model source at REF and side B the working tree's.
The model paths of the cases are therefore spelled from the repository's top level (``model.py:make``),
whatever folder the command runs from; a ``MODULE:FACTORY`` is imported from that top level. The cases are
the working tree's file's, measured on both sides; FILE must also exist at REF.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class UserSuite:
    path: Path  # the sweep file, as given
    root: Path  # model paths are spelled from here and the workers run here: the repository's top level, else the cwd
    repo: Path | None  # the git repository that holds the file (None outside any)
    cases: list  # bench.case.cases.Case, in the file's order

    @property
    def relative_path(self) -> str:
        """The file from ``root`` (as recorded in a baseline), or as given when it lies outside."""
        try:
            return Path(self.path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(self.path)


def load(path: Path, *, against: str | None, device: str | None, threads: int) -> UserSuite:
    """The suite in ``path``; one-line UsageErrors for a missing file, ``--against`` outside a git repository,
    a file that REF does not hold, and a case the file's values cannot make."""
    from . import ab
    from ..case.cases import sweep_from_file

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--suite {path}: no such sweep file")
    repo = ab.repo_root(path)
    if against is not None:
        if repo is None:
            raise UsageError(f"--suite {path} is not in a git repository: --against REF compares two commits of "
                             "the repository that holds it (commit it to one, or compare with --baseline FILE)")
        if not ab.file_at(repo, against, path):
            raise UsageError(f"--suite {path}: {against} of {repo} has no such file (commit it there, or "
                             "compare against a ref that has it)")
    root = repo or Path.cwd().resolve()
    sweep = sweep_from_file(path, base=root)
    try:
        cases = sweep.cases({"device": (device,)} if device else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cases = [case.with_(threads=threads) if case.threads == 0 else case for case in cases]
    return UserSuite(path, root, repo, cases)


def check_against_baseline(suite: UserSuite, baseline: dict, baseline_path: Path) -> None:
    """The baseline holds exactly the file's cases, in order; else one line naming the first difference."""
    now = [(c.case_id, c.label) for c in suite.cases]
    then = [(c["case_id"], c["label"]) for c in baseline["cases"]]
    if now == then:
        return
    differ = next((f"{a[1]!r} in the file, {b[1]!r} in the baseline" for a, b in zip(now, then) if a != b),
                  f"{len(now)} cases in the file, {len(then)} in the baseline")
    raise UsageError(f"--suite {suite.path}: its cases are not the baseline's ({differ}); rewrite {baseline_path} "
                     f"with --write-baseline")


def source_notes(suite_cases: list, replies: dict | None) -> list[str]:
    """One note per user's model: the source hash each side measured, so a reader sees what A and B compared."""
    if not replies or set(replies) != {"A", "B"}:
        return []
    notes, seen = [], set()
    a, b = replies["A"]["info"], replies["B"]["info"]
    for index, case in enumerate(suite_cases):
        if not case.model or case.model in seen:
            continue
        seen.add(case.model)
        sha_a, sha_b = (info.get("model_shas", [""] * (index + 1))[index] for info in (a, b))
        same = "the same source" if sha_a == sha_b else "different sources"
        notes.append(f"`{case.model}`: A measured source {sha_a}, B {sha_b} ({same}).")
    return notes
