"""Command-line entry point ``mlpbench`` (also ``python -m bench``).

Strings are parsed here, once. Bad input is a one-line error and exit code 2,
never a traceback; nothing is written before the input is known to be good.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import EXIT_USAGE, OneLineParser, one_line_errors

# The command registry: each sub-command is one module of bench/commands/ with add_arguments(parser) and
# command(args) -> int. Only this module imports bench.commands (tests/test_layout.py).
COMMANDS = {
    "run": ("bench.commands.run", "run a sweep: a sweep file, a preset, or the case flags' own grid"),
    "show": ("bench.commands.show", "print a run's summary as a table"),
    "report": ("bench.commands.report", "write report.md and plots for one or more runs"),
    "compare": ("bench.commands.compare", "per-case ratios and verdicts between two runs (--confirm re-measures)"),
    "check": ("bench.commands.check", "performance regression gate (exact counters + noise-aware timing)"),
    "bisect": ("bench.commands.bisect", "the first commit at which the gate fails, by halving GOOD..BAD"),
    "profile": ("bench.commands.profile", "profile one case: trace, top operators, FLOPs by module, memory"),
    "crosscheck": ("bench.commands.crosscheck", "engine vs torch.utils.benchmark on three classic cases"),
    "ddp": ("bench.commands.ddp", "data-parallel scaling with torchrun + DistributedDataParallel"),
    "loader": ("bench.commands.loader", "the classic FashionMNIST loop end to end: DataLoader, copy, step"),
    "history": ("bench.commands.history", "performance over commits: a history database and its change points"),
    "tune": ("bench.commands.tune", "the fastest-step knobs on one case: the fastest, a waterfall, the command to reproduce it"),
}


# --------------------------------------------------------------------------- main


EVERY_COMMAND = "*"  # build_parser's default: every sub-command with its flags


def build_parser(command: str | None = EVERY_COMMAND) -> argparse.ArgumentParser:
    """The parser of every sub-command; only ``command``'s flags are added (every command's by default).

    A command's flags live in its own module, whose imports (torch, pandas, scipy) take seconds: ``mlpbench
    --help`` (``command=None``) imports none of them, and ``mlpbench report ...`` only the report's.
    """
    parser = OneLineParser(prog="mlpbench", description="Benchmark and profile MLP training steps (CPU and CUDA).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    wanted = lambda name: command in (name, EVERY_COMMAND)  # noqa: E731
    for name, (module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if wanted(name):
            importlib.import_module(module).add_arguments(command_parser)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names: its first word that is not an option (``mlpbench`` itself has only -h)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    return one_line_errors(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return importlib.import_module(COMMANDS[args.command][0]).command(args)


if __name__ == "__main__":
    sys.exit(main())
