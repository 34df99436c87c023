"""The flags of ``mlpbench compare``, apart from the comparison itself so that ``compare --help`` imports neither
pandas nor scipy (``bench.report.compare`` is imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CASES = 6  # --confirm-cases: re-measured per call, largest |log ratio| first (~10 s each, loaded 2-core box)
DEFAULT_ROUNDS = 20  # --confirm-rounds: the gate's default blocks a side, whose power docs/perf-gate.md measured
BLOCK_BUDGET = 3 * DEFAULT_ROUNDS  # blocks a side in all: fewer than 3 cases get more than --confirm-rounds each
MIN_ROUNDS = 5  # fewer blocks a side than this give the paired bootstrap too few pairs to resample
DEFAULT_PRECISION = 0.05  # --precision: adaptive rounds stop once each end of the interval is within 5% of the ratio
DEFAULT_MAX_CONFIRM_S = 120.0  # --max-confirm-s: or once the rounds have taken this long


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
    parser.add_argument("--confirm-rounds", type=_rounds, metavar="N",
                        help="a fixed number of interleaved blocks per case and side for --confirm, at least 5 "
                             f"(fewer than 3 cases share {BLOCK_BUDGET} a side), instead of adaptive rounds: the "
                             "interval narrows as the square root")
    parser.add_argument("--precision", type=_fraction, default=DEFAULT_PRECISION, metavar="P",
                        help="--confirm adds interleaved rounds until each case's interval is within P of its ratio "
                             "(default 5%%; '5%%' or 0.05), or --max-confirm-s ends, checked by a group-sequential "
                             "design whose error rate holds however many rounds it takes (docs/perf-gate.md, "
                             "'Adaptive rounds')")
    parser.add_argument("--max-confirm-s", type=_seconds, default=DEFAULT_MAX_CONFIRM_S, metavar="SECONDS",
                        help="time budget of --confirm's adaptive rounds, all cases together (default %(default)g)")


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


def _fraction(text: str) -> float:
    """'5%' or 0.05, in (0, 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 5% or 0.05, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), such as 5% or 0.05, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value
