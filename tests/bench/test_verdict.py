"""One Verdict for both judges (issue 48), with each judge's words unchanged at its edge.

References: the gate's words as its stored baselines recorded them before the merge
(results/baselines/experiments/*.jsonl, written by the old gate's own Verdict), and compare's
words as its reports have always printed them (a hand list).
"""

import json
from pathlib import Path

import numpy as np

from bench.analysis import interleaved, noise
from bench.analysis.verdict import Verdict

STORED = Path(__file__).resolve().parents[2] / "results" / "baselines" / "experiments"


def _stored_gate_words() -> set[str]:
    words = set()
    for path in STORED.glob("*/*.jsonl"):
        for line in path.read_text().splitlines():
            timing = (json.loads(line).get("report") or {}).get("timing") or []
            words |= {t["verdict"] for t in timing}
    return words


def test_both_judges_share_one_verdict():
    assert interleaved.Verdict is Verdict and noise.Verdict is Verdict
    assert [v.value for v in Verdict] == ["slower", "faster", "inconclusive"]  # compare's words, by hand


def test_the_gate_still_writes_the_words_its_baselines_hold():
    assert _stored_gate_words() == {"regression", "improvement", "pass"}
    assert {v.gate_word for v in Verdict} == _stored_gate_words()
    rng = np.random.default_rng(0)
    a = 1e-3 * (1 + 0.01 * rng.standard_normal(20))
    for scale, word in ((1.5, "regression"), (1 / 1.5, "improvement"), (1.0, "pass")):
        b = a * scale * (1 + 0.001 * rng.standard_normal(20))
        assert interleaved.compare_samples(a, b).as_dict()["verdict"] == word, scale
