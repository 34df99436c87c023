"""The one verdict on a change between two measurements (A before, B after): slower, faster, or neither shown.

Both judges use it: the gate's interleaved A/B test (``bench.analysis.interleaved``) and the between-run
noise model of ``compare`` (``bench.analysis.noise``). Each keeps its own words at the edge: ``compare``
writes the member's value ("slower", "faster", "inconclusive"); the gate's JSON, its stored baselines and
its report write ``gate_word`` ("regression", "improvement", "pass").
"""

from __future__ import annotations

import enum


class Verdict(str, enum.Enum):
    SLOWER = "slower"  # B slower than A beyond the noise and the minimum effect
    FASTER = "faster"
    INCONCLUSIVE = "inconclusive"  # no change shown: within noise, below the minimum effect, or withdrawn

    @property
    def gate_word(self) -> str:
        """The gate's word for this verdict, as its JSON and baselines have always stored it."""
        return GATE_WORDS[self]


GATE_WORDS = {Verdict.SLOWER: "regression", Verdict.FASTER: "improvement", Verdict.INCONCLUSIVE: "pass"}
