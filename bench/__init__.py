"""mlpbench's benchmark engine: cases, timing, runner, results store, reports."""
