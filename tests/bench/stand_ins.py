"""The limits' stand-in values that tests/bench/conftest.py installs when a test does not measure the real ones.

A module of its own, not conftest: `from conftest import ...` finds whichever conftest was imported first under that
name (tests/perf/conftest.py in a whole-suite run).
"""

STAND_IN_BYTES_PER_S = 10e9
STAND_IN_PER_OP_S = 10e-6
