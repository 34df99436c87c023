"""The between-run noise evaluation (results/noise-eval): collect pairs of runs, --confirm campaigns, analyse."""
