"""Every error mlpbench reports to its user, in one place (the CLI turns each into one line, exit code 2).

Kept free of project imports so that any module, measuring or reporting, can raise them
without importing the CLI (nothing imports ``bench.cli``). SIGTERM joins Ctrl-C's path here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are a ``UsageError`` (one line, exit code 2), not argparse's usage dump."""

    def error(self, message: str):
        raise UsageError(message)


class EnvironmentProblem(UsageError):
    """The comparison cannot be made on this machine or with these trees (exit code 2)."""


class ModelError(UsageError):
    """A user's model that cannot be measured: not importable, a wrong signature, no nn.Module, a failing
    forward, an output the loss cannot take (exit code 2 at the CLI; an error row inside a sweep)."""


def one_line_errors(run: Callable[[], int], program: str = "mlpbench") -> int:
    """``run()``'s exit code, with every error as one line on stderr: bad input and a missing package exit 2,
    Ctrl-C 130, a bug 1 (``MLPBENCH_DEBUG=1`` re-raises it for the traceback). Used by ``mlpbench`` and the GPU kit."""
    try:
        with sigterm_as_interrupt():
            return run()
    except (UsageError, ValueError) as exc:
        print(f"{program}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{program}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:  # a package this python lacks (not one of ours): the environment, not a bug
        if (exc.name or "").split(".")[0] in ("bench", "mlp", "tools"):
            return _internal_error(exc, program)
        print(f"{program}: error: {sys.executable} lacks the package {exc.name!r}; run with a python that has "
              f"the project's packages (make targets: PY={_venv_python()}) or install them there "
              "(pip install -c constraints.txt -e .)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; MLPBENCH_DEBUG=1 shows the traceback
        return _internal_error(exc, program)


def _internal_error(exc: Exception, program: str) -> int:
    if os.environ.get("MLPBENCH_DEBUG"):
        raise exc
    print(f"{program}: internal error: {type(exc).__name__}: {exc} (MLPBENCH_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return 1


def _venv_python() -> str:
    """The checkout's own venv python where there is one (``make venv``), else the path it would have."""
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else ".venv/bin/python"
