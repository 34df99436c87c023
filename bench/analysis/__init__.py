"""Statistics of timing samples, the between-run noise model and the interleaved A/B test. No torch, no
rendering.
"""
