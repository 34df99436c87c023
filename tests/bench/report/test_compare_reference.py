"""bench.report.compare's pieces on hand-built tables (issue 50: mutmut's survivors of compare).

The older compare tests run a real tiny sweep; these pin the small rules beside it, each against a hand count or
scipy: the within-run reading at its edges, the conservative interval from two summaries, when samples are enough
for a bootstrap, the measurement order, which rows are the change under test (and so stay out of the run-level
factor), the summary line's geometric mean, when a comparison is undecided, and the numerics column.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import noise
from bench.report import compare
from bench.report.change import Work
from bench.report.compare import Ratio


@pytest.mark.parametrize("low, high, reading", [
    (1.0, 1.2, "within noise"),  # an end exactly at 1 does not exclude it
    (1.0000001, 1.2, "B slower"),
    (0.8, 1.0, "within noise"),
    (0.8, 0.9999999, "B faster"),
    (math.nan, math.nan, "within noise"),  # no interval is never significant
])
def test_the_within_run_reading_at_the_edges_of_its_interval(low, high, reading):
    assert Ratio(1.1 if reading != "B faster" else 0.9, low, high, "x").verdict == reading


def test_two_summaries_give_the_widest_ratio_their_intervals_allow():
    a = {"median_s": 2.0, "ci_low_s": 1.8, "ci_high_s": 2.5}
    b = {"median_s": 3.0, "ci_low_s": 2.7, "ci_high_s": 3.6}
    r = compare.interval_ratio(a, b)
    assert (r.ratio, r.low, r.high, r.method) == (1.5, 2.7 / 2.5, 3.6 / 1.8, "summary CIs")


def test_two_samples_a_side_are_enough_for_a_bootstrap_one_is_not():
    a_row = {"median_s": 1.0, "ci_low_s": 0.9, "ci_high_s": 1.1}
    b_row = {"median_s": 2.0, "ci_low_s": 1.9, "ci_high_s": 2.1}
    assert compare.MIN_SAMPLES == 2
    assert compare.ratio_of_medians(a_row, b_row, [1.0, 1.1], [2.0, 2.2]).method == "bootstrap"
    for a_s, b_s in [([1.0], [2.0, 2.2]), ([1.0, 1.1], [2.0]), (None, [2.0, 2.2]), ([1.0, 1.1], None)]:
        r = compare.ratio_of_medians(a_row, b_row, a_s, b_s)
        assert (r.method, r.ratio) == ("summary CIs", 2.0), (a_s, b_s)


def test_the_bootstrap_ratio_is_numpys_ratio_of_medians_with_scipys_interval():
    a, b = [1.0, 1.2, 0.9, 1.1, 1.05], [2.0, 2.1, 2.4, 1.9, 2.2, 2.05]
    r = compare.bootstrap_ratio(a, b)
    ci = sps.bootstrap((np.array(a), np.array(b)), lambda x, y, axis=-1: np.median(y, axis=axis) /
                       np.median(x, axis=axis), paired=False, confidence_level=0.95, n_resamples=4000,
                       method="percentile", random_state=np.random.default_rng(0)).confidence_interval
    assert r.ratio == np.median(b) / np.median(a) and r.method == "bootstrap"
    assert (r.low, r.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))


def test_the_measurement_order_is_each_cases_first_row():
    summary = pd.DataFrame({"case_id": ["c", "c", "a", "b", "a"], "phase": ["step", "forward", "step", "step", "x"]})
    assert compare.measurement_order(summary) == {"c": 0, "a": 1, "b": 2}
    assert compare.measurement_order(None) == {} and compare.measurement_order(pd.DataFrame({"x": [1]})) == {}


def _table(ratios, changes=None, works=None, order=None) -> pd.DataFrame:
    """A ratio table as compare_runs makes it; no samples (so no fastest-block check), measured in ``order``."""
    n = len(ratios)
    order = list(range(n)) if order is None else order
    return pd.DataFrame({"case": [f"c{i}" for i in range(n)], "phase": "step", "ratio": ratios,
                         "ci_low": [r * 0.99 for r in ratios], "ci_high": [r * 1.01 for r in ratios],
                         "within_run": "x", "change": changes or [""] * n,
                         "work_verdict": works or [Work.SAME] * n, "order_a": order, "order_b": order,
                         "fastest_ratio": math.nan, "slowest_ratio": math.nan})


def test_which_rows_are_the_change_under_test():
    t = _table([1.0] * 6, changes=["", "args a -> b", "", "", "", ""],
               works=[Work.SAME, Work.SAME, Work.UNCOUNTED, Work.MORE, Work.LESS, Work.MIXED])
    assert compare.changed(t).tolist() == [False, True, False, True, True, True]
    assert compare.changed(t.drop(columns="change")).tolist() == [False] * 6


def test_the_run_level_factor_is_the_unchanged_cases_alone():
    # 6 unchanged cases at 1.0 (the machine did not move) and 7 changed ones twice as slow: over every row the
    # median would be 2.0 and call none of them slower; over the controls it is 1.0. Measured alternately, so that
    # no three changed cases are neighbours (a stretch that the time-local check would withdraw)
    ratios = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98] + [2.0] * 7
    t = _table(ratios, changes=[""] * 6 + ["source x -> y"] * 7, order=[1, 3, 5, 7, 9, 11, 0, 2, 4, 6, 8, 10, 12])
    table, factors, overall = compare.judge(t, [])
    assert factors["step"].log_factor == pytest.approx(np.median(np.log(ratios[:6])))
    assert factors["step"].n_cases == 6
    assert table["verdict"].tolist()[6:] == ["slower"] * 7 and overall.verdict is noise.Verdict.SLOWER
    # no unchanged row at all: every row makes the factor
    _, every, _ = compare.judge(_table([2.0] * 7, changes=["x"] * 7), [])
    assert every["step"].n_cases == 7 and every["step"].factor == pytest.approx(2.0)


def test_each_phase_has_its_own_factor_and_the_overall_verdict_reads_the_steps():
    step = _table([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5])
    fwd = _table([3.0] * 7).assign(phase="forward")
    table, factors, overall = compare.judge(pd.concat([fwd, step], ignore_index=True), [])
    assert factors["forward"].factor == pytest.approx(3.0) and factors["step"].factor == pytest.approx(1.0)
    assert table["verdict"].tolist() == ["inconclusive"] * 13 + ["slower"]
    assert overall.verdict is noise.Verdict.SLOWER and overall.counts["slower"] == 1
    # no step phase: the first phase's factor names the overall verdict
    _, _, fwd_only = compare.judge(fwd, [])
    assert "run-level factor 3.000" in fwd_only.reason


def test_the_summary_line_counts_the_verdicts_and_takes_scipys_geometric_mean():
    t = pd.DataFrame({"ratio": [1.0, 2.0, 4.0], "within_run": ["within noise", "B slower", "B slower"],
                      "verdict": ["inconclusive", "slower", "slower"]})
    line = compare.comparison_summary(t)
    assert line == (f"3 case-phases: 2 slower, 1 inconclusive; geometric mean B/A = {sps.gmean([1, 2, 4]):.3f}. "
                    "The within-run intervals alone would flag 2 (they do not hold the drift between runs).")


def _comparison(overall, verdicts, changes):
    table = pd.DataFrame({"verdict": verdicts, "change": changes, "work_verdict": Work.SAME})
    return compare.Comparison(table, [], [], {}, noise.OverallVerdict(overall, "r"))


def test_undecided_is_an_inconclusive_overall_or_changed_case():
    I, S = noise.Verdict.INCONCLUSIVE, noise.Verdict.SLOWER  # noqa: E741
    assert compare.undecided(_comparison(I, ["slower"], [""]))
    assert compare.undecided(_comparison(S, ["slower", "inconclusive"], ["", "x"]))
    assert not compare.undecided(_comparison(S, ["slower", "inconclusive"], ["x", ""]))


def test_the_reasons_leave_out_only_the_machine_blocked_inconclusive_rows():
    t = pd.DataFrame({"case": ["a", "b", "c"], "phase": "step", "verdict": ["slower", "inconclusive", "inconclusive"],
                      "reason": ["z 5", "machine states differ: load", "within noise"]})
    assert compare.verdict_reasons(t) == ["- a (step): slower: z 5", "- c (step): inconclusive: within noise"]


def _run(flags: dict) -> SimpleNamespace:
    ids = list(flags)
    return SimpleNamespace(summary=pd.DataFrame({"case_id": ids + ids, "phase": ["step"] * len(ids) + ["forward"] *
                                                 len(ids), "numerics": list(flags.values()) + ["fwd"] * len(ids)}))


def test_the_numerics_column_names_the_side_that_flags_and_prefers_bs_errors():
    table = pd.DataFrame({"case_id": ["p", "q", "r", "s"], "case_id_b": ["p", "q", "r", "s"]})
    a = _run({"p": "", "q": "beyond A", "r": "beyond A", "s": "reference"})
    b = _run({"p": "beyond B", "q": "", "r": "beyond B", "s": ""})
    out = compare.with_numerics(table, a, b)
    assert out["numerics"].tolist() == ["B: beyond B", "A: beyond A", "A and B: beyond B", ""]
    quiet = _run({"p": "", "q": "", "r": "reference", "s": ""})
    assert "numerics" not in compare.with_numerics(table, quiet, quiet)


def test_the_lines_say_the_verdict_each_state_difference_and_each_factor():
    f = noise.CommonFactor(6, math.log(1.5), 0.04, 0.01, True)
    c = compare.Comparison(pd.DataFrame(), [], [noise.StateDifference("load", "load 1 vs 5", True),
                                             noise.StateDifference("bandwidth", "bandwidth 1.3", False)],
                           {"step": f}, noise.OverallVerdict(noise.Verdict.SLOWER, "2 of 6 cases slower"))
    assert compare.comparison_lines(c) == [
        "Verdict: **slower**: 2 of 6 cases slower.",
        "Machine state: load 1 vs 5 (beyond tolerance: verdicts inconclusive)",
        "Machine state: bandwidth 1.3",
        f"Run-level factor (step): 1.500 over 6 cases, case-to-case between-run noise {math.expm1(0.04):.1%}",
        f"Smallest change these two runs can call (step): {f.smallest_verdict:.0%} in a case, against the factor; "
        "smaller ones: `compare --confirm --confirm-cases 0` re-measures every case interleaved",
    ]
    assert c.blocking == [c.differences[0]]


# ---- joining two runs and the ratio table, on runs written by hand ----

from bench.model.case_fields import FIELD_DEFAULTS
from bench.report.tables import identity_columns  # noqa: E402


def _summary_rows(cases, device="cpu", model_args=None):
    """One ok step row per (case_id, width, median_s): every case field at its default but width and device."""
    rows = []
    for case_id, width, median in cases:
        rows.append({**FIELD_DEFAULTS, "width": width, "device": device, "case_id": case_id, "label": f"w{width}",
                     "phase": "step", "status": "ok", "median_s": median, "ci_low_s": median * 0.9,
                     "ci_high_s": median * 1.1, **({"model_args": model_args[case_id]} if model_args else {})})
    return pd.DataFrame(rows)


def _samples(blocks: dict) -> pd.DataFrame:
    return pd.DataFrame([{"case_id": c, "phase": "step", "seconds": s} for c, seconds in blocks.items() for s in seconds])


def test_two_runs_join_case_by_case_with_each_ratio_and_its_blocks_extremes():
    a = SimpleNamespace(summary=_summary_rows([("a1", 64, 1.0), ("a2", 128, 2.0), ("a3", 256, 4.0)]),
                        samples=_samples({"a1": [1.0, 1.2, 0.9], "a2": [2.0, 2.5, 1.5]}), meta={})
    b = SimpleNamespace(summary=_summary_rows([("b2", 128, 3.0), ("b1", 64, 1.5), ("b9", 512, 1.0)]),
                        samples=_samples({"b1": [1.5, 1.6, 1.2], "b2": [3.0, 3.3, 2.4]}), meta={})
    table, ignored = compare.compare_runs(a, b)
    assert ignored == []
    got = table.set_index("case_id")
    assert sorted(got.index) == ["a1", "a2"]  # a3 and b9 are in one run only
    assert got.loc["a1", "case_id_b"] == "b1" and got.loc["a2", "case_id_b"] == "b2"
    assert got.loc["a1", "ratio"] == np.median([1.5, 1.6, 1.2]) / np.median([1.0, 1.2, 0.9])
    assert got.loc["a1", "fastest_ratio"] == 1.2 / 0.9 and got.loc["a1", "slowest_ratio"] == 1.6 / 1.2
    assert got.loc["a2", "fastest_ratio"] == 2.4 / 1.5 and got.loc["a2", "slowest_ratio"] == 3.3 / 2.5
    assert (got.loc["a1", "median_a_s"], got.loc["a1", "median_b_s"], got.loc["a1", "case"]) == (1.0, 1.5, "w64")
    assert set(got["method"]) == {"bootstrap"} and set(got["phase"]) == {"step"}
    # measurement order: each case's row position in its own run's summary
    assert (got.loc["a1", "order_a"], got.loc["a1", "order_b"]) == (0, 1)
    assert (got.loc["a2", "order_a"], got.loc["a2", "order_b"]) == (1, 0)
    assert got.loc["a1", "change"] == "" and got.loc["a1", "work_verdict"] == Work.UNCOUNTED


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the zero block: resamples whose median is 0
def test_without_blocks_the_ratio_uses_the_summaries_and_no_extremes():
    a = SimpleNamespace(summary=_summary_rows([("a1", 64, 2.0)]), samples=None, meta={})
    b = SimpleNamespace(summary=_summary_rows([("b1", 64, 3.0)]), samples=_samples({"b1": [3.0, 3.1]}), meta={})
    row = compare.compare_runs(a, b)[0].iloc[0]
    assert (row["ratio"], row["method"]) == (1.5, "summary CIs")
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(2.7 / 2.2), pytest.approx(3.3 / 1.8))  # B's low / A's high
    assert math.isnan(row["fastest_ratio"]) and math.isnan(row["slowest_ratio"])
    zero = SimpleNamespace(summary=a.summary, samples=_samples({"a1": [0.0, 2.0]}), meta={})
    assert math.isnan(compare.compare_runs(zero, b)[0].iloc[0]["fastest_ratio"])  # a zero block: no ratio of extremes


def test_cpu_and_gpu_runs_join_ignoring_the_device_only_when_nothing_joins_with_it():
    cpu = _summary_rows([("c", 64, 1.0)])
    gpu = _summary_rows([("g", 64, 0.25)], device="cuda")
    joined, ignored = compare.match_cases(cpu, gpu, ["step"])
    assert ignored == ["device"] and joined["case_id_b"].tolist() == ["g"]
    both = pd.concat([gpu, _summary_rows([("c2", 64, 2.0)])], ignore_index=True)
    joined, ignored = compare.match_cases(cpu, both, ["step"])
    assert ignored == [] and joined["case_id_b"].tolist() == ["c2"]
    nothing, ignored = compare.match_cases(cpu, _summary_rows([("x", 32, 1.0)]), ["step"])
    assert len(nothing) == 0 and ignored == []
    assert len(compare.match_cases(cpu, cpu, ["forward"])[0]) == 0  # only the phases asked


def test_the_same_user_model_with_other_arguments_is_paired_one_to_one():
    keys = identity_columns()
    assert "model_args" in keys and "model" in keys

    def user(case_id, args, width=0):
        return {**FIELD_DEFAULTS, "model": "m.py:Net", "model_args": args, "width": width, "case_id": case_id,
                "label": case_id, "phase": "step", "status": "ok", "median_s": 1.0, "ci_low_s": 0.9, "ci_high_s": 1.1}
    a = pd.DataFrame([user("a1", "k=1"), user("a2", "k=5", width=1)])
    b = pd.DataFrame([user("b1", "k=2"), user("b2", "k=5", width=1)])
    joined, _ = compare.match_cases(a, b, ["step"])
    pairs = sorted(zip(joined["case_id_a"], joined["case_id_b"], joined["model_args_a"], joined["model_args_b"]))
    assert pairs == [("a1", "b1", "k=1", "k=2"), ("a2", "b2", "k=5", "k=5")]
    # two of B's rows could pair with A's one: not one to one, so not paired
    b_two = pd.DataFrame([user("b1", "k=2"), user("b3", "k=3"), user("b2", "k=5", width=1)])
    joined, _ = compare.match_cases(a, b_two, ["step"])
    assert sorted(joined["case_id_a"]) == ["a2"]
    # a built-in network's rows (no model) are never paired so
    plain = pd.DataFrame([{**user("p1", "k=1"), "model": ""}])
    plain_b = pd.DataFrame([{**user("q1", "k=2"), "model": ""}])
    assert len(compare.match_cases(plain, plain_b, ["step"])[0]) == 0


def test_the_printed_table_has_a_row_per_case_with_its_numbers():
    t = pd.DataFrame({"case": ["w64"], "phase": ["step"], "median_a_s": [0.001], "median_b_s": [0.0015],
                      "ratio": [1.5], "ci_low": [1.4], "ci_high": [1.6], "within_run": ["B slower"],
                      "relative": [1.25], "z": [4.2], "verdict": ["slower"], "work": [""], "numerics": ["B: x"]})
    text = compare.format_comparison(t)
    header, rule, row = text.splitlines()
    cells = [c.strip() for c in row.strip("|").split("|")]
    names = [c.strip() for c in header.strip("|").split("|")]
    assert dict(zip(names, cells)) == {"case": "w64", "phase": "step", "A ms": "1.000", "B ms": "1.500",
                                       "B/A": "1.500", "95% CI (within runs)": "[1.400, 1.600]",
                                       "vs run factor": "1.250", "z": "+4.2", "verdict": "slower",
                                       "numerics vs fp32 eager": "B: x"}
    bare = compare.format_comparison(t.drop(columns=["relative", "z", "verdict", "numerics"]).assign(
        within_run="within noise"))
    cells = dict(zip([c.strip() for c in bare.splitlines()[0].strip("|").split("|")],
                     [c.strip() for c in bare.splitlines()[2].strip("|").split("|")]))
    assert cells["verdict"] == "within noise" and cells["vs run factor"] == "" and cells["z"] == ""


def test_a_comparison_of_runs_without_a_shared_case_is_inconclusive_with_the_states_told():
    a = SimpleNamespace(summary=_summary_rows([("a1", 64, 1.0)]), samples=None, meta={"load_average_1m_start": 0.5,
                                                                                       "env": {"cpu_count": 2}})
    b = SimpleNamespace(summary=_summary_rows([("b1", 32, 1.0)]), samples=None, meta={"load_average_1m_start": 3.0,
                                                                                      "env": {"cpu_count": 2}})
    c = compare.compare(a, b)
    assert len(c.table) == 0 and c.factors == {} and c.overall.verdict is noise.Verdict.INCONCLUSIVE
    assert [d.what for d in c.differences] == ["load"] and c.blocking == c.differences


# ---- judge: the columns it reads and writes, the blocking states, the phases' factors ----

def test_judge_passes_the_blocking_states_to_every_verdict_and_the_overall_one():
    block = noise.StateDifference("load", "load 0.4 vs 3.7", True)
    told = noise.StateDifference("bandwidth", "bandwidth B/A 1.30", False)
    table, _, overall = compare.judge(_table([1.0] * 6 + [2.0]), [told, block])
    assert set(table["verdict"]) == {"inconclusive"}
    assert set(table["reason"]) == {"machine states differ: load 0.4 vs 3.7"}
    assert overall.verdict is noise.Verdict.INCONCLUSIVE and overall.reason.startswith("machine states differ: load")


def test_judge_writes_each_cases_relative_move_and_z():
    ratios = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5]
    table, factors, _ = compare.judge(_table(ratios), [])
    f = factors["step"]
    assert table["relative"].tolist() == pytest.approx([r / f.factor for r in ratios])
    v = noise.case_verdict(1.5, 1.5 * 0.99, 1.5 * 1.01, f)  # the last case, judged alone against the same factor
    assert table["z"].iloc[-1] == pytest.approx(v.z) and table["reason"].iloc[-1] == v.reason


def test_judge_keeps_the_phases_in_table_order_and_reads_the_step_factor_for_the_overall_verdict():
    opt = _table([2.0] * 7).assign(phase="optimizer")
    fwd = _table([3.0] * 7).assign(phase="forward")
    _, factors, overall = compare.judge(pd.concat([opt, fwd], ignore_index=True), [])
    assert list(factors) == ["optimizer", "forward"] and "run-level factor 2.000" in overall.reason
    step = _table([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5])
    _, _, overall = compare.judge(pd.concat([fwd, step], ignore_index=True), [])
    assert "run-level factor 1.000" in overall.reason
    empty, none, verdict = compare.judge(_table([]), [])
    assert len(empty) == 0 and none == {} and verdict.verdict is noise.Verdict.INCONCLUSIVE


def test_judge_reads_a_table_without_orders_or_block_extremes():
    bare = _table([1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5]).drop(columns=["order_a", "order_b", "fastest_ratio",
                                                                          "slowest_ratio"])
    table, _, _ = compare.judge(bare, [])
    assert table["verdict"].tolist() == ["inconclusive"] * 6 + ["slower"]


def test_judge_withdraws_a_verdict_whose_fastest_block_stayed_and_one_beside_a_burst_edge():
    ratios = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 0.7]
    t = _table(ratios).assign(fastest_ratio=[1.0] * 6 + [0.98])  # the case's fastest block barely moved
    assert compare.judge(t, [])[0]["verdict"].iloc[-1] == "inconclusive"
    kept = _table(ratios).assign(fastest_ratio=ratios)  # it moved with the median: faster stands
    assert compare.judge(kept, [])[0]["verdict"].iloc[-1] == "faster"
    # the case measured just before it: 0.6x but inconclusive (a wide interval), its slowest block 0.9x, i.e. 1.5x
    # beyond its own median: a burst's edge, which withdraws its neighbour's verdict
    edge = _table([1.0, 1.01, 0.99, 1.0, 1.02, 0.6, 0.7]).assign(fastest_ratio=math.nan)
    edge.loc[5, ["ci_low", "ci_high"]] = [0.1, 3.6]
    edge["slowest_ratio"] = [1.0, 1.01, 0.99, 1.0, 1.02, 0.9, 0.7]
    assert compare.judge(edge, [])[0]["verdict"].tolist()[5:] == ["inconclusive", "inconclusive"]
    no_edge = edge.assign(slowest_ratio=[1.0, 1.01, 0.99, 1.0, 1.02, 0.6, 0.7])
    assert compare.judge(no_edge, [])[0]["verdict"].iloc[-1] == "faster"
    zero = kept.assign(fastest_ratio=[0.0] + ratios[1:], slowest_ratio=[0.0] + ratios[1:])  # a zero block: no log
    assert compare.judge(zero, [])[0]["verdict"].iloc[-1] == "faster"


def test_the_summary_line_of_no_rows_and_of_rows_without_verdicts():
    empty = pd.DataFrame({"ratio": [], "within_run": []})
    assert compare.comparison_summary(empty) == ("0 case-phases: ; geometric mean B/A = nan. The within-run intervals "
                                                 "alone would flag 0 (they do not hold the drift between runs).")
    plain = pd.DataFrame({"ratio": [2.0], "within_run": ["B slower"]})
    assert compare.comparison_summary(plain).startswith("1 case-phases: ; geometric mean B/A = 2.000.")


def test_a_prior_factor_says_so():
    f = noise.CommonFactor(3, 0.0, 0.15, 0.09, False)
    c = compare.Comparison(pd.DataFrame(), [], [], {"step": f}, noise.OverallVerdict(noise.Verdict.INCONCLUSIVE, "r"))
    assert compare.comparison_lines(c)[1].endswith("between-run noise 16.2% (prior)")


def test_the_numerics_column_when_a_run_has_none_or_lacks_the_case():
    table = pd.DataFrame({"case_id": ["p", "q"], "case_id_b": ["p", "q"]})
    old = SimpleNamespace(summary=pd.DataFrame({"case_id": ["p", "q"], "phase": "step"}))  # older than the column
    b = _run({"p": "beyond B"})  # B measured p only
    assert compare.with_numerics(table, old, b)["numerics"].tolist() == ["B: beyond B", ""]
    assert compare.with_numerics(table, b, old)["numerics"].tolist() == ["A: beyond B", ""]


def _run_pair(extra_phase=True):
    """Runs A and B of three cases; B's w128 does 20% more matmul work and is 1.5x slower; a forward row each."""
    a = _summary_rows([("a1", 64, 1.0), ("a2", 128, 2.0), ("a3", 256, 4.0)]).assign(matmul_flops=[100, 200, 400])
    b = _summary_rows([("b1", 64, 1.0), ("b2", 128, 3.0), ("b3", 256, 4.0)]).assign(matmul_flops=[100, 240, 400])
    if extra_phase:
        a = pd.concat([a, a.assign(phase="forward", median_s=a["median_s"] / 3)], ignore_index=True)
        b = pd.concat([b, b.assign(phase="forward", median_s=b["median_s"] / 3)], ignore_index=True)
    blocks = lambda ids, medians: _samples({c: [m * 0.99, m, m * 1.01] for c, m in zip(ids, medians)})  # noqa: E731
    return (SimpleNamespace(summary=a, samples=blocks(["a1", "a2", "a3"], [1.0, 2.0, 4.0]), meta={}),
            SimpleNamespace(summary=b, samples=blocks(["b1", "b2", "b3"], [1.0, 3.0, 4.0]), meta={}))


def test_the_ratio_table_of_the_step_phase_by_default_with_the_work_and_the_within_run_reading():
    a, b = _run_pair()
    table, _ = compare.compare_runs(a, b)
    assert table["phase"].tolist() == ["step"] * 3  # the forward rows only when asked for
    assert len(compare.compare_runs(a, b, ("step", "forward"))[0]) == 6
    row = table.set_index("case_id").loc["a2"]
    assert row["work"] == "+20.0% matmul FLOPs (exact)" and row["work_verdict"] == Work.MORE
    assert row["work_detail"].startswith("work per step +20.0%, exact: matmul FLOPs +20.0%")
    # every B block of w128 is above every A block: the interval excludes 1 whatever the resamples
    assert row["ci_low"] > 1 and row["within_run"] == "B slower"
    same = table.set_index("case_id").loc["a1"]
    assert same["within_run"] == "within noise" and same["work"] == "same (exact)"


def test_compare_judges_the_table_against_the_unchanged_cases():
    a, b = _run_pair()
    c = compare.compare(a, b)
    assert c.ignored == [] and c.differences == [] and list(c.factors) == ["step"]
    assert c.factors["step"].n_cases == 2  # a2's work changed: the factor is a1's and a3's
    got = c.table.set_index("case_id")
    assert c.factors["step"].factor == pytest.approx(1.0) and got.loc["a2", "relative"] == pytest.approx(1.5)
    # two unchanged cases are too few for a spread: the prior noise (15%) leaves 1.5x inconclusive, and says so
    assert set(got["verdict"]) == {"inconclusive"} and got.loc["a2", "reason"].endswith("(prior: fewer than 6 cases)")
    assert c.overall.verdict is noise.Verdict.INCONCLUSIVE and c.overall.counts["inconclusive"] == 3
    both = compare.compare(a, b, ("step", "forward"))
    assert set(both.factors) == {"step", "forward"} and len(both.table) == 6
    assert compare.compare(a, SimpleNamespace(summary=_summary_rows([("x", 8, 1.0)]), samples=None,
                                              meta={})).ignored == []


def test_a_user_models_argument_change_pairs_only_rows_not_joined_already():
    def user(case_id, args, width=0):
        return {**FIELD_DEFAULTS, "model": "m.py:Net", "model_args": args, "width": width, "case_id": case_id,
                "label": case_id, "phase": "step", "status": "ok", "median_s": 1.0, "ci_low_s": 0.9, "ci_high_s": 1.1}
    # a2 and b2 join exactly (k=5); b3 has a2's loose key but other args: a2 is taken, so b3 stays unpaired
    a = pd.DataFrame([user("a1", "k=1"), user("a2", "k=5", width=1)])
    b = pd.DataFrame([user("b1", "k=2"), user("b2", "k=5", width=1), user("b3", "k=7", width=1)])
    joined, _ = compare.match_cases(a, b, ["step"])
    assert sorted(zip(joined["case_id_a"], joined["case_id_b"])) == [("a1", "b1"), ("a2", "b2")]
    assert joined.index.tolist() == [0, 1]  # one row per pair, numbered afresh
    # the mirror: A's a3 has a2's loose key, and b2 is taken
    mirror, _ = compare.match_cases(pd.DataFrame([user("a1", "k=1"), user("a2", "k=5", width=1),
                                                  user("a3", "k=7", width=1)]),
                                    pd.DataFrame([user("b1", "k=2"), user("b2", "k=5", width=1)]), ["step"])
    assert sorted(zip(mirror["case_id_a"], mirror["case_id_b"])) == [("a1", "b1"), ("a2", "b2")]


def test_the_printed_table_of_no_rows_is_empty_and_the_format_is_the_one_asked():
    assert compare.format_comparison(pd.DataFrame()) == ""
    t = pd.DataFrame({"case": ["w64"], "phase": ["step"], "median_a_s": [0.001], "median_b_s": [0.0015],
                      "ratio": [1.5], "ci_low": [1.4], "ci_high": [1.6], "within_run": ["B slower"]})
    plain = compare.format_comparison(t, "plain")
    assert "|" not in plain and plain.split()[:2] == ["case", "phase"]


# ---- the spread between processes (issue 49): compare_runs reads it per side, judge adds it to the noise ----

def test_each_sides_spread_between_processes_gives_the_ratios_standard_error():
    # the log ratio's variance from pooling k process medians spread by cv: log(1 + cv)^2 / k per side, by hand
    a = SimpleNamespace(summary=_summary_rows([("a1", 64, 1.0)]).assign(between_process_cv=0.1, processes=4),
                        samples=None, meta={})
    b = SimpleNamespace(summary=_summary_rows([("b1", 64, 1.5)]).assign(between_process_cv=0.2, processes=5),
                        samples=None, meta={})
    row = compare.compare_runs(a, b)[0].iloc[0]
    assert row["process_se"] == pytest.approx(math.sqrt(math.log(1.1) ** 2 / 4 + math.log(1.2) ** 2 / 5), rel=1e-12)
    one = SimpleNamespace(summary=a.summary.assign(processes=1), samples=None, meta={})  # one process: no spread
    assert compare.compare_runs(one, b)[0].iloc[0]["process_se"] == pytest.approx(math.log(1.2) / math.sqrt(5))


def test_judge_adds_each_cases_spread_between_processes_to_its_noise():
    ratios = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5]
    plain, factors, _ = compare.judge(_table(ratios), [])
    assert plain["verdict"].iloc[-1] == "slower"
    spread = _table(ratios).assign(process_se=[0.0] * 6 + [0.2])
    table, _, overall = compare.judge(spread, [])
    f = factors["step"]
    within = math.log(1.01 / 0.99) / (2 * 1.96)  # the case's 95% interval [0.99r, 1.01r] as a standard error
    sigma = math.sqrt(within ** 2 + f.spread ** 2 + f.se ** 2 + 0.2 ** 2)
    assert table["z"].iloc[-1] == pytest.approx((math.log(1.5) - f.log_factor) / sigma, rel=1e-9)
    assert table["verdict"].iloc[-1] == "inconclusive" and overall.verdict is noise.Verdict.INCONCLUSIVE
    assert f"{math.expm1(0.2):.1%} of it between processes" in table["reason"].iloc[-1]
