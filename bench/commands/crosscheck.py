"""Cross-check the engine against an independent timer, ``torch.utils.benchmark``.

For each case: our whole-step median (``bench.instruments.timing.measure``) and
``torch.utils.benchmark.Timer(...).blocked_autorange()`` on the same training
step, same thread count, in the same process, one after the other. Their ratio
should be close to 1; a large gap means one of the two is measuring something else.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where the check runs: `mlpbench crosscheck --help` needs none of it
    from ..case.cases import Case
    from ..instruments.timing import TimingConfig

DEFAULT_CASES = (  # as Case fields
    dict(network="teaching", batch=64),
    dict(network="fashion_mnist", batch=64),
    dict(width=512, depth=2, batch=128),
)
TIMER_MIN_RUN_S = 1.0  # blocked_autorange keeps adding blocks until this much time is measured


def crosscheck(case: Case, config: TimingConfig | None = None) -> dict:
    # torch.utils.benchmark imports cpp_extension, which on a CUDA build of torch without a CUDA runtime
    # (torch 2.14.1 from PyPI on a CPU machine) logs a warning; only this command imports it
    import torch
    import torch.utils.benchmark as tbench

    from ..model.phases import Phase
    from ..analysis.stats import summarize
    from ..instruments.timing import TimingConfig, build_step, case_context, measure

    ours = summarize(measure(case, config or TimingConfig()).samples[Phase.STEP]).median
    with case_context(case):
        step = build_step(case)
        x, y = case.make_batch(torch.Generator().manual_seed(1))
        step.step(x, y)  # warm
        timer = tbench.Timer(stmt="step.step(x, y)", globals={"step": step, "x": x, "y": y},
                             num_threads=torch.get_num_threads())
        theirs = timer.blocked_autorange(min_run_time=TIMER_MIN_RUN_S).median
    return {"case": case.label, "mlpbench_ms": ours * 1e3, "torch_benchmark_ms": theirs * 1e3,
            "ratio": ours / theirs}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every case (0: default)")


def command(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..case.cases import Case

    rows = [crosscheck(Case(**fields, threads=args.threads)) for fields in DEFAULT_CASES]
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g"))
    return 0
