"""A runnable case: ``Case`` (built model, batches, step), the user-model plug-in, the case's accounting and
whether it fits the device's memory.
"""
