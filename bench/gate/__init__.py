"""``mlpbench check``, the regression gate: exact counters, interleaved A/B timing, their statistics and report.

Kept import-free: ``worker.py`` also runs as a script and loads its instruments by path.
"""
