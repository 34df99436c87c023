"""A clock for tests of the timing and limit protocols: it moves only when a fake step or kernel says so."""

from __future__ import annotations

from bench.instruments.clocks import Clock


class VirtualClock(Clock):
    """``now`` is in seconds; a fake step adds what its call takes, so each sample shows which calls it timed."""

    def __init__(self, device=None):
        super().__init__(device)
        self.now = 0.0

    def mark(self):
        return self.now

    @staticmethod
    def elapsed_s(start, end) -> float:
        return end - start
