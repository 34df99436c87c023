"""The hardware's measured limits (matmul ceiling, memory bandwidth, dispatch floor), the peaks, the core clock
and the speed-of-light floor they give each case. Never imports engine/ or report/.
"""
