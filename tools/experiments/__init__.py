"""Experiments behind the figures under results/: each script reads and writes its data there."""
