"""``mlpbench profile``: where the time of one case goes.

One case, one process, never inside a ``run`` (the profiler's overhead must not
leak into benchmark numbers). Real training steps run under ``torch.profiler``
with a wait / warm-up / active schedule; every phase sits in a
``record_function`` range named after it (``forward``, ``backward``,
``optimizer``), so the trace shows the phases and operators can be attributed
to them. The profile folder gets:

* ``trace.json``: Chrome / Perfetto trace of the active steps (with memory events);
* ``profile.md``: overhead split per phase, the top operators per phase, FLOPs
  by module (``FlopCounterMode``) next to the analytic count, and memory
  analytic vs measured;
* ``meta.json``: the run record's ``RunMeta`` (kind ``profile``): the case, the environment
  fingerprint, and under ``schedule`` / ``files`` the profiler's schedule and the folder's files;
* ``memory_snapshot.pickle`` with ``--memory-snapshot`` (CUDA only), for
  https://pytorch.org/memory_viz.

Attribution: ``key_averages()`` is global, so operators are assigned to a phase
by time: an operator belongs to the phase range that contains its start. Time
and not the parent chain, because on CUDA autograd runs backward on its own
device thread, whose operators have no parent in the main thread's ``backward``
range. Device (kernel) time is counted on the CPU operator that launched the
kernel (the profiler links them by correlation id), so it lands in the phase
that issued the work even though the GPU runs it later.

Module-level imports stay light: ``mlpbench --help`` imports this file.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .case_flags import CASE_FLAGS, add_case_arguments, case_overrides
from ..profile.capture import profile_case
from ..profile.render import render_markdown
from ..profile.results import (
    ACTIVE_STEPS,
    META_FILE,
    REPORT_FILE,
    SNAPSHOT_FILE,
    TOP_N,
    TRACE_FILE,
    WAIT_STEPS,
    WARMUP_STEPS,
    ProfileConfig,
    ProfileResult,
)

if TYPE_CHECKING:
    import torch

    from bench.case.cases import Case


PROFILES_DIR = Path("results/profiles")


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mlpbench profile``: the case flags of ``run`` (one value each) plus the schedule."""
    add_case_arguments(parser)
    parser.add_argument("--out", type=Path, help="profile folder (default: results/profiles/<id>/)")
    parser.add_argument("--wait-steps", type=int, default=WAIT_STEPS,
                        help=f"untraced steps first (default {WAIT_STEPS})")
    parser.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS,
                        help=f"traced, discarded steps (default {WARMUP_STEPS})")
    parser.add_argument("--active-steps", type=int, default=ACTIVE_STEPS,
                        help=f"recorded steps (default {ACTIVE_STEPS})")
    parser.add_argument("--top", type=int, default=TOP_N, help=f"operators per phase (default {TOP_N})")
    parser.add_argument("--by-shape", action="store_true", help="one row per operator and input shapes")
    parser.add_argument("--memory-snapshot", action="store_true",
                        help=f"CUDA only: also write {SNAPSHOT_FILE} for https://pytorch.org/memory_viz")


def command(args: argparse.Namespace) -> int:
    config = ProfileConfig(args.wait_steps, args.warmup_steps, args.active_steps, args.top, args.by_shape,
                           args.memory_snapshot)
    case = resolve_case(case_overrides(args, user_model=False))
    _check_runnable(case, config)
    from ..runs import claim_run_dir

    out_dir = args.out or _new_profile_dir(case)
    claim_run_dir(out_dir)
    print(f"mlpbench: profiling {case.label} -> {out_dir}", file=sys.stderr)
    with _writer(case, config, out_dir) as writer:  # the folder's lock, from the first file to the last
        result = profile_case(case, config, out_dir)
        text = render_markdown(result)
        _write_outputs(result, text, writer)
    print(text)
    print(f"mlpbench: profile folder {out_dir} (open {TRACE_FILE} in https://ui.perfetto.dev)")
    return 0


def resolve_case(overrides: dict[str, tuple]) -> Case:
    """Exactly one case: ``Case()`` defaults with the flags applied; the device defaults to CUDA when present."""
    from ..case.cases import Case, Sweep, available_devices

    multi = [f"--{flag}" for flag, (field, _) in CASE_FLAGS.items() if len(overrides.get(field, ())) > 1]
    if multi:
        raise UsageError(f"profile takes exactly one case; {', '.join(multi)} got several values "
                         f"(profile them one at a time)")
    defaults = {"device": ("cuda" if "cuda" in available_devices() else "cpu",)}
    cases = Sweep("profile", ({},), all_devices=False).cases({**defaults, **overrides})
    if len(cases) != 1:  # unreachable with one value per flag; kept as the contract's guard
        raise UsageError(f"profile takes exactly one case, the flags give {len(cases)}")
    return cases[0]


def _check_runnable(case: Case, config: ProfileConfig) -> None:
    import torch

    if case.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    if case.whole_step:  # its phases would be the uncompiled, uncaptured pieces: a split the step never has
        raise UsageError("profile splits the step into phases; --compile-scope step and --cuda-graph step run it as "
                         "one unit (profile it with --compile-scope model --cuda-graph none)")
    if config.memory_snapshot and case.device != "cuda":
        raise UsageError(f"--memory-snapshot needs --device cuda (it records the CUDA caching allocator); "
                         f"this case runs on {case.device}")


def _new_profile_dir(case: Case) -> Path:
    from ..runs import new_run_dir

    return new_run_dir(PROFILES_DIR, preset=re.sub(r"[^A-Za-z0-9_.-]+", "-", case.label))


# --------------------------------------------------------------------------- files


def _writer(case: Case, config: ProfileConfig, out_dir: Path):
    from ..instruments.env import fingerprint
    from ..runs import RunKind, RunMeta, RunWriter

    meta = RunMeta(kind=RunKind.PROFILE, preset="profile", env=fingerprint(), n_cases=1, cases=[case.to_row()],
                   extra={"case_id": case.case_id, "label": case.label, "schedule": asdict(config)})
    return RunWriter(out_dir, meta)


def _write_outputs(result: ProfileResult, markdown: str, writer) -> None:
    writer.write_text(REPORT_FILE, markdown)
    writer.meta.extra["files"] = [*result.files, REPORT_FILE, META_FILE]
    writer.write_meta()
