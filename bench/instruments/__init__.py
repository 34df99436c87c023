"""The instruments: clocks, the timing protocol, exact counters, telemetry, the environment's fingerprint,
numerics and bounded child processes. Never imports engine/, limits/, report/ or commands/.
"""
