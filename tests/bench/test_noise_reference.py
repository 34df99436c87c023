"""bench.analysis.noise's pieces against hand counts, numpy and scipy (issue 50: mutmut's survivors of the noise model).

Each test was written against mutants the older noise tests let through (`make mutation MODULES=bench/analysis/noise.py`):
the machine state read from a meta.json, the tolerances of the state differences at their edges, the run record,
the run-level factor with few cases, a ratio's standard error from its interval, the case rule's two thresholds
and the overall verdict's counts. Expected values are written out by hand (or by numpy/scipy), never taken from
the module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import noise


def _meta(**over) -> dict:
    meta = {
        "env": {"cpu_model": "AMD EPYC", "torch": "2.14.1", "cuda": None, "device_name": "cpu", "torch_threads": 1,
                "cpu_capability": "AVX2", "cpu_count": 2, "load_average_1m": 0.7},
        "load_average_1m_start": 1.25, "load_average_1m_end": 2.5,
        "ceilings": {"cpu/fp32/t1": {"measured_tflops": 0.1, "pass_tflops": {"start": 0.08, "end": 0.1}},
                     "cpu/bf16/t1": {"measured_tflops": 0.0, "pass_tflops": {"start": 0.0, "end": 0.05}},
                     "cpu/fp16/t1": {"measured_tflops": "nan", "pass_tflops": {}}},
        "bandwidth": {"cpu/t1": {"bytes_per_s": 2e10}, "cpu/t2": {"bytes_per_s": float("inf")}},
        "dispatch": {"cpu": {"per_op_s": 4e-6}, "cuda": {"per_op_s": None}},
    }
    meta.update(over)
    return meta


def test_the_machine_state_is_read_from_meta_json_keeping_only_finite_positive_numbers():
    s = noise.machine_state(_meta())
    assert s.identity == {"cpu_model": "AMD EPYC", "torch": "2.14.1", "cuda": "", "device_name": "cpu",
                          "torch_threads": "1", "cpu_capability": "AVX2"}
    assert s.cores == 2 and isinstance(s.cores, int)
    assert (s.load_start, s.load_end, s.load) == (1.25, 2.5, 2.5)
    assert s.ceilings_tflops == {"cpu/fp32/t1": 0.1}  # a zero rate and a NaN one are no ceiling
    assert s.ceiling_drift == {"cpu/fp32/t1": pytest.approx(1.25)}  # end / start; a zero start is no drift
    assert s.probes == {"bandwidth": {"cpu/t1": 2e10}, "dispatch floor": {"cpu": 4e-6}}  # the declared probes
    assert s.as_dict()["cores"] == 2 and s.as_dict()["identity"]["torch"] == "2.14.1"


def test_the_start_load_falls_back_to_the_environment_and_a_missing_one_is_none():
    s = noise.machine_state(_meta(load_average_1m_start=None))
    assert s.load_start == 0.7 and s.load == 2.5
    bare = noise.machine_state({"env": {"cpu_count": "4"}})
    assert (bare.cores, bare.load_start, bare.load_end, bare.load) == (4, None, None, None)
    assert bare.ceilings_tflops == bare.ceiling_drift == {} and bare.probes == {"bandwidth": {}, "dispatch floor": {}}
    assert noise.machine_state({}).cores is None and noise.machine_state({}).identity["cpu_model"] == ""
    only_end = noise.machine_state({"load_average_1m_end": 3.0})
    assert only_end.load == 3.0


def _state(load=None, ceiling=None, drift=None, bandwidth=None, dispatch=None, cores=2, **identity):
    ident = {k: "x" for k in noise.IDENTITY_KEYS}
    ident.update(identity)
    return noise.MachineState(ident, cores, load, load, {"k": ceiling} if ceiling else {},
                              {"k": drift} if drift else {}, {"bandwidth": {"k": bandwidth} if bandwidth else {},
                                                              "dispatch floor": {"k": dispatch} if dispatch else {}})


@pytest.mark.parametrize("load_b, listed, decisive", [
    (1.0 + 0.49, False, False),  # 2 cores: tolerance 0.5 x 2 = 1.0; told from half of it, decisive beyond it
    (1.0 + 0.51, True, False),
    (1.0 + 0.99, True, False),
    (1.0 + 1.01, True, True),
    (1.0 - 1.01, True, True),  # either way
])
def test_a_load_difference_is_told_from_half_the_tolerance_and_decisive_beyond_it(load_b, listed, decisive):
    diffs = noise.state_differences(_state(load=1.0), _state(load=load_b))
    assert [d.what for d in diffs] == (["load"] if listed else [])
    if listed:
        assert diffs[0].decisive is decisive
        assert diffs[0].text == f"load 1.0 vs {load_b:.1f} ({load_b - 1.0:+.1f}; tolerance 1.0)"


def test_the_load_tolerance_scales_with_the_cores_of_either_run():
    # 8 cores: tolerance 4.0; a gap of 3 is told, not decisive. Cores unknown in A: B's count is used; in both: 1
    assert [d.decisive for d in noise.state_differences(_state(load=1.0, cores=8), _state(load=4.0, cores=8))] == [False]
    assert [d.decisive for d in noise.state_differences(_state(load=1.0, cores=None), _state(load=4.0, cores=8))] \
        == [False]
    assert [d.decisive for d in noise.state_differences(_state(load=1.0, cores=None), _state(load=1.6, cores=None))] \
        == [True]
    assert noise.state_differences(_state(load=None), _state(load=9.0)) == []


@pytest.mark.parametrize("ratio, listed, decisive", [
    (1.11, False, False),  # sqrt(1.25) = 1.118: told beyond it, decisive beyond 1.25 (log-symmetric)
    (1.12, True, False),
    (1.24, True, False),
    (1.26, True, True),
    (1 / 1.26, True, True),
    (1 / 1.11, False, False),
])
def test_a_ceiling_difference_is_told_beyond_the_square_root_of_the_tolerance(ratio, listed, decisive):
    diffs = noise.state_differences(_state(ceiling=0.1), _state(ceiling=0.1 * ratio))
    assert [d.what for d in diffs] == (["ceiling k"] if listed else [])
    if listed:
        assert diffs[0].decisive is decisive
        assert diffs[0].text == f"matmul ceiling k 100 vs {100 * ratio:.0f} GFLOP/s (B/A {ratio:.2f})"


@pytest.mark.parametrize("what, field", [("bandwidth", "bandwidth"), ("dispatch floor", "dispatch")])
def test_bandwidth_and_dispatch_differences_beyond_25_percent_are_told_never_decisive(what, field):
    a = _state(**{field: 1.0})
    assert noise.state_differences(a, _state(**{field: 1.24})) == []
    assert noise.state_differences(a, _state(**{field: 1 / 1.24})) == []
    far = noise.state_differences(a, _state(**{field: 1.3}))
    assert [(d.what, d.decisive) for d in far] == [(f"{what} k", False)]
    assert far[0].text == f"{what} k B/A 1.30 (a noisy probe: told, not decisive)"
    assert [d.decisive for d in noise.state_differences(a, _state(**{field: 1 / 1.3}))] == [False]


def test_every_identity_key_that_differs_is_decisive():
    diffs = noise.state_differences(_state(torch="2.14.1"), _state(torch="2.15.0", torch_threads=""))
    assert [(d.what, d.text, d.decisive) for d in diffs] == [("torch", "torch 2.14.1 vs 2.15.0", True),
                                                             ("torch_threads", "torch_threads x vs ?", True)]


def test_drifts_alike_and_small_or_bitwise_equal_block_nothing():
    bound = 1.5
    assert noise.state_differences(_state(drift=1.2), _state(drift=1.3)) == []
    assert noise.state_differences(_state(drift=0.4), _state(drift=0.4)) == []  # one measurement: a run and its copy
    unlike = noise.state_differences(_state(drift=1.0), _state(drift=bound * 1.01))
    assert [(d.what, d.decisive) for d in unlike] == [("drift k", True)]
    assert noise.state_differences(_state(drift=1.0), _state(drift=bound * 0.99)) == []


def test_the_run_record_by_hand():
    r = noise.run_record(_meta())
    # load 2.5 on 2 cores: busy; load change end - start = 2.5 - 1.25; drift 0.1 / 0.08 = 1.25
    assert r == {"model": "bench.analysis.noise", "load_1m": 2.5, "load_change": 1.25,
                 "ceiling_drift": {"cpu/fp32/t1": pytest.approx(1.25)},
                 "ceiling_drift_max_rel": pytest.approx(0.25), "busy": True}
    shrunk = noise.run_record(_meta(ceilings={"k": {"measured_tflops": 1, "pass_tflops": {"start": 1, "end": 0.8}}}))
    assert shrunk["ceiling_drift_max_rel"] == pytest.approx(1 / 0.8 - 1)  # the larger |log|, as a relative change
    quiet = noise.run_record(_meta(load_average_1m_start=0.5, load_average_1m_end=None, env={"cpu_count": 2},
                                   ceilings={}))
    assert quiet == {"model": "bench.analysis.noise", "load_1m": 0.5, "load_change": None, "ceiling_drift": {},
                     "ceiling_drift_max_rel": None, "busy": False}
    at_cores = noise.run_record(_meta(load_average_1m_start=2.0, load_average_1m_end=2.0))
    assert at_cores["busy"] is False and at_cores["load_change"] == 0.0  # busy is beyond one per core
    assert noise.run_record({"load_average_1m_end": 9.0})["busy"] is False  # cores unknown: not called busy


def test_the_factor_of_few_cases_is_their_median_with_the_prior_noise():
    f = noise.common_factor([0.1, 0.3, float("nan"), 0.2, float("inf")])
    assert (f.n_cases, f.estimated) == (3, False)
    assert f.log_factor == pytest.approx(0.2) and f.factor == pytest.approx(math.exp(0.2))
    assert f.spread == 0.15 and f.se == pytest.approx(0.15 / math.sqrt(3))
    empty = noise.common_factor([])
    assert (empty.n_cases, empty.log_factor, empty.spread, empty.se, empty.estimated) == (0, 0.0, 0.15, 0.15, False)
    five = noise.common_factor(np.linspace(-0.1, 0.1, 5))
    assert not five.estimated and five.se == pytest.approx(0.15 / math.sqrt(5))


def test_the_factor_of_six_or_more_cases_is_scipys_median_and_normal_mad():
    r = np.log(np.array([1.0, 1.1, 1.2, 1.3, 1.5, 1.45, 1.25]))
    f = noise.common_factor(r)
    mad = sps.median_abs_deviation(r, scale="normal")
    assert f.estimated and f.n_cases == 7
    assert f.log_factor == pytest.approx(np.median(r))
    assert f.spread == pytest.approx(mad, rel=1e-3)  # 1.4826 vs scipy's 1/Phi^-1(3/4) = 1.482602...
    assert f.se == pytest.approx(1.2533 * mad / math.sqrt(7), rel=1e-3)
    floor = noise.common_factor([0.05] * 8)  # no spread at all: the floor
    assert floor.spread == 0.02 and floor.se == pytest.approx(1.2533 * 0.02 / math.sqrt(8))


def test_the_smallest_verdict_is_z_times_the_noise_and_at_least_five_percent():
    f = noise.CommonFactor(12, 0.0, 0.03, 0.04, True)
    assert f.smallest_verdict == pytest.approx(math.exp(3.5 * 0.05) - 1)  # hypot(0.03, 0.04) = 0.05
    assert noise.CommonFactor(12, 0.0, 0.001, 0.001, True).smallest_verdict == 0.05


def test_a_ratios_standard_error_is_its_log_interval_over_two_z():
    assert noise.within_run_se(0.9, 1.1) == pytest.approx((math.log(1.1) - math.log(0.9)) / (2 * 1.96))
    z99 = sps.norm.ppf(0.995)
    assert noise.within_run_se(0.5, 2.0, z99) == pytest.approx(2 * math.log(2) / (2 * z99))
    for lo, hi in [(0.0, 1.1), (0.9, 0.0), (-1.0, 1.0), (0.9, float("inf")), (float("nan"), 1.1), (0.9, float("nan"))]:
        assert noise.within_run_se(lo, hi) == 0.0, (lo, hi)


def _factor(spread=0.02, se=0.0, log_factor=0.0, estimated=True):
    return noise.CommonFactor(12, log_factor, spread, se, estimated)


def test_the_case_rule_needs_both_z_and_the_minimum_effect():
    f = _factor(spread=0.02)  # no within-run noise: z = log(ratio) / 0.02
    at_z = math.exp(3.5 * 0.02)  # 7.25% change: z exactly 3.5, above 5%: a verdict
    assert noise.case_verdict(at_z * 1.0001, 0, 0, f).verdict is noise.Verdict.SLOWER
    below_z = noise.case_verdict(math.exp(3.49 * 0.02), 0, 0, f)
    assert below_z.verdict is noise.Verdict.INCONCLUSIVE and "(|z| < 3.5)" in below_z.reason
    small = _factor(spread=0.005)  # z 3.5 at 1.8%: then the effect decides
    under = noise.case_verdict(1.049, 0, 0, small)
    assert under.verdict is noise.Verdict.INCONCLUSIVE and "(change under 5%)" in under.reason
    assert noise.case_verdict(1.051, 0, 0, small).verdict is noise.Verdict.SLOWER
    assert noise.case_verdict(1 / 1.051, 0, 0, small).verdict is noise.Verdict.FASTER
    assert noise.case_verdict(1 / 1.049, 0, 0, small).verdict is noise.Verdict.INCONCLUSIVE


def test_the_case_z_is_over_all_three_noises_by_hand():
    f = _factor(spread=0.03, se=0.01, log_factor=math.log(1.2))
    v = noise.case_verdict(1.5, 1.5 / 1.05, 1.5 * 1.05, f)
    within = math.log(1.05) / 1.96
    z = math.log(1.5 / 1.2) / math.sqrt(within ** 2 + 0.03 ** 2 + 0.01 ** 2)
    assert v.z == pytest.approx(z) and v.relative == pytest.approx(1.25) and v.verdict is noise.Verdict.SLOWER
    assert v.reason == (f"B/A 1.500 is 1.250x the run-level factor 1.200, z {z:+.1f} against between-run noise "
                        f"{math.expm1(math.sqrt(within ** 2 + 0.03 ** 2 + 0.01 ** 2)):.1%}")
    prior = noise.case_verdict(1.5, 0, 0, _factor(spread=0.15, estimated=False))
    assert prior.reason.endswith("(prior: fewer than 6 cases)") and "within noise (|z| < 3.5)" in prior.reason


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan"), float("inf")])
def test_no_positive_finite_ratio_is_no_verdict(ratio):
    v = noise.case_verdict(ratio, 0.9, 1.1, _factor())
    assert v.verdict is noise.Verdict.INCONCLUSIVE and v.reason == "no ratio (a median is missing or not positive)"
    assert math.isnan(v.relative) and math.isnan(v.z)


def test_a_blocking_difference_names_each_one():
    block = [noise.StateDifference("load", "load 0.4 vs 3.7", True), noise.StateDifference("x", "cpu a vs b", True)]
    v = noise.case_verdict(2.0, 1.9, 2.1, _factor(), block)
    assert v.verdict is noise.Verdict.INCONCLUSIVE and v.reason == "machine states differ: load 0.4 vs 3.7; cpu a vs b"


def _v(verdict):
    return noise.CaseVerdict(verdict, "r", 1.0, 0.0)


def test_the_overall_verdict_counts_each_direction():
    f = _factor(spread=0.03, log_factor=math.log(1.5))
    S, F, I = noise.Verdict.SLOWER, noise.Verdict.FASTER, noise.Verdict.INCONCLUSIVE  # noqa: E741
    slower = noise.overall_verdict([_v(S), _v(I), _v(S)], f)
    assert slower.verdict is S and slower.counts == {"faster": 0, "slower": 2, "inconclusive": 1}
    assert slower.reason.startswith("2 of 3 cases slower beyond the run-level factor 1.500 (every case together: "
                                    "the machine, not the code; 12 cases, case noise 3.0%)")
    faster = noise.overall_verdict([_v(F), _v(I)], f)
    assert faster.verdict is F and faster.reason.startswith("1 of 2 cases faster beyond the run-level factor 1.500")
    mixed = noise.overall_verdict([_v(F), _v(S), _v(S)], f)
    assert mixed.verdict is I and mixed.reason.startswith("mixed: 2 slower, 1 faster beyond")
    none = noise.overall_verdict([_v(I)], f)
    assert none.verdict is I and none.reason.startswith("no case moved beyond the between-run noise around the run")
    blocked = noise.overall_verdict([_v(S)], f, [noise.StateDifference("load", "load 1 vs 5", True)])
    assert blocked.verdict is I and blocked.counts["slower"] == 1
    assert blocked.reason == "machine states differ: load 1 vs 5 (re-measure both interleaved: compare --confirm)"


@pytest.mark.parametrize("value, expected", [
    (1.5, 1.5), ("2.5", 2.5), (3, 3.0), (None, None), ("fast", None), (float("nan"), None), (float("-inf"), None),
    ([1.0], None),
])
def test_finite_or_none(value, expected):
    assert noise.finite_or_none(value) == expected


# ---- the edges of the state differences (each at a value a double hits exactly) ----

def test_state_differences_at_their_exact_edges():
    # load: 2 cores, tolerance 1.0: a gap of exactly 0.5 is not told, exactly 1.0 is told and not decisive
    assert noise.state_differences(_state(load=1.0), _state(load=1.5)) == []
    assert [d.decisive for d in noise.state_differences(_state(load=1.0), _state(load=2.0))] == [False]
    # ceiling B/A exactly 1.25 (log(1.25) == log(1 + 0.25) in doubles): told, not decisive
    assert [d.decisive for d in noise.state_differences(_state(ceiling=1.0), _state(ceiling=1.25))] == [False]
    # bandwidth and dispatch exactly 1.25: not told
    assert noise.state_differences(_state(bandwidth=1.0), _state(bandwidth=1.25)) == []
    # drift end/start 1.0 against exactly 1.5: neither apart by more than 1.5x nor moved more than 1.5x
    assert noise.state_differences(_state(drift=1.0), _state(drift=1.5)) == []


def test_drifts_apart_beyond_the_tolerance_though_neither_moved_far_block():
    # 0.8 and 1.25: each within 1.5x of 1, but B/A 1.5625 apart: the cases met the machine unlike
    diffs = noise.state_differences(_state(drift=0.8), _state(drift=1.25))
    assert [(d.what, d.decisive) for d in diffs] == [("drift k", True)]
    assert diffs[0].text == ("the machine moved during the runs: matmul ceiling k end/start 0.80 in A vs 1.25 in B "
                             "(tolerance 1.50x)")


def test_only_the_keys_both_runs_measured_are_compared():
    def state(key, value):
        return noise.MachineState({k: "x" for k in noise.IDENTITY_KEYS}, 2, None, None, {key: value}, {key: value},
                                  {"bandwidth": {key: value}, "dispatch floor": {key: value}})
    assert noise.state_differences(state("k", 1.0), state("j", 0.3)) == []
    a = noise.MachineState({k: "x" for k in noise.IDENTITY_KEYS}, 2, None, None, {}, {}, {"bandwidth": {"k": 2.0}, "dispatch floor": {}})
    b = noise.MachineState({k: "x" for k in noise.IDENTITY_KEYS}, 2, None, None, {}, {}, {"bandwidth": {"k": 2.6, "j": 9.0}})
    assert [d.text for d in noise.state_differences(a, b)] == ["bandwidth k B/A 1.30 (a noisy probe: told, not "
                                                                "decisive)"]


def test_ceiling_texts_are_in_gflops_and_a_missing_identity_reads_a_question_mark():
    diffs = noise.state_differences(_state(ceiling=1.0), _state(ceiling=1.3))
    assert diffs[0].text == "matmul ceiling k 1000 vs 1300 GFLOP/s (B/A 1.30)"
    ids = noise.state_differences(_state(torch=""), _state(torch="2.15.0"))
    assert [d.text for d in ids] == ["torch ? vs 2.15.0"]


# ---- the time-local checks, on verdicts written by hand ----

S, F, I = noise.Verdict.SLOWER, noise.Verdict.FASTER, noise.Verdict.INCONCLUSIVE  # noqa: E741


def _cv(verdict, relative, z, reason="r"):
    return noise.CaseVerdict(verdict, reason, relative, z)


def _quiet(n):
    return [_cv(I, 1.0, 0.1) for _ in range(n)]


def test_without_slowest_blocks_the_check_runs_and_a_length_mismatch_says_so():
    vs = _quiet(3)
    assert noise.time_local(vs, [0, 1, 2], [0, 1, 2], [0.0, 0.0, 0.0]) == vs
    with pytest.raises(ValueError, match="^time_local: one order and one fastest-block ratio per verdict$"):
        noise.time_local(vs, [0, 1], [0, 1, 2], [0.0, 0.0, 0.0])


def test_the_fastest_blocks_are_read_against_their_own_run_factor():
    # the machine 1.5x slower in every block; case 0 is 0.8x of that (B/A 1.2, FASTER). Its fastest block moved
    # 1.2x, i.e. 0.8x of the fastest blocks' factor 1.5: it followed the median, the verdict stands
    vs = [_cv(F, 0.8, -8.0)] + _quiet(6)
    fastest = [math.log(1.2)] + [math.log(1.5)] * 6
    out = noise.time_local(vs, range(7), range(7), fastest)
    assert out[0] is vs[0]


def test_a_fastest_block_exactly_half_the_medians_move_is_enough():
    # relative 4.0 (log 4 = 2 log 2 exactly), fastest block 2.0x over a factor of 1: exactly FASTEST_SHARE of it
    vs = [_cv(S, 4.0, 9.0)] + _quiet(6)
    out = noise.time_local(vs, range(7), range(7), [math.log(2.0)] + [0.0] * 6)
    assert out[0] is vs[0]
    under = noise.time_local(vs, range(7), range(7), [math.log(1.99)] + [0.0] * 6)[0]
    assert under.verdict is I and under.reason.startswith("a burst during the case: its fastest block moved 1.990x")
    assert (under.relative, under.z) == (4.0, 9.0)  # withdrawn, with its own numbers kept


def _burst_neighbour(z, fastest=0.0):
    """A neighbour whose median moved (z) and whose fastest block did not: a burst."""
    return _cv(I, math.exp(0.3 if z > 0 else -0.3), z), fastest


def test_a_burst_in_a_neighbour_at_exactly_z_stretch_withdraws_the_verdict_with_its_numbers():
    vs = [_cv(S, 1.3, 6.0, "own"), _cv(I, 1.3, 2.0)] + _quiet(5)
    fastest = [math.log(1.3), 0.0] + [0.0] * 5
    out = noise.time_local(vs, range(7), range(7), fastest)
    assert out[0].verdict is I and (out[0].relative, out[0].z) == (1.3, 6.0)
    assert out[0].reason == ("a stretch of neighbouring cases moved together: 1 case(s) measured next to it moved the "
                             "same way (z +2.0, each beyond 2.0, with a burst in their blocks), a burst on the machine "
                             "or a change to all of them; compare --confirm tells which (own)")
    below = noise.time_local([vs[0], _cv(I, 1.3, 1.99)] + vs[2:], range(7), range(7), fastest)
    assert below[0] is vs[0]


@pytest.mark.parametrize("orders_a, orders_b", [
    ([4, 5, 0, 1, 2, 3, 6], [4, 0, 5, 1, 2, 3, 6]),  # neighbours in A's order only, at ranks 4 and 5
    ([4, 0, 5, 1, 2, 3, 6], [4, 5, 0, 1, 2, 3, 6]),  # ... in B's only
])
def test_a_neighbour_in_either_runs_order_counts(orders_a, orders_b):
    vs = [_cv(S, 1.3, 6.0), _cv(I, 1.3, 3.0)] + _quiet(5)
    fastest = [math.log(1.3), 0.0] + [0.0] * 5
    assert noise.time_local(vs, orders_a, orders_b, fastest)[0].verdict is I
    far = [4, 0, 6, 1, 2, 3, 5]  # case 1 two ranks away in both orders: not a neighbour
    assert noise.time_local(vs, far, far, fastest)[0] is vs[0]


def test_a_burst_edge_in_a_faster_neighbours_slow_tail_withdraws_the_verdict():
    # 8 cases; case 1 (measured next to case 0) is 0.97x, inconclusive, but its slowest block moved 1.5x beyond its
    # median: a burst's edge. The other tails did not move (slowest = median).
    vs = [_cv(F, 0.7, -6.0), _cv(I, 0.97, -0.5)] + _quiet(6)
    slowest = [math.log(0.7), math.log(0.97 * 1.5)] + [0.0] * 6
    fastest = [math.log(0.7), math.log(0.97)] + [0.0] * 6
    out = noise.time_local(vs, range(8), range(8), fastest, slowest)
    assert out[0].verdict is I and "1 case(s)" in out[0].reason and "with a burst in their blocks" in out[0].reason


def test_a_slow_tail_exactly_at_the_minimum_effect_is_an_edge():
    # the tails' spread is at its floor (0.02), so the edge threshold is log(1.05); case 1's tail is exactly that
    vs = [_cv(S, 1.3, 6.0)] + _quiet(7)
    slowest = [math.log(1.3), math.log1p(0.05)] + [0.0] * 6
    fastest = [math.log(1.3)] + [0.0] * 7
    assert noise.time_local(vs, range(8), range(8), fastest, slowest)[0].verdict is I
    slowest[1] = math.log1p(0.049)
    assert noise.time_local(vs, range(8), range(8), fastest, slowest)[0] is vs[0]


def test_a_row_of_three_at_exactly_z_stretch_is_a_stretch_and_inconclusive_rows_keep_their_reason():
    vs = [_cv(S, 1.3, 6.0, "own"), _cv(I, 1.1, 2.0, "kept"), _cv(I, 1.1, 2.0, "kept")] + _quiet(4)
    fastest = [math.log(1.3), math.log(1.1), math.log(1.1)] + [0.0] * 4
    out = noise.time_local(vs, range(7), range(7), fastest)
    assert out[0].verdict is I and (out[0].relative, out[0].z) == (1.3, 6.0)
    assert out[0].reason == ("a stretch of neighbouring cases moved together: 2 case(s) measured next to it moved the "
                             "same way (z +2.0, +2.0, each beyond 2.0, 3 or more in a row), a burst on the machine or "
                             "a change to all of them; compare --confirm tells which (own)")
    assert out[1:3] == vs[1:3]  # an inconclusive verdict is left as it was
    weak = [vs[0], _cv(I, 1.05, 1.5), _cv(I, 1.05, 1.5)] + _quiet(4)  # moved, but under Z_STRETCH: no stretch
    assert noise.time_local(weak, range(7), range(7), fastest)[0] is vs[0]


# ---- the overall verdict's texts and counts ----

def test_the_overall_verdict_texts_and_counts_when_mixed_none_or_blocked():
    f = noise.CommonFactor(12, 0.0, 0.03, 0.01, True)
    mixed = noise.overall_verdict([_cv(S, 1.3, 6.0), _cv(F, 0.7, -6.0), _cv(I, 1.0, 0.0)], f)
    assert mixed.counts == {"faster": 1, "slower": 1, "inconclusive": 1}
    none = noise.overall_verdict([_cv(I, 1.0, 0.0)], f)
    assert none.counts == {"faster": 0, "slower": 0, "inconclusive": 1}
    assert none.reason == ("no case moved beyond the between-run noise around the run-level factor 1.000 (every case "
                           "together: the machine, not the code; 12 cases, case noise 3.0%); a change that moves every "
                           "case alike cannot be told from the machine here (compare --confirm re-measures "
                           "interleaved)")
    two = [noise.StateDifference("load", "load 1 vs 5", True), noise.StateDifference("cpu", "cpu a vs b", True)]
    assert noise.overall_verdict([], f, two).reason == ("machine states differ: load 1 vs 5; cpu a vs b (re-measure "
                                                        "both interleaved: compare --confirm)")


def test_six_cases_are_enough_for_a_spread():
    assert noise.MIN_CASES_FOR_SPREAD == 6
    six = noise.common_factor(np.log([1.0, 1.1, 1.2, 1.3, 1.4, 1.5]))
    assert six.estimated and six.n_cases == 6


def test_an_interval_below_one_has_a_standard_error_too():
    assert noise.within_run_se(0.5, 0.9) == pytest.approx((math.log(0.9) - math.log(0.5)) / 3.92)


def test_the_case_z_uses_the_intervals_own_width_in_standard_errors():
    z99 = 2.5758
    f = _factor(spread=0.03, se=0.0)
    v = noise.case_verdict(1.5, 1.4, 1.6, f, ci_z=z99)
    within = (math.log(1.6) - math.log(1.4)) / (2 * z99)
    assert v.z == pytest.approx(math.log(1.5) / math.sqrt(within ** 2 + 0.03 ** 2), rel=1e-12)


def test_the_case_rule_at_exactly_z_3_5_and_exactly_5_percent():
    # binary fractions, so that z and the change are exact: spread 2^-1 and a move of 1.75 give z = 3.5
    at_z = noise.case_verdict(1.0, 0, 0, _factor(spread=0.5, log_factor=-1.75))
    assert at_z.z == 3.5 and at_z.verdict is S
    # z exactly 3.5 but a change of 7/256 (2.8%, under 5%): inconclusive for the change, not for z
    small = noise.case_verdict(1.0, 0, 0, _factor(spread=2 / 256, log_factor=-7 / 256))
    assert small.z == 3.5 and small.verdict is I and "(change under 5%)" in small.reason
    # a change of exactly 5% (log1p(0.05) after the factor) with a large z: a verdict
    at_effect = noise.case_verdict(1.0, 0, 0, _factor(spread=0.001, log_factor=-math.log1p(0.05)))
    assert at_effect.verdict is S


def test_a_case_without_a_measurement_order_ranks_after_the_last_one_measured():
    # case 0 was measured last of the ordered cases; case 6 has no order (NaN): it ranks next to case 0, and its
    # burst withdraws case 0's verdict
    vs = [_cv(S, 1.3, 6.0)] + _quiet(5) + [_cv(I, 1.3, 3.0)]
    orders = [5, 0, 1, 2, 3, 4, math.nan]
    fastest = [math.log(1.3)] + [0.0] * 5 + [0.0]
    assert noise.time_local(vs, orders, orders, fastest)[0].verdict is I
    first = [0, 1, 2, 3, 4, 5, math.nan]  # case 0 measured first: far from the unordered case
    assert noise.time_local(vs, first, first, fastest)[0] is vs[0]
