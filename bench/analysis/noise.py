"""How much two runs can differ with no change in the code: the between-run noise model (no torch).

A run's interval of a median holds the noise *inside* the run. Two runs made at different times also
differ by the state of the machine: another job's load, the clock, the cache neighbours. On the shared
2-core AMD EPYC two identical runs differed by 1.55x in every case at once (issue 41). The model, with
its evidence in docs/design.md ("Between-run noise"):

    log t(run, case) = level(case) + code(case) + machine(run) + e(run, case)

* ``machine(run)`` moves every case of a run together. Its difference between two runs is estimated by
  the **run-level factor**: the median over cases of the per-case log ratios B/A. A case is judged on
  its ratio *relative to that factor*, so a slower or faster verdict survives it.
* ``e(run, case)`` is what is left: case by case, between runs. Its size is the robust spread (1.4826 x
  MAD) of the per-case log ratios around the factor, floored at ``CASE_NOISE_FLOOR``; with fewer than
  ``MIN_CASES_FOR_SPREAD`` cases it cannot be estimated and ``CASE_NOISE_PRIOR`` is used instead.
* Two runs whose matmul ceilings drifted unlike between their start and their end (end/start of B over
  end/start of A beyond ``1 + DRIFT_TOLERANCE``), or either of which drifted that far at all, had the
  machine change under them: no single run-level factor holds (the cases measured before the change and
  after it moved apart), so the comparison is inconclusive. (A run against its own copy, whose drifts are
  one measurement, is exempt.)
* The **machine state** each run records (CPU model, torch build, threads, load average at its start
  and end, the matmul ceilings at its start and end, the memory bandwidth, the dispatch floor) says
  whether two runs can be compared at all: beyond the tolerances below, a comparison is inconclusive
  and says by how much the two states differ.

Reading a case: ``z = (log ratio - log factor) / sqrt(within-run se^2 + case noise^2 + factor se^2)``.
``|z| >= Z_VERDICT`` and an effect of at least ``MIN_EFFECT`` (after the factor) make it slower or
faster; everything else is inconclusive, with the reason in one line.

A burst of contention is *time-local*: it lasts seconds, a few cases measured one after the other, and
neither the run-level factor (the whole run) nor the case noise (cases as exchangeable) models it. Two
time-local checks (``time_local``) then withdraw a verdict, each said in one line:

* **a burst during the case:** contention only adds time, and a burst that covers part of a case leaves
  some of its blocks untouched, while a change in the code moves every block. A verdict needs the case's
  *fastest* block (B's over A's, over the fastest blocks' own run-level factor) to have moved at least
  ``FASTEST_SHARE`` of the way its median moved, in the same direction;
* **a stretch of neighbouring cases:** a burst that covers whole cases moves its neighbours in
  measurement order too (the order of the run's summary), and it starts and ends part-way through a case.
  A verdict is withdrawn when a case measured just before or after it (in A's run or in B's) moved the
  same way by ``Z_STRETCH`` or more with a burst in its blocks (its fastest block did not follow), or
  whose slowest block moved beyond its own median, either way, by ``Z_STRETCH`` times the cases' spread
  of that (a burst's edge, which stretches the slow tail of the run it hit and leaves the median alone;
  the burst may be the neighbour's side or the case's own: a case measured just before a load began), or
  when it lies in a row of at least ``MIN_STRETCH`` such cases that each moved the same way by
  ``Z_STRETCH`` or more. The price: a real change confined to three or more neighbouring
  cases (say, every case of one width, which a sweep measures in a row) is inconclusive between two
  stored runs; ``compare --confirm`` re-measures it
  interleaved, where a burst lands on both sides alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .verdict import Verdict

MAD_TO_SIGMA = 1.4826  # MAD of a normal sample x this = its standard deviation
MEDIAN_SE = 1.2533  # standard error of a median = this x sigma / sqrt(n) (normal data, large n)
CI_Z = 1.96  # a 95% interval is +-1.96 standard errors: turns a ratio's interval into a standard error
Z_VERDICT = 3.5  # |z| for a verdict: A/A pairs here have heavier tails than a normal (docs/design.md)
MIN_EFFECT = 0.05  # a verdict needs this much change after the run-level factor (the gate's own minimum)
CASE_NOISE_FLOOR = 0.02  # one case's between-run noise (log units) is never taken below this
CASE_NOISE_PRIOR = 0.15  # ... nor, with too few cases to estimate it, below this (A/A spreads seen here)
MIN_CASES_FOR_SPREAD = 6  # fewer cases than this: no spread, no run-level factor to trust
# Machine states farther apart than these make a comparison inconclusive.
LOAD_TOLERANCE_PER_CORE = 0.5  # load average (runnable processes) per core: 1.0 on 2 cores
CEILING_TOLERANCE = 0.25  # matmul ceiling, B/A beyond [1/1.25, 1.25]: the best-of read 87 vs 108 a second apart
Z_STRETCH = 2.0  # a neighbour (in measurement order) moved the same way by this many sigmas: a burst, not the code
MIN_STRETCH = 3  # ... in a row of at least this many cases (two neighbours may both be the code: a tested case)
FASTEST_SHARE = 0.5  # a verdict needs the fastest block to move at least this share of the median's move (log)
DRIFT_TOLERANCE = 0.5  # runs' ceiling drifts (end/start) apart by more than 1.5x: the machine moved during one
IDENTITY_KEYS = ("cpu_model", "torch", "cuda", "device_name", "torch_threads", "cpu_capability")


# --------------------------------------------------------------------------- the machine state of one run


@dataclass(frozen=True)
class MachineState:
    """What one run recorded about the machine it ran on (from meta.json; missing values are None)."""

    identity: dict  # IDENTITY_KEYS -> value as text
    cores: int | None
    load_start: float | None
    load_end: float | None
    ceilings_tflops: dict  # "cpu/fp32/t1" -> the best matmul rate of the run
    ceiling_drift: dict  # ... -> end-of-run pass / start-of-run pass (how far the machine moved during it)
    probes: dict  # each declared limit's probe (bench.runs.limit_tables): "bandwidth" -> {"cpu/fp32": bytes/s}

    @property
    def load(self) -> float | None:
        """The larger of the load averages at the run's start and end."""
        values = [x for x in (self.load_start, self.load_end) if x is not None]
        return max(values) if values else None

    def as_dict(self) -> dict:
        return asdict(self)


def machine_state(meta: Mapping) -> MachineState:
    """A run's machine state from its meta (``RunMeta`` or the dict of meta.json)."""
    env = meta.get("env") or {}
    ceilings, drift = {}, {}
    for key, c in (meta.get("ceilings") or {}).items():
        rate = finite_or_none(c.get("measured_tflops"))
        if rate:
            ceilings[key] = rate
        passes = c.get("pass_tflops") or {}
        start, end = finite_or_none(passes.get("start")), finite_or_none(passes.get("end"))
        if start and end:
            drift[key] = end / start
    from ..runs import limit_tables  # here, not at the top: bench.runs loads pandas, which `compare --help` must not

    probes = {t.probe_name: {k: v for k, r in (meta.get(t.name) or {}).items() if (v := finite_or_none(r.get(t.probe)))}
              for t in limit_tables.LIMIT_TABLES if t.probe}
    start = finite_or_none(meta.get("load_average_1m_start"))
    start = start if start is not None else finite_or_none(env.get("load_average_1m"))
    cores = env.get("cpu_count")
    return MachineState({k: "" if env.get(k) is None else str(env.get(k)) for k in IDENTITY_KEYS},
                        int(cores) if cores else None, start, finite_or_none(meta.get("load_average_1m_end")),
                        ceilings, drift, probes)


@dataclass(frozen=True)
class StateDifference:
    """One way two machine states differ; ``decisive`` ones make a comparison inconclusive."""

    what: str
    text: str  # "load 0.4 vs 3.7 (+3.3 on 2 cores)"
    decisive: bool


def state_differences(a: MachineState, b: MachineState) -> list[StateDifference]:
    """Every recorded way A's and B's machines differ, each said with its size."""
    out = [StateDifference(k, f"{k} {a.identity[k] or '?'} vs {b.identity[k] or '?'}", True)
           for k in IDENTITY_KEYS if a.identity.get(k) != b.identity.get(k)]
    if a.load is not None and b.load is not None:
        tolerance = LOAD_TOLERANCE_PER_CORE * (a.cores or b.cores or 1)
        gap = b.load - a.load
        if abs(gap) > tolerance / 2:
            out.append(StateDifference("load", f"load {a.load:.1f} vs {b.load:.1f} ({gap:+.1f}; tolerance "
                                       f"{tolerance:.1f})", abs(gap) > tolerance))
    for key in sorted(set(a.ceilings_tflops) & set(b.ceilings_tflops)):
        ratio = b.ceilings_tflops[key] / a.ceilings_tflops[key]
        if abs(math.log(ratio)) > math.log(1 + CEILING_TOLERANCE) / 2:
            out.append(StateDifference(f"ceiling {key}", f"matmul ceiling {key} {a.ceilings_tflops[key] * 1e3:.0f} vs "
                                       f"{b.ceilings_tflops[key] * 1e3:.0f} GFLOP/s (B/A {ratio:.2f})",
                                       abs(math.log(ratio)) > math.log(1 + CEILING_TOLERANCE)))
    for key in sorted(set(a.ceiling_drift) & set(b.ceiling_drift)):  # the machine moved during a run, unlike
        da, db = a.ceiling_drift[key], b.ceiling_drift[key]     # in the other: no one run-level factor holds
        bound = math.log(1 + DRIFT_TOLERANCE)
        unlike = abs(math.log(db / da)) > bound
        # ... or it moved far during either: even alike (0.37x and 0.52x), two separate runs' cases met the move
        # at different cases, and one injected case read 0.32x "faster" so. Bitwise-equal drifts are one
        # measurement (a run against its own copy): the machine moved under both alike.
        moved = da != db and max(abs(math.log(da)), abs(math.log(db))) > bound
        if unlike or moved:
            out.append(StateDifference(f"drift {key}", f"the machine moved during the runs: matmul ceiling {key} "
                                       f"end/start {da:.2f} in A vs {db:.2f} in B (tolerance {1 + DRIFT_TOLERANCE:.2f}x)",
                                       True))
    for name in [n for n in a.probes if n in b.probes]:  # in declaration order
        key_values = a.probes[name], b.probes[name]
        for key in sorted(set(key_values[0]) & set(key_values[1])):
            ratio = key_values[1][key] / key_values[0][key]
            if abs(math.log(ratio)) > math.log(1 + CEILING_TOLERANCE):
                out.append(StateDifference(f"{name} {key}", f"{name} {key} B/A {ratio:.2f} (a noisy probe: told, "
                                           "not decisive)", False))
    return out


def run_record(meta: Mapping) -> dict:
    """The noise block written into a run's meta.json (``noise``): its machine state and drift during the run."""
    state = machine_state(meta)
    drift = [abs(math.log(d)) for d in state.ceiling_drift.values()]
    loads = [x for x in (state.load_start, state.load_end) if x is not None]
    return {"model": "bench.analysis.noise", "load_1m": state.load, "load_change": (loads[-1] - loads[0]) if len(loads) == 2
            else None, "ceiling_drift": state.ceiling_drift,
            "ceiling_drift_max_rel": math.expm1(max(drift)) if drift else None,
            "busy": bool(state.load is not None and state.cores and state.load > state.cores)}


# --------------------------------------------------------------------------- the run-level factor


@dataclass(frozen=True)
class CommonFactor:
    """The run-level factor: the median per-case log ratio B/A, and the cases' spread around it."""

    n_cases: int
    log_factor: float
    spread: float  # one case's between-run noise, log units (floored; the prior when too few cases)
    se: float  # standard error of the log factor
    estimated: bool  # False: too few cases, the prior spread is used

    @property
    def factor(self) -> float:
        return math.exp(self.log_factor)

    @property
    def smallest_verdict(self) -> float:
        """The smallest change (after the factor; 0.25 = +25%) a case can be called slower at between these two
        runs, with no within-run noise at all: ``Z_VERDICT`` times the between-run noise, at least ``MIN_EFFECT``."""
        return max(MIN_EFFECT, math.expm1(Z_VERDICT * math.hypot(self.spread, self.se)))


def common_factor(log_ratios: Sequence[float]) -> CommonFactor:
    r = np.asarray([x for x in log_ratios if math.isfinite(x)], dtype=float)
    if len(r) == 0:
        return CommonFactor(0, 0.0, CASE_NOISE_PRIOR, CASE_NOISE_PRIOR, False)
    centre = float(np.median(r))
    if len(r) < MIN_CASES_FOR_SPREAD:
        return CommonFactor(len(r), centre, CASE_NOISE_PRIOR, CASE_NOISE_PRIOR / math.sqrt(len(r)), False)
    spread = max(CASE_NOISE_FLOOR, MAD_TO_SIGMA * float(np.median(np.abs(r - centre))))
    return CommonFactor(len(r), centre, spread, MEDIAN_SE * spread / math.sqrt(len(r)), True)


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class CaseVerdict:
    verdict: Verdict
    reason: str
    relative: float = math.nan  # the case's ratio B/A over the run-level factor
    z: float = math.nan


def within_run_se(ci_low: float, ci_high: float, level_z: float = CI_Z) -> float:
    """A ratio's standard error in log units, from its 95% interval (0 when there is none)."""
    if not (ci_low > 0 and ci_high > 0 and math.isfinite(ci_low) and math.isfinite(ci_high)):
        return 0.0
    return (math.log(ci_high) - math.log(ci_low)) / (2 * level_z)


def process_se(cv_a: float, k_a: float, cv_b: float, k_b: float) -> float:
    """The log ratio's standard error from the spread between processes (``bench.engine.process_samples``): each run's
    median pools ``k`` processes whose medians spread by ``cv`` (a fraction); a run measured in one process (or
    before sampling across processes) adds nothing, since its spread was not measured."""
    total = 0.0
    for cv, k in ((cv_a, k_a), (cv_b, k_b)):
        if cv is not None and k is not None and math.isfinite(cv) and math.isfinite(k) and k > 1 and cv > 0:
            total += math.log1p(cv) ** 2 / k
    return math.sqrt(total)


def case_verdict(ratio: float, ci_low: float, ci_high: float, factor: CommonFactor,
                 blocking: Sequence[StateDifference] = (), ci_z: float = CI_Z,
                 between_processes: float = 0.0) -> CaseVerdict:
    """One case's verdict against the between-run noise; ``blocking``: decisive machine differences;
    ``ci_z``: the half-width of [ci_low, ci_high] in standard errors (1.96 for 95%); ``between_processes``: the
    log ratio's standard error from the spread between processes (``process_se``), added to the noise."""
    if not (ratio > 0 and math.isfinite(ratio)):
        return CaseVerdict(Verdict.INCONCLUSIVE, "no ratio (a median is missing or not positive)")
    if blocking:
        return CaseVerdict(Verdict.INCONCLUSIVE, "machine states differ: " + "; ".join(d.text for d in blocking))
    d = math.log(ratio) - factor.log_factor
    between_processes = between_processes if math.isfinite(between_processes) else 0.0
    sigma = math.sqrt(within_run_se(ci_low, ci_high, ci_z) ** 2 + factor.spread ** 2 + factor.se ** 2
                      + between_processes ** 2)
    z = d / sigma
    relative = math.exp(d)
    noise = (f"between-run noise {math.expm1(sigma):.1%}"
             + ("" if factor.estimated else f" (prior: fewer than {MIN_CASES_FOR_SPREAD} cases)")
             + (f", {math.expm1(between_processes):.1%} of it between processes" if between_processes > 0 else ""))
    where = f"B/A {ratio:.3f} is {relative:.3f}x the run-level factor {factor.factor:.3f}, z {z:+.1f} against {noise}"
    if abs(z) >= Z_VERDICT and abs(d) >= math.log1p(MIN_EFFECT):
        return CaseVerdict(Verdict.SLOWER if d > 0 else Verdict.FASTER, where, relative, z)
    why = (f"|z| < {Z_VERDICT}" if abs(z) < Z_VERDICT else f"change under {MIN_EFFECT:.0%}")
    return CaseVerdict(Verdict.INCONCLUSIVE, f"within noise ({why}): {where}", relative, z)


def time_local(verdicts: Sequence[CaseVerdict], orders_a: Sequence[float], orders_b: Sequence[float],
               fastest_log_ratios: Sequence[float],
               slowest_log_ratios: Sequence[float] | None = None) -> list[CaseVerdict]:
    """The verdicts with those a time-local burst explains withdrawn (inconclusive, said why; module docstring).

    ``verdicts``: one per case (``case_verdict``); ``orders_a``/``orders_b``: each case's position in A's and
    B's measurement order; ``fastest_log_ratios``: log(fastest block of B / fastest block of A), NaN where a
    run kept no samples (that check is then skipped for the case); ``slowest_log_ratios``: the same of the
    slowest blocks, which show a burst's edge in a neighbour whose median it left alone."""
    n = len(verdicts)
    slowest_log_ratios = [math.nan] * n if slowest_log_ratios is None else list(slowest_log_ratios)
    if not (len(orders_a) == len(orders_b) == len(fastest_log_ratios) == len(slowest_log_ratios) == n):
        raise ValueError("time_local: one order and one fastest-block ratio per verdict")
    finite = [x for x in fastest_log_ratios if math.isfinite(x)]
    fastest_factor = float(np.median(finite)) if finite else 0.0
    rank_a, rank_b = _ranks(orders_a), _ranks(orders_b)

    def fastest_move(i: int) -> float:  # the fastest block's log move over its own factor (NaN: no samples)
        return fastest_log_ratios[i] - fastest_factor if math.isfinite(fastest_log_ratios[i]) else math.nan

    # the slowest block's move beyond the case's own median move: a change in the code moves both alike,
    # a burst's edge stretches the case's slow tail and leaves its median where it was
    tail = [s - math.log(v.relative) if math.isfinite(s) and v.relative > 0 else math.nan
            for s, v in zip(slowest_log_ratios, verdicts)]
    tails = common_factor(tail)

    def edge_in(i: int) -> bool:  # its slow tail (in A or in B) grew far beyond the tails' spread: a burst's edge
        s = tail[i] - tails.log_factor
        return bool(tails.estimated and math.isfinite(s) and abs(s) >= max(Z_STRETCH * tails.spread,
                                                                            math.log1p(MIN_EFFECT)))

    def burst_in(i: int) -> bool:  # moved by Z_STRETCH, but its fastest block did not follow: part-covered
        z, f = verdicts[i].z, fastest_move(i)
        if not (math.isfinite(z) and abs(z) >= Z_STRETCH and verdicts[i].relative > 0 and math.isfinite(f)):
            return False
        d = math.log(verdicts[i].relative)
        return f * d <= 0 or abs(f) < FASTEST_SHARE * abs(d)

    out = []
    for i, v in enumerate(verdicts):
        if v.verdict is Verdict.INCONCLUSIVE or not (v.relative > 0):
            out.append(v)
            continue
        f = fastest_move(i)
        if burst_in(i):
            out.append(CaseVerdict(Verdict.INCONCLUSIVE, f"a burst during the case: its fastest block moved "
                                   f"{math.exp(f):.3f}x (over the fastest blocks' run-level factor), under "
                                   f"{FASTEST_SHARE:.0%} of its median's {v.relative:.3f}x; a change in the code moves "
                                   f"every block ({v.reason})", v.relative, v.z))
            continue
        near = [j for j in range(n) if j != i and (abs(rank_a[j] - rank_a[i]) == 1 or abs(rank_b[j] - rank_b[i]) == 1)]
        edges = [j for j in near if (burst_in(j) and verdicts[j].z * v.z > 0) or edge_in(j)]
        row = sorted({j for ranks in (rank_a, rank_b) for j in _stretch(i, ranks, verdicts)} - {i})
        if edges or row:
            moved = sorted(set(edges) | set(row))
            out.append(CaseVerdict(Verdict.INCONCLUSIVE, f"a stretch of neighbouring cases moved together: "
                                   f"{len(moved)} case(s) measured next to it moved the same way (z "
                                   + ", ".join(f"{verdicts[j].z:+.1f}" for j in moved) + f", each beyond {Z_STRETCH}"
                                   + (", with a burst in their blocks" if edges else f", {MIN_STRETCH} or more in a row")
                                   + "), a burst on the machine or a change to all of them; compare --confirm tells "
                                   f"which ({v.reason})", v.relative, v.z))
            continue
        out.append(v)
    return out


def _stretch(i: int, ranks: Sequence[int], verdicts: Sequence[CaseVerdict]) -> list[int]:
    """The cases of the stretch around ``i`` in one measurement order: consecutive cases that each moved the way
    ``i`` did by ``Z_STRETCH`` or more; empty when it is shorter than ``MIN_STRETCH`` cases."""
    at = {r: j for j, r in enumerate(ranks)}
    sign = math.copysign(1.0, verdicts[i].z)
    same = lambda j: math.isfinite(verdicts[j].z) and verdicts[j].z * sign >= Z_STRETCH  # noqa: E731
    members, r = [i], ranks[i] - 1
    while r in at and same(at[r]):
        members.append(at[r])
        r -= 1
    r = ranks[i] + 1
    while r in at and same(at[r]):
        members.append(at[r])
        r += 1
    return members if len(members) >= MIN_STRETCH else []


def _ranks(orders: Sequence[float]) -> list[int]:
    """Each position's rank among the compared cases (neighbours are adjacent ranks; NaN ranks last)."""
    keyed = sorted(range(len(orders)), key=lambda i: (not math.isfinite(orders[i]), orders[i]
                                                      if math.isfinite(orders[i]) else 0.0, i))
    ranks = [0] * len(orders)
    for rank, i in enumerate(keyed):
        ranks[i] = rank
    return ranks


@dataclass(frozen=True)
class OverallVerdict:
    verdict: Verdict
    reason: str
    counts: dict = field(default_factory=dict)


def overall_verdict(verdicts: Sequence[CaseVerdict], factor: CommonFactor,
                    blocking: Sequence[StateDifference] = ()) -> OverallVerdict:
    """Slower when some case is slower and none faster (and the mirror); else inconclusive, said why."""
    counts = {v.value: sum(1 for c in verdicts if c.verdict is v) for v in Verdict}
    if blocking:
        return OverallVerdict(Verdict.INCONCLUSIVE, "machine states differ: " + "; ".join(d.text for d in blocking)
                              + " (re-measure both interleaved: compare --confirm)", counts)
    slower, faster = counts["slower"], counts["faster"]
    shift = (f"run-level factor {factor.factor:.3f} (every case together: the machine, not the code; "
             f"{factor.n_cases} cases, case noise {math.expm1(factor.spread):.1%})")
    if slower and not faster:
        return OverallVerdict(Verdict.SLOWER, f"{slower} of {len(verdicts)} cases slower beyond the {shift}", counts)
    if faster and not slower:
        return OverallVerdict(Verdict.FASTER, f"{faster} of {len(verdicts)} cases faster beyond the {shift}", counts)
    if slower and faster:
        return OverallVerdict(Verdict.INCONCLUSIVE, f"mixed: {slower} slower, {faster} faster beyond the {shift}",
                              counts)
    return OverallVerdict(Verdict.INCONCLUSIVE, f"no case moved beyond the between-run noise around the {shift}; "
                          "a change that moves every case alike cannot be told from the machine here "
                          "(compare --confirm re-measures interleaved)", counts)


def finite_or_none(value) -> float | None:
    """``value`` as a finite float, or None (missing, text, NaN, inf)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None
