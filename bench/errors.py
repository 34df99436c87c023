"""Every error mlpbench reports to its user, in one place (the CLI turns each into one line, exit code 2).

Kept free of project imports so that any module, measuring or reporting, can raise them
without importing the CLI (nothing imports ``bench.cli``). SIGTERM joins Ctrl-C's path here.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

EXIT_USAGE = 2  # bad input or an environment that cannot run the request
EXIT_INTERRUPTED = 130  # Ctrl-C: what was measured is kept (128 + SIGINT, the shell convention)


ONE_LINE_CHARS = 300  # an error reported in a table cell or a launcher line stays readable


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, capped at ``ONE_LINE_CHARS`` ("" when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:ONE_LINE_CHARS] if lines else ""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner's cancel, a timeout, ``kill``) unwinds like Ctrl-C: ``finally`` blocks run and
    what was measured is kept. Only in the main thread (elsewhere signals are left alone)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    try:
        old = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class UsageError(Exception):
    """Bad user input: reported as one line, exit code 2."""


class EnvironmentProblem(UsageError):
    """The comparison cannot be made on this machine or with these trees (exit code 2)."""


class ModelError(UsageError):
    """A user's model that cannot be measured: not importable, a wrong signature, no nn.Module, a failing
    forward, an output the loss cannot take (exit code 2 at the CLI; an error row inside a sweep)."""
