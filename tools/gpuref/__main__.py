"""``python -m tools.gpuref`` (``make gpu-reference``): the kit's imports run inside the one-line error handling, so
a python without the project's packages gets one line naming them, not a traceback."""

import importlib
import sys

from bench.errors import one_line_errors

sys.exit(one_line_errors(lambda: importlib.import_module("tools.gpuref.command").main()))
