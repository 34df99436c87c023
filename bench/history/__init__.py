"""``mlpbench history``: performance over commits, kept in a database, with change points found per series.

``series`` (what makes two numbers comparable), ``schema`` (tables and migrations),
``store`` (append and read), ``ingest`` (run folder -> points; the one reader of runs),
``detect`` (change points), ``render`` (Markdown and plots), ``evaluate`` (simulated
detection rate, delay, false alarms), ``command`` (the CLI).
"""
