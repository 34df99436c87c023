"""The GPU kit: `mlpbench gpu-reference`, one prepared command that verifies and measures the CUDA half."""
