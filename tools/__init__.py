"""Checkout-only code, not in the wheel: the GPU kit and the experiments behind results/. Nothing in bench/
imports it.
"""
