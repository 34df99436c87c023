"""Every error mlpbench reports to its user, in one place (the CLI turns each into one line, exit code 2).

Kept free of imports so that any module, measuring or reporting, can raise them
without importing the CLI (nothing imports ``bench.cli``).
"""

from __future__ import annotations

EXIT_USAGE = 2  # bad input or an environment that cannot run the request
EXIT_INTERRUPTED = 130  # Ctrl-C: what was measured is kept (128 + SIGINT, the shell convention)


class UsageError(Exception):
    """Bad user input: reported as one line, exit code 2."""


class EnvironmentProblem(UsageError):
    """The comparison cannot be made on this machine or with these trees (exit code 2)."""
