"""``mlpbench tune``: which fastest-step knob gets a case how much closer to its limit.

For each base case (the case flags' grid, or every case of a sweep file, each reset to eager), the plan is:

* a **chain**: eager, then each knob that applies on this device added to the one before
  (``CHAIN``: bf16 parameters, the fused epilogue, ``torch.compile`` of the model, the whole step
  compiled, the whole step in one CUDA graph); the waterfall draws it;
* the **other combinations** of the same knobs (every knob on or off), measured after every chain,
  so that a run budget that runs out costs combinations, not the waterfall;
* the knobs that **cannot run here**, each with its reason (no CUDA, an activation without a fused
  backward, a dtype with nothing to cast).

Every case is measured by the runner into one run folder (``bench.engine.runner.run_sweep``, the same engine
as ``mlpbench run``, with ``--max-run-s``); meta.json's ``tune`` key holds the plan. That screening pass
measures the cases one after the other, and a shared machine drifts between them (the same FashionMNIST
case read 4.22, 3.73 and 2.94 ms within five minutes on the 2-core EPYC): a ranking of separate medians
picked eager once where a compiled step was 20% faster. So the **finalists** (the ``FINALISTS`` fastest
knob cases of each base) are then re-measured against eager **interleaved** (two gate workers pinned to the
same CPUs, each block's step rebuilt: other absolute times than the screening's, which the output says), as
``compare --confirm`` and the gate do (``bench.commands.compare.interleaved``: round-robin blocks, a paired
interval), into ``tune_confirm.json``. Then ``bench.report.tune`` recommends the finalist that is faster
than eager beyond noise (or eager, saying that no knob is), prints the table and the command that
reproduces it, and draws ``plots/tune.png``.

Every measured case also records its numerics against fp32 eager (``bench.instruments.numerics``, by the runner); the report
puts them beside each speedup and on the recommendation's line. ``--exact`` keeps the finalists and the
recommendation to knobs within their dtype's tolerance (the plan's ``exact``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..model.case_fields import KNOB_FIELDS, KNOBS, KNOBS_OFF
from ..errors import EXIT_INTERRUPTED, UsageError
from .case_flags import add_case_arguments, case_overrides, seconds_budget

TUNE_PRESET = "tune"
DEFAULT_MAX_CASE_S = 60.0  # like a sweep of flags alone
DEFAULT_COMPILE_MODE = "default"
FINALISTS = 2  # the fastest knob cases of the screening pass, re-measured interleaved against eager
EAGER = KNOBS_OFF  # every knob off: the base of a plan


@dataclass(frozen=True)
class Knob:
    name: str  # the bar's label: what this step of the chain adds
    changes: dict  # the case fields it sets


# The chain, cheapest to build first: the knobs without a compilation (a CUDA graph captures in milliseconds),
# then torch.compile of the model, then of the whole step (each a cold compile of tens of seconds).
# Each knob's label, value and place are declared beside its case field (bench.model.case_fields.KNOBS).
CHAIN = tuple(Knob(k.label, {name: k.on}) for name, k in sorted(KNOBS.items(), key=lambda item: item[1].order))


@dataclass
class TunePlan:
    """One base case's plan: the chain (label, case), the other combinations, and what cannot run here."""

    base: object  # bench.case.cases.Case
    chain: list = field(default_factory=list)  # [(label, Case)], eager first
    others: list = field(default_factory=list)  # [Case]
    skipped: list = field(default_factory=list)  # [(knob label, reason)]
    exact: bool = False  # --exact: finalists and recommendation only among knobs within numerics tolerance

    @property
    def cases(self) -> list:
        return [case for _, case in self.chain] + self.others

    def as_dict(self) -> dict:
        return {"base": self.base.case_id, "base_label": self.base.label,
                "chain": [[label, case.case_id] for label, case in self.chain],
                "cases": [case.case_id for case in self.cases],
                "flags": {case.case_id: case.cli_flags() for case in self.cases},
                "skipped": [list(item) for item in self.skipped], "exact": self.exact}


def plan_tune(base, compile_mode: str = DEFAULT_COMPILE_MODE) -> TunePlan:
    """The chain and the combinations of the knobs that apply to ``base`` on its device."""
    from ..case.cases import Case

    eager = base.with_(**EAGER)
    plan = TunePlan(eager, chain=[("eager", eager)])
    applicable = []
    current = eager
    for knob in CHAIN:
        changes = {k: (compile_mode if k == "compile" else v) for k, v in knob.changes.items()}
        reason = _not_here(eager, knob, changes)
        if not reason:
            try:
                candidate = current.with_(**changes)
            except ValueError as exc:
                reason = str(exc)
        if reason:
            plan.skipped.append((knob.name, reason))
            continue
        if candidate == current:  # normalised away (e.g. bf16 parameters under fp32)
            plan.skipped.append((knob.name, "changes nothing for this case"))
            continue
        applicable.append(changes)
        current = candidate
        plan.chain.append((f"+ {knob.name}", current))
    seen = set(plan.cases)
    for flags in itertools.product((False, True), repeat=len(applicable)):
        changes = {k: v for on, knob in zip(flags, applicable) if on for k, v in knob.items()}
        try:
            case = Case(**{**eager.to_row(), **changes})
        except ValueError:  # e.g. a CUDA graph with a mode that captures its own: not a combination
            continue
        if case not in seen:
            seen.add(case)
            plan.others.append(case)
    return plan


def measuring_order(plans: list[TunePlan]) -> list:
    """Every chain before any other combination, and the chains by position (every eager case, then every
    first knob, ...): a run budget that runs out costs the last knobs of every base, not a whole base."""
    longest = max((len(p.chain) for p in plans), default=0)
    chains = [p.chain[i][1] for i in range(longest) for p in plans if i < len(p.chain)]
    return list(dict.fromkeys(chains + [c for p in plans for c in p.others]))


def _not_here(case, knob: Knob, changes: dict) -> str:
    """Why a knob cannot run for this case on this machine ('' if it can)."""
    import torch

    if changes.get("cuda_graph") == "step" and case.device != "cuda":
        return "CUDA graphs need --device cuda"
    if case.device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if changes.get("param_dtype") == "compute" and case.dtype in ("fp32", "tf32"):
        return f"{case.dtype} has no lower compute dtype to keep the parameters in"
    return ""


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Measure the fastest-step knobs (bf16 parameters, fused epilogue, compile of the model "
                          "and of the whole step, a whole-step CUDA graph) on one case or a grid, report the "
                          "fastest, draw the waterfall (plots/tune.png) and print the command that reproduces it.")
    parser.add_argument("sweep", nargs="?", type=Path, metavar="SWEEP_FILE",
                        help="tune every case of a sweep file (docs/your-model.md, 'Sweep files'); its knob "
                             "settings are reset to eager, and the case flags override its grids")
    add_case_arguments(parser)
    parser.add_argument("--out", type=Path, help="run folder (default: results/runs/<run-id>-tune/)")
    parser.add_argument("--repeats", type=int, help="samples per case (default 12)")
    parser.add_argument("--warmup-s", type=float, help="warm-up budget per case (default 0.25)")
    parser.add_argument("--max-case-s", metavar="SECONDS", help=f"case budget (default {DEFAULT_MAX_CASE_S:g})")
    parser.add_argument("--max-run-s", metavar="SECONDS",
                        help="run budget: the chains first, then the other combinations, while time is left")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-confirm", action="store_true",
                        help=f"rank by the screening pass alone: skip re-measuring the {FINALISTS} fastest knob "
                             "cases against eager interleaved (faster, but a drifting machine can misrank them)")
    parser.add_argument("--exact", action="store_true",
                        help="recommend only knobs whose loss, gradients and weights stay within their dtype's "
                             "tolerance of fp32 eager (docs/design.md, 'Numerics beside speed'); without it a "
                             "knob beyond tolerance is recommended only with its numerics on the same line")


def base_cases(overrides: dict[str, tuple], sweep=None) -> list:
    """The base cases of a sweep (``bench.case.cases.Sweep``, from a sweep file) or of the case flags (a grid over the
    defaults), every available device unless --device (or the file) says; each reset to eager, listed once."""
    from ..case.cases import Sweep, available_devices

    overrides = {k: v for k, v in overrides.items() if k not in KNOB_FIELDS}
    sweep = sweep if sweep is not None else Sweep(TUNE_PRESET, ({},), all_devices=True)
    if "device" not in overrides and sweep.all_devices:
        overrides["device"] = available_devices()
    return list(dict.fromkeys(case.with_(**EAGER) for case in sweep.cases(overrides)))


def command(args) -> int:
    from ..case.cases import Case
    from ..instruments.env import busy_warning
    from ..report.tune import CONFIRM_FILE, tune_report
    from ..engine.runner import run_sweep
    from ..runs import claim_run_dir, load_run, new_run_dir, write_json
    from ..instruments.timing import TimingConfig

    overrides = case_overrides(args)
    fixed = sorted(k for k in overrides if k in KNOB_FIELDS and k != "compile")
    if fixed:
        raise UsageError(f"tune varies {', '.join('--' + k.replace('_', '-') for k in fixed)} itself; "
                         "leave it out (mlpbench run measures one setting)")
    modes = [m for m in overrides.get("compile", (DEFAULT_COMPILE_MODE,)) if Case(compile=m).compiled]
    if len(modes) != 1:
        raise UsageError("tune --compile takes one compile mode to try (e.g. default, max-autotune)")
    from ..case.cases import sweep_from_file

    sweep = sweep_from_file(args.sweep) if args.sweep is not None else None  # a bad file: its one-line error
    config_args = {k: v for k, v in (("repeats", args.repeats), ("warmup_s", args.warmup_s)) if v is not None}
    max_case_s = seconds_budget(args.max_case_s, "max-case-s") if args.max_case_s is not None else (
        sweep.max_case_s if sweep is not None and sweep.max_case_s is not None else DEFAULT_MAX_CASE_S)
    max_run_s = seconds_budget(args.max_run_s, "max-run-s") if args.max_run_s is not None else (
        sweep.max_run_s if sweep is not None else None)
    try:
        config = TimingConfig(**config_args, max_case_s=max_case_s)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    plans = [plan_tune(base, modes[0]) for base in base_cases(overrides, sweep)]
    for plan in plans:
        plan.exact = bool(getattr(args, "exact", False))
    if not plans:
        raise UsageError("the case flags give no case to tune")
    cases = measuring_order(plans)
    out_dir = args.out or new_run_dir(preset=TUNE_PRESET)
    claim_run_dir(out_dir, otherwise="choose another --out")
    for plan in plans:
        for knob, reason in plan.skipped:
            print(f"mlpbench tune: {plan.base.label}: {knob} skipped: {reason}", file=sys.stderr)
    print(f"mlpbench tune: {len(cases)} cases ({sum(len(p.chain) for p in plans)} in the waterfall) -> {out_dir}",
          file=sys.stderr)
    warning = busy_warning()
    if warning:
        print(f"mlpbench: warning: {warning}", file=sys.stderr)
    try:
        run_sweep(cases, out_dir, config, preset=TUNE_PRESET, progress=not args.no_progress,
                  meta_extra={"tune": [p.as_dict() for p in plans]}, max_run_s=max_run_s)
    except KeyboardInterrupt:
        print(f"\nmlpbench tune: interrupted; finished cases are saved in {out_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    run = load_run(out_dir)
    if not args.no_confirm:
        try:
            write_json(out_dir / CONFIRM_FILE, confirm_finalists(run, plans))
        except KeyboardInterrupt:
            print(f"\nmlpbench tune: interrupted while confirming; the screening pass is saved in {out_dir}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
    print(tune_report(run, out_dir))
    steps = run.summary[run.summary["phase"] == "step"]
    measured = int((steps["status"] == "ok").sum())
    print(f"mlpbench tune: {measured} of {len(steps)} cases measured; {out_dir}/tune.md, {out_dir}/plots/tune*.png")
    return 0


def finalists(summary, plan: TunePlan, limit: int = FINALISTS) -> list[str]:
    """The case ids of the ``limit`` fastest knob cases of ``plan`` that the screening pass measured (with
    ``plan.exact``, of those within their numerics tolerance)."""
    from ..report.tables import numerics_flag

    steps = summary[(summary["phase"] == "step") & (summary["status"] == "ok")]
    medians = dict(zip(steps["case_id"], steps["median_s"]))
    flagged = {r["case_id"] for _, r in steps.iterrows() if numerics_flag(r)} if plan.exact else set()
    eager = plan.base.case_id
    ids = [c.case_id for c in plan.cases if c.case_id != eager and c.case_id in medians and c.case_id not in flagged]
    return sorted(ids, key=lambda cid: medians[cid])[:limit] if eager in medians else []


def confirm_finalists(run, plans: list[TunePlan]) -> list[dict]:
    """Each plan's finalists against its eager case, interleaved in two pinned workers (``bench.commands.compare.interleaved``):
    the time ratio finalist/eager with its paired interval and the gate's verdict."""
    from .compare import case_row, interleaved
    from ..gate.ab import tree_root

    out = []
    for plan in plans:
        chosen = finalists(run.summary, plan)
        if not chosen:
            continue
        eager = case_row(run.summary, plan.base.case_id)
        print(f"mlpbench tune: {plan.base.label}: {len(chosen)} finalist(s) against eager, interleaved",
              file=sys.stderr)
        results = interleaved([eager] * len(chosen), [case_row(run.summary, cid) for cid in chosen],
                              tree_root(), tree_root())
        out.append({"base": plan.base.case_id, "finalists": [
            {"case_id": cid, "ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high, "verdict": r.verdict.gate_word,
             "eager_s": r.median_a_s, "median_s": r.median_b_s, "confidence": r.confidence, "rounds": r.n_b}
            for cid, r in zip(chosen, results)]})
    return out
