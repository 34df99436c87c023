"""Data-parallel scaling on PyTorch's own engine: torchrun launches ranks, each runs a DDP-wrapped step.

``command`` (the CLI, the torchrun launches, the run folder), ``worker`` (what each rank runs),
``merge`` (ranks' records -> samples.csv / summary.csv). The efficiency and communication share
are computed from the tables by the reporting side (``bench.report.efficiency``). Nothing here
imports torch at package import.
"""
