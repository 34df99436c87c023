"""The flags of ``mlpbench compare``, apart from the comparison itself so that ``compare --help`` imports neither
pandas nor scipy (``bench.report.compare`` is imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CASES = 6  # --confirm-cases: re-measured per call, largest |log ratio| first (~10 s each, loaded 2-core box)
DEFAULT_ROUNDS = 20  # --confirm-rounds: the gate's default blocks a side, whose power docs/perf-gate.md measured
BLOCK_BUDGET = 3 * DEFAULT_ROUNDS  # blocks a side in all: fewer than 3 cases get more than --confirm-rounds each
MIN_ROUNDS = 5  # fewer blocks a side than this give the paired bootstrap too few pairs to resample


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="baseline run folder (or 'latest')")
    parser.add_argument("run_b", help="run folder to compare with it (or 'latest')")
    parser.add_argument("--all-phases", action="store_true",
                        help="compare forward/backward/optimizer/inference too, not only the whole step")
    parser.add_argument("--out", type=Path, help="also write the comparison as Markdown to this file")
    parser.add_argument("--confirm", action="store_true",
                        help="re-measure the cases that differ (the change under test first), A's and B's "
                             "configuration interleaved in one run; a user's model as each run recorded it (its copy "
                             "in the run folder), from any working folder (bench.commands.compare)")
    parser.add_argument("--confirm-cases", type=_cases, default=DEFAULT_CASES, metavar="N",
                        help="how many cases --confirm re-measures, the largest moves first (default "
                             "%(default)s); 0: every case, moved or not (about 5 s each): between two noisy stored "
                             "runs a real change may "
                             "not be among the largest moves")
    parser.add_argument("--confirm-rounds", type=_rounds, default=DEFAULT_ROUNDS, metavar="N",
                        help="interleaved blocks per case and side for --confirm, at least (default %(default)s, "
                             f"at least 5; fewer than 3 cases share {BLOCK_BUDGET} a side): the interval narrows as "
                             "the square root; 80 halves the default's")


def _cases(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of cases (0: all), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all) or more cases, got {value}")
    return value


def _rounds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of blocks, got {text!r}") from None
    if value < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(f"expected at least {MIN_ROUNDS} blocks a side (a paired interval needs "
                                         f"them), got {value}")
    return value
