"""The case as plain data: its fields, phases, ``key=value`` options, sweep files and presets. No torch.
"""
