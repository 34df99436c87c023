"""``mlpbench profile``: where one case's time goes (trace, top operators, FLOPs by module, memory)."""
