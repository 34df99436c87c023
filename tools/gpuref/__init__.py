"""The GPU kit: `make gpu-reference` (`python -m tools.gpuref`), one prepared command that verifies and measures the CUDA half."""
