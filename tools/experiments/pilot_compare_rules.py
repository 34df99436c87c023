"""Re-score the pilot's stored samples under the candidate timing rules (the table in docs/perf-gate.md).

    .venv/bin/python tools/experiments/pilot_compare_rules.py

Counts, per file, the case comparisons each rule flags as a regression. Samples of
round r on side A and side B ran back to back, hence the paired variants.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "results/baselines/experiments/0-pilot"  # the data this script reads and writes (results/ holds data only)
RESAMPLES = 2000


def ratio_interval(a: np.ndarray, b: np.ndarray, paired: bool, confidence: float) -> float:
    """Lower end of the bootstrap interval of median(b) / median(a)."""
    def ratio(x, y, axis=-1):
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    result = stats.bootstrap((a, b), ratio, vectorized=True, paired=paired, confidence_level=confidence,
                             n_resamples=RESAMPLES, method="percentile", random_state=np.random.default_rng(0))
    return float(result.confidence_interval.low)


RULES: dict[str, Callable[[np.ndarray, np.ndarray, float], bool]] = {
    "ratio >= 1.05, Mann-Whitney p < 0.01, unpaired 95% interval above 1":
        lambda a, b, r: r >= 1.05 and stats.mannwhitneyu(b, a, alternative="greater").pvalue < 0.01
        and ratio_interval(a, b, False, 0.95) > 1,
    "ratio >= 1.05, paired 95% interval above 1": lambda a, b, r: r >= 1.05 and ratio_interval(a, b, True, 0.95) > 1,
    "ratio >= 1.05, paired 99% interval above 1": lambda a, b, r: r >= 1.05 and ratio_interval(a, b, True, 0.99) > 1,
    "ratio >= 1.10, paired 95% interval above 1": lambda a, b, r: r >= 1.10 and ratio_interval(a, b, True, 0.95) > 1,
    "ratio >= 1.05, Wilcoxon signed-rank p < 0.01":
        lambda a, b, r: r >= 1.05 and stats.wilcoxon(np.log(b / a), alternative="greater").pvalue < 0.01,
}


def main() -> None:
    for name in ("aa", "flops25", "flops10"):
        rows = [t for line in (HERE / f"{name}.jsonl").read_text().splitlines()
                for t in json.loads(line)["report"]["timing"]]
        print(f"{name}: {len(rows)} case comparisons")
        for rule, flags in RULES.items():
            hits = 0
            for row in rows:
                a, b = np.asarray(row["samples_a_s"]), np.asarray(row["samples_b_s"])
                hits += flags(a, b, float(np.median(b) / np.median(a)))
            print(f"  {hits:3d}  {rule}")


if __name__ == "__main__":
    main()
