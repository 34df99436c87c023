"""A record of the torch functions a piece of code calls, for tests that check what a kernel touches or where a
factory puts its tensor: (name, positional args, keyword args) of each call made while the mode is on.

A function mode, not a dispatch mode: it sees ``torch.full(..., device=...)`` with its keywords, ``c.copy_(a)`` and
``torch.add(a, b, out=c)`` with their tensors, and entering it costs nothing (entering a TorchDispatchMode imports
torch._dynamo, about 8 s on the shared 2-core machine).
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode


class TorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, tuple, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls.append((func.__name__, tuple(args), dict(kwargs)))
        return func(*args, **kwargs)

    def named(self, *names: str) -> list[tuple[str, tuple, dict]]:
        """The calls of these functions, in order."""
        return [call for call in self.calls if call[0] in names]

    @staticmethod
    def tensors(call) -> list[tuple[torch.dtype, str, int]]:
        """(dtype, device type, elements) of each tensor a call was given, keywords (``out=``) included."""
        _, args, kwargs = call
        return [(t.dtype, t.device.type, t.numel()) for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
