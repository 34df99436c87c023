"""The flags of ``mlpbench compare``, apart from the comparison itself so that ``compare --help`` imports neither
pandas nor scipy (``bench.report.compare`` is imported when the command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="baseline run folder (or 'latest')")
    parser.add_argument("run_b", help="run folder to compare with it (or 'latest')")
    parser.add_argument("--all-phases", action="store_true",
                        help="compare forward/backward/optimizer/inference too, not only the whole step")
    parser.add_argument("--out", type=Path, help="also write the comparison as Markdown to this file")
    parser.add_argument("--confirm", action="store_true",
                        help="re-measure the cases that differ, A's and B's configuration interleaved in one run "
                             "(both built from this tree; bench.gate.confirm)")
    parser.add_argument("--confirm-cases", type=_cases, default=6, metavar="N",
                        help="how many cases --confirm re-measures, the largest moves first (default 6); 0: every "
                             "case, moved or not (about 5 s each): between two noisy stored runs a real change may "
                             "not be among the largest moves")


def _cases(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of cases (0: all), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (all) or more cases, got {value}")
    return value
