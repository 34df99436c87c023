"""The mutant campaign: deliberate bugs, each of which some test must catch.

A mutant is one plausible bug in the measuring or reporting code (a host clock around CUDA work,
the optimiser left out of the whole step, a 90% interval where 95% is meant ...), applied by
monkeypatching from ``tests/conftest.py`` when ``MLPBENCH_MUTANT=<name>`` is set, in the manner
of the gate's ``--inject-regression``. The production code carries no switch for it.

Each mutant names the tests that must fail under it. ``python -m tests.mutants`` runs, for every
mutant, its tests with the mutant on, and reports killed / survived and the kill rate; a sanity
run first checks that the same tests pass with no mutant. CUDA mutants need a CUDA device: on a
CPU machine they are reported as "needs CUDA" and left out of the rate (``--cuda`` runs them).

    python -m tests.mutants                 # every CPU mutant (CI: fails when one survives)
    python -m tests.mutants --cuda          # the CUDA ones too, on a GPU machine
    python -m tests.mutants --list          # the registry
    python -m tests.mutants optimizer-left-out ci-90   # some of them
    MLPBENCH_MUTANT=ci-90 python -m pytest tests/bench/report/test_compare.py   # one by hand
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import pkgutil
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "MLPBENCH_MUTANT"
REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "mlp")

T_TIMING = "tests/bench/test_timing.py"
T_BUDGET = "tests/bench/test_budget.py"
T_RUNNER = "tests/bench/test_runner.py"
T_CASES = "tests/bench/test_cases.py"
T_COMPARE = "tests/bench/report/test_compare.py"
T_PLOTS = "tests/bench/report/test_plots.py"
T_TRAIN = "tests/mlp/test_train.py"
T_LIMITS = "tests/bench/test_limits.py"
T_NOISE = "tests/bench/test_noise.py"
T_HISTORY_CLI = "tests/bench/history/test_history_command.py"

# The CUDA tests that time a GPU-bound case against torch.utils.benchmark and the datasheet.
CUDA_TIMING_TESTS = (f"{T_TIMING}::test_cuda_clock_times_gpu_work_like_torch_utils_benchmark",
                     f"{T_TIMING}::test_cuda_gpu_bound_step_agrees_with_torch_utils_benchmark",
                     f"{T_TIMING}::test_cuda_phases_add_up_to_the_gpu_bound_step",
                     f"{T_TIMING}::test_cuda_ceiling_is_below_the_datasheet")


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # what it breaks, in one line
    targets: tuple[str, ...]  # pytest node ids (file::test) of which at least one must fail
    apply: Callable[[object], None]  # apply(monkeypatch): switches the bug on
    needs_cuda: bool = False


# --------------------------------------------------------------------------- patching helpers


def _project_modules() -> list:
    """Every module of bench and mlp, imported (so that a name imported by value is found everywhere)."""
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith(("__main__", "instructions_worker", "gate.worker", "ddp.worker")):
                continue  # entry points run on import
            with contextlib.suppress(ImportError):
                importlib.import_module(info.name)
    return [m for name, m in sorted(sys.modules.items()) if name.split(".")[0] in PACKAGES and m is not None]


def replace_everywhere(mp, original: object, replacement: object) -> int:
    """Rebind every module-level name of the project bound to ``original``; raises when there is none.

    A function imported by value (``from .clocks import clock_for``) has a binding in each
    importer; all of them must see the mutant. A refactor that renames the target makes the
    mutant fail to apply, loudly, instead of silently testing nothing.
    """
    count = 0
    for module in _project_modules():
        for attr, value in list(vars(module).items()):
            if value is original:
                mp.setattr(module, attr, replacement)
                count += 1
    if not count:
        raise RuntimeError(f"mutant target {original!r} is bound nowhere in {PACKAGES}: update tests/mutants.py")
    return count


def _set_constant(mp, name: str, value: object) -> None:
    """Every module-level constant ``name`` of the project set to ``value`` (at least one must exist)."""
    modules = [m for m in _project_modules() if hasattr(m, name)]
    if not modules:
        raise RuntimeError(f"no module of {PACKAGES} defines {name}: update tests/mutants.py")
    for module in modules:
        mp.setattr(module, name, value)


def _wrap(mp, module_name: str, attr: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(importlib.import_module(module_name), attr)
    replace_everywhere(mp, original, make(original))


# --------------------------------------------------------------------------- the bugs


def _cuda_host_clock(mp) -> None:
    from bench.instruments import clocks

    replace_everywhere(mp, clocks.clock_for, lambda device: clocks.Clock(device))  # perf_counter, no sync


def _cuda_no_sync(mp) -> None:
    from bench.instruments import clocks

    mp.setattr(clocks.CudaClock, "sync", lambda self: None)  # events read before the work finished


def _optimizer_left_out(mp) -> None:
    import mlp

    mp.setattr(mlp.TrainStep, "step", lambda self, x, y: self.loss_backward(self.forward(x), y))


def _first_step_sampled(mp) -> None:
    from bench.model.phases import Phase

    def make(measure):
        def measure_with_first_step(case, config=None, **kw):
            m = measure(case, config, **kw) if config is not None else measure(case, **kw)
            if m.samples.get(Phase.STEP):
                m.samples[Phase.STEP][0] = m.first_step_s  # the cold step replaces the first sample
            return m
        return measure_with_first_step

    _wrap(mp, "bench.instruments.timing", "measure", make)


def _ci_90(mp) -> None:
    _set_constant(mp, "COMPARE_CI_LEVEL", 0.90)
    from bench.report import compare

    mp.setattr(compare, "CI_LEVEL", 0.90)


def _bootstrap_paired(mp) -> None:
    def make(interval):
        def always_paired(a_s, b_s, *, paired=False, **kw):
            return interval(a_s, b_s, paired=True, **kw) if len(a_s) == len(b_s) else interval(a_s, b_s, **kw)
        return always_paired

    _wrap(mp, "bench.analysis.stats", "ratio_of_medians_ci", make)


def _summary_rows_mutant(edit: Callable[[dict, object], None]) -> Callable:
    def apply(mp) -> None:
        def make(summary_rows):
            def rows_with_bug(m, ceiling, *args, **kw):
                rows = summary_rows(m, ceiling, *args, **kw)
                for row in rows:
                    if "tflops" in row:
                        edit(row, ceiling)
                return rows
            return rows_with_bug

        _wrap(mp, "bench.engine.runner", "summary_rows", make)
    return apply


def _mfu_against_datasheet(mp) -> None:
    """MFU is derived in ``bench.limits.ceiling.ceiling_columns`` (at the row and again when the end pass re-derives)."""
    def make(ceiling_columns):
        def columns_with_bug(tflops, ceiling, *args, **kw):
            out = ceiling_columns(tflops, ceiling, *args, **kw)
            peak = getattr(ceiling, "datasheet_tflops", None)
            out["mfu"] = tflops / peak if peak else math.nan
            return out
        return columns_with_bug

    _wrap(mp, "bench.limits.ceiling", "ceiling_columns", make)


def _samples_per_s_per_step(row: dict, ceiling) -> None:
    row["samples_per_s"] = 1 / row["median_s"] if row["median_s"] > 0 else math.nan  # steps/s, not samples/s


def _optimizer_state_forgotten(mp) -> None:
    import mlp

    replace_everywhere(mp, mlp.optimizer_state_bytes, lambda model, optimizer: 0)


def _nan_figure(mp) -> None:
    import dataclasses

    def make(prepare):
        def nan_prepare(inputs):
            return prepare(dataclasses.replace(inputs, summary=inputs.summary.assign(median_s=math.nan)))
        return nan_prepare

    _wrap(mp, "bench.report.figures.throughput", "prepare", make)


def _optimizer_swapped(asked: str, built: str) -> Callable:
    """A mutant that builds optimiser ``built`` whenever ``asked`` is asked for."""
    def apply(mp) -> None:
        import mlp

        def make(make_optimizer):
            def swapped(optimizer, *args, **kw):
                chosen = mlp.parse_enum(mlp.Optimizer, optimizer, "optimizer")
                return make_optimizer(built if chosen.value == asked else chosen, *args, **kw)
            return swapped

        _wrap(mp, "mlp.train", "make_optimizer", make)
    return apply


def _tf32_left_on(mp) -> None:
    import mlp

    @contextlib.contextmanager
    def never_restores(precision) -> Iterator[None]:
        import torch

        tf32 = mlp.parse_enum(mlp.Precision, precision, "dtype") is mlp.Precision.TF32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        yield  # ... and the old flags are never put back

    replace_everywhere(mp, mlp.matmul_precision, never_restores)


def _fast_path_inverted(mp) -> None:
    from bench.instruments import env

    def make(dtype_fast_path):
        def inverted(device, dtype):
            path = dtype_fast_path(device, dtype)
            return env.FastPath(not path.native, path.reason)
        return inverted

    _wrap(mp, "bench.instruments.env", "dtype_fast_path", make)


def _prediction_forgets_the_phase_block(mp) -> None:
    from bench.instruments import timing

    def make(predict):
        def forgetful(step_s, config):
            # each round's phase block (one step block) is left out of the replay
            one_block = timing.calibrate_iters(step_s, config) * step_s
            rounds = max(config.repeats, 1)
            return predict(step_s, config) - rounds * one_block
        return forgetful

    _wrap(mp, "bench.instruments.timing", "predict_measure_s", make)


def _case_id_hashes_defaults(mp) -> None:
    import hashlib
    from dataclasses import fields

    from bench.case.cases import Case

    def every_field(self) -> str:
        text = "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    mp.setattr(Case, "case_id", property(every_field))


def _bandwidth_halved(mp) -> None:
    from dataclasses import replace

    def make(measure_bandwidth):
        def halved(*args, **kw):
            b = measure_bandwidth(*args, **kw)
            return replace(b, copy_bytes_per_s=b.copy_bytes_per_s / 2, triad_bytes_per_s=b.triad_bytes_per_s / 2,
                           bytes_per_s=b.bytes_per_s / 2)
        return halved

    _wrap(mp, "bench.limits.bandwidth", "measure_bandwidth", make)
def _verdict_ignores_run_factor(mp) -> None:
    import dataclasses

    from bench.analysis import noise

    original = noise.common_factor
    mp.setattr(noise, "common_factor", lambda r: dataclasses.replace(original(r), log_factor=0.0))


def _machine_state_ignored(mp) -> None:
    _set_constant(mp, "LOAD_TOLERANCE_PER_CORE", math.inf)
    _set_constant(mp, "CEILING_TOLERANCE", math.inf)


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("cuda-host-clock", "a host clock (perf_counter, no synchronize) around CUDA work", CUDA_TIMING_TESTS,
           _cuda_host_clock, needs_cuda=True),
    Mutant("cuda-no-sync", "CUDA events read without a synchronize after the block", CUDA_TIMING_TESTS,
           _cuda_no_sync, needs_cuda=True),
    Mutant("optimizer-left-out", "the whole step runs forward and backward but no optimiser step",
           (f"{T_TIMING}::test_phases_add_up_to_the_whole_step",
            f"{T_TIMING}::test_engine_agrees_with_torch_utils_benchmark"), _optimizer_left_out),
    Mutant("first-step-sampled", "the cold first step is counted as a timing sample",
           (f"{T_TIMING}::test_first_step_is_not_in_the_samples",), _first_step_sampled),
    Mutant("ci-90", "compare's bootstrap interval at 90% where 95% is meant",
           (f"{T_COMPARE}::test_bootstrap_interval_equals_scipys",), _ci_90),
    Mutant("bootstrap-paired", "compare's independent runs resampled as pairs",
           (f"{T_COMPARE}::test_bootstrap_interval_equals_scipys",), _bootstrap_paired),
    Mutant("mfu-datasheet", "MFU against the datasheet peak where the measured ceiling is meant",
           (f"{T_RUNNER}::test_derived_columns_follow_their_definitions",),
           _mfu_against_datasheet),
    Mutant("samples-per-s-per-step", "samples_per_s reports steps per second (the batch forgotten)",
           (f"{T_RUNNER}::test_derived_columns_follow_their_definitions",),
           _summary_rows_mutant(_samples_per_s_per_step)),
    Mutant("optimizer-state-forgotten", "the analytic memory leaves out the optimiser's state",
           (f"{T_RUNNER}::test_derived_columns_follow_their_definitions",), _optimizer_state_forgotten),
    Mutant("nan-figure", "the throughput figure drawn from NaN medians (axes and legend, no data)",
           (f"{T_PLOTS}::test_every_drawn_figure_plots_its_data_points",), _nan_figure),
    Mutant("adam-for-adamw", "Adam built where AdamW is asked for",
           (f"{T_TRAIN}::test_optimizers_equal_hand_built_torch_optim",), _optimizer_swapped("adamw", "adam")),
    Mutant("no-momentum", "plain SGD built where SGD with momentum is asked for",
           (f"{T_TRAIN}::test_optimizers_equal_hand_built_torch_optim",), _optimizer_swapped("sgd_momentum", "sgd")),
    Mutant("tf32-left-on", "matmul_precision sets TF32 for a case and never restores the flags",
           (f"{T_TRAIN}::test_matmul_precision_sets_tf32_and_restores_the_flags",
            f"{T_TIMING}::test_a_case_leaves_the_precision_flags_as_it_found_them"), _tf32_left_on),
    Mutant("fast-path-inverted", "dtype_fast_path answers the opposite of torch's own checks",
           (f"{T_BUDGET}::test_this_machines_fast_paths_agree_with_torchs_own_checks",), _fast_path_inverted),
    Mutant("prediction-forgets-phase-block", "the budget prediction leaves out each round's phase block",
           (f"{T_BUDGET}::test_the_prediction_matches_a_step_that_sleeps",), _prediction_forgets_the_phase_block),
    Mutant("case-id-hashes-defaults", "case_id hashes the data-parallel fields at their defaults too",
           (f"{T_CASES}::test_recorded_case_ids_are_pinned",), _case_id_hashes_defaults),
    Mutant("bandwidth-halved", "the bandwidth limit reads half the rate its copy and triad reached",
           (f"{T_LIMITS}::test_the_bandwidth_limit_is_not_beaten_by_an_independent_best_in_the_same_rounds",),
           _bandwidth_halved),
    Mutant("verdict-ignores-run-factor", "compare judges each case's raw ratio, blind to every case moving together",
           (f"{T_NOISE}::test_every_case_slower_together_is_the_machine_one_case_beyond_it_is_the_code",
            f"{T_COMPARE}::test_every_case_slower_alike_is_inconclusive_and_the_within_run_reading_is_not"),
           _verdict_ignores_run_factor),
    Mutant("machine-state-ignored", "runs whose load and ceilings differ are compared as if they were alike",
           (f"{T_NOISE}::test_machine_states_that_differ_say_by_how_much_and_block_the_verdicts",
            f"{T_COMPARE}::test_machine_states_that_differ_make_the_comparison_inconclusive"), _machine_state_ignored),
    Mutant("history-without-minimum", "history check fails a change with one commit on each side",
           (f"{T_HISTORY_CLI}::test_two_identical_runs_as_two_commits_are_not_enough_history",),
           lambda mp: _set_constant(mp, "MIN_POINTS_EACH_SIDE", 1)),
)}


def apply(name: str, mp) -> Mutant:
    """Switch mutant ``name`` on through ``mp`` (a pytest.MonkeyPatch); ValueError for an unknown name."""
    if name not in MUTANTS:
        raise ValueError(f"unknown mutant {name!r}; valid: {', '.join(MUTANTS)}")
    MUTANTS[name].apply(mp)
    return MUTANTS[name]


# --------------------------------------------------------------------------- the campaign


@dataclass(frozen=True)
class Outcome:
    name: str
    verdict: str  # killed | survived | needs CUDA | error
    seconds: float
    detail: str = ""


def _pytest(targets: tuple[str, ...], mutant: str | None, timeout_s: float) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if mutant:
        env[ENV_VAR] = mutant
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", *targets]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        code, out = -1, f"timed out after {timeout_s:g} s"
    return code, out, time.perf_counter() - start


PYTEST_SUMMARY = re.compile(r"^(FAILED|ERROR) \S+|\d+ (failed|passed|errors?)\b.* in [\d.]+s")


def _last_line(text: str) -> str:
    """What pytest said: the first failed test and the summary line (not a library's warning on stderr)."""
    lines = [line.strip("= ") for line in text.splitlines() if PYTEST_SUMMARY.search(line.strip("= "))]
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED", "ERROR"))]
    summary = [line for line in lines if not line.startswith(("FAILED", "ERROR"))]
    text_lines = [line for line in text.strip().splitlines() if line.strip()]
    return "; ".join(failed[:1] + summary[-1:])[:300] or (text_lines[-1][:300] if text_lines else "")


PYTEST_TESTS_FAILED = 1  # pytest's exit code when a test failed (2-5: interrupted, internal, usage, none collected)
PER_RUN_TIMEOUT_S = 600.0


def run_campaign(names: list[str], cuda: bool, out=sys.stdout) -> tuple[list[Outcome], bool]:
    """Sanity run (no mutant: the targets pass), then each mutant; returns the outcomes and the sanity result."""
    chosen = [MUTANTS[n] for n in names]
    runnable = [m for m in chosen if cuda or not m.needs_cuda]
    targets = tuple(dict.fromkeys(t for m in runnable for t in m.targets))
    code, text, seconds = _pytest(targets, None, PER_RUN_TIMEOUT_S)
    sane = code == 0
    print(f"sanity: {len(targets)} target tests with no mutant: {'pass' if sane else 'FAIL'} ({seconds:.0f} s)"
          f"{'' if sane else ': ' + _last_line(text)}", file=out, flush=True)
    outcomes = []
    for mutant in chosen:
        if mutant.needs_cuda and not cuda:
            outcomes.append(Outcome(mutant.name, "needs CUDA", 0.0, "run with --cuda on a GPU machine"))
        else:
            code, text, seconds = _pytest(mutant.targets, mutant.name, PER_RUN_TIMEOUT_S)
            verdict = {0: "survived", PYTEST_TESTS_FAILED: "killed"}.get(code, "error")
            outcomes.append(Outcome(mutant.name, verdict, seconds, _last_line(text)))
        o = outcomes[-1]
        print(f"{o.verdict:>10}  {o.name:<32} {o.seconds:5.0f} s  {o.detail}", file=out, flush=True)
    return outcomes, sane


def kill_rate(outcomes: list[Outcome]) -> tuple[int, int]:
    """(killed, mutants run): the ones left for a CUDA machine are not in either count."""
    ran = [o for o in outcomes if o.verdict != "needs CUDA"]
    return sum(o.verdict == "killed" for o in ran), len(ran)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--cuda", action="store_true", help="run the CUDA mutants too (needs a CUDA device)")
    parser.add_argument("--list", action="store_true", help="print the registry and exit")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MUTANTS]
    if unknown:
        print(f"mutants: error: unknown mutant {unknown[0]!r}; valid: {', '.join(MUTANTS)}", file=sys.stderr)
        return 2
    if args.list:
        for m in MUTANTS.values():
            print(f"{m.name:<32} {'[CUDA] ' if m.needs_cuda else ''}{m.bug}\n{'':<32} killed by: {', '.join(m.targets)}")
        return 0
    if args.cuda:
        import torch

        if not torch.cuda.is_available():
            print("mutants: error: --cuda needs a CUDA device, and this machine has none", file=sys.stderr)
            return 2
    start = time.perf_counter()
    outcomes, sane = run_campaign(args.names or list(MUTANTS), args.cuda)
    killed, ran = kill_rate(outcomes)
    waiting = sum(o.verdict == "needs CUDA" for o in outcomes)
    rate = f"{killed}/{ran} = {killed / ran:.0%}" if ran else "none run"
    print(f"kill rate {rate}" + (f"; {waiting} CUDA mutant(s) need a CUDA machine (--cuda)" if waiting else "")
          + f"; campaign {time.perf_counter() - start:.0f} s")
    return 0 if sane and killed == ran else 1


if __name__ == "__main__":
    sys.exit(main())
