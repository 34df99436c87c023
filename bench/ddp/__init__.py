"""Data-parallel scaling on PyTorch's own engine: torchrun launches ranks, each runs a DDP-wrapped step.

``command`` (the CLI, the torchrun launches, the run folder), ``worker`` (what each rank runs),
``merge`` (ranks' records -> samples.csv / summary.csv), ``scaling`` (efficiency and communication
share, no torch). Nothing here imports torch at package import.
"""
