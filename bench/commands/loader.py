"""``mlpbench loader``: the classic FashionMNIST loop end to end (dataset -> DataLoader -> copy -> step).

Sweeps ``--batch``, ``--num-workers`` and ``--pin-memory`` (and device, dtype, threads) over the
FashionMNIST network with cross-entropy and SGD (the classic's), and writes a run folder like
``mlpbench run`` (samples.csv, summary.csv, meta.json with ``kind: loader``) after every case, so
``mlpbench show`` / ``report`` read it and Ctrl-C keeps what was measured. The data: a user's local
FashionMNIST (``--data-root``, torchvision's layout) or, by default, random-content files of the
dataset's exact format in a cache folder (``mlp.fashion_mnist_files``); nothing is downloaded.
Bad input is one line and exit code 2, before anything is measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import EXIT_INTERRUPTED, UsageError, first_line
from .case_flags import comma_list

DEFAULT_BATCHES = "64,256"
DEFAULT_WORKERS = "0,1,2"
LOADER_NETWORKS = ("fashion_mnist", "fashion_mnist_original")  # the networks that take FashionMNIST images
ON_WORDS, OFF_WORDS = ("on", "true", "yes", "1"), ("off", "false", "no", "0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("the loop (comma lists are swept)")
    g.add_argument("--batch", default=DEFAULT_BATCHES, metavar="LIST", help=f"batch sizes (default {DEFAULT_BATCHES})")
    g.add_argument("--num-workers", default=DEFAULT_WORKERS, metavar="LIST",
                   help=f"DataLoader worker processes (default {DEFAULT_WORKERS})")
    g.add_argument("--pin-memory", metavar="LIST", help="on,off; default on for CUDA cases, off on the CPU "
                   "(pinning only serves a copy to a CUDA device)")
    g.add_argument("--persistent-workers", default="on", help="on | off: keep workers between epochs (default on)")
    g.add_argument("--network", default="fashion_mnist", metavar="LIST", help="fashion_mnist | fashion_mnist_original")
    g.add_argument("--device", metavar="LIST", help="cpu,cuda (default: every available device)")
    g.add_argument("--dtype", default="fp32", metavar="LIST", help="fp32 | tf32 | bf16 | fp16 (default fp32)")
    g.add_argument("--threads", default="0", metavar="LIST", help="torch threads of the step (default 0: torch's own)")
    m = parser.add_argument_group("measuring")
    m.add_argument("--steps", type=int, default=None, help="measured loop steps per case (default 100)")
    m.add_argument("--warmup-steps", type=int, default=None, help="loop steps before measuring (default 10)")
    m.add_argument("--repeats", type=int, help="step-only blocks per case (default 12)")
    m.add_argument("--data-root", type=Path, help="a local FashionMNIST in torchvision's layout (ROOT/FashionMNIST/raw/); "
                   "default: random-content files of its format, written once to a cache folder")
    m.add_argument("--seed", type=int, default=0, help="model initialisation and shuffle order")
    parser.add_argument("--out", type=Path, help="run folder (default: results/runs/<run-id>-loader/)")
    parser.add_argument("--no-report", action="store_true", help="do not write report.md and the figure")
    parser.add_argument("--no-show", action="store_true", help="do not print the table at the end")


def _switches(text: str, flag: str) -> tuple[bool, ...]:
    values = []
    for item in comma_list(text, str, flag):
        word = item.lower()
        if word not in ON_WORDS + OFF_WORDS:
            raise UsageError(f"--{flag}: {item!r} is not on or off")
        values.append(word in ON_WORDS)
    return tuple(dict.fromkeys(values))


def plan_cases(args: argparse.Namespace) -> list:
    """The cases in measuring order; every value checked, so nothing is measured on bad input."""
    from ..case.cases import Case, available_devices
    from ..loader.measure import LoaderCase

    batches = comma_list(args.batch, int, "batch")
    workers = comma_list(args.num_workers, int, "num-workers")
    threads = comma_list(args.threads, int, "threads")
    networks = comma_list(args.network, str, "network")
    devices = comma_list(args.device, str, "device") if args.device else available_devices()
    dtypes = comma_list(args.dtype, str, "dtype")
    persistent = _switches(args.persistent_workers, "persistent-workers")
    if len(persistent) != 1:
        raise UsageError("--persistent-workers takes one value, on or off")
    if any(b < 1 for b in batches):
        raise UsageError(f"--batch: every batch must be >= 1, got {args.batch}")
    if any(w < 0 for w in workers):
        raise UsageError(f"--num-workers: every value must be >= 0, got {args.num_workers}")
    bad = [n for n in networks if n not in LOADER_NETWORKS]
    if bad:
        raise UsageError(f"--network: {bad[0]!r} does not take FashionMNIST images; valid: {', '.join(LOADER_NETWORKS)}")
    for name, value in (("steps", args.steps), ("repeats", args.repeats)):
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise UsageError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    cases = []
    for network in networks:
        for device in devices:
            pins = _switches(args.pin_memory, "pin-memory") if args.pin_memory else (device == "cuda",)
            for dtype in dtypes:
                for thread_count in threads:
                    for batch in batches:
                        try:
                            case = Case(network=network, batch=batch, device=device, dtype=dtype, threads=thread_count,
                                        loss="cross_entropy", optimizer="sgd")
                        except ValueError as exc:
                            raise UsageError(str(exc)) from None
                        cases += [LoaderCase(case, w, pin, persistent[0]) for w in workers for pin in pins]
    return list(dict.fromkeys(cases))


def _loop_config(args: argparse.Namespace):
    from ..instruments.timing import TimingConfig
    from ..loader.measure import DEFAULT_STEPS, DEFAULT_WARMUP_STEPS, LoopConfig

    timing = TimingConfig(**({"repeats": args.repeats} if args.repeats else {}))
    return LoopConfig(steps=args.steps or DEFAULT_STEPS,
                      warmup_steps=DEFAULT_WARMUP_STEPS if args.warmup_steps is None else args.warmup_steps,
                      timing=timing)


def _dataset(data_root: Path | None):
    """(torchvision dataset, FashionMNISTRoot); a root without the files, or no torchvision, is bad input."""
    import mlp
    from mlp.fashion_mnist_files import resolve_root

    reason = mlp.torchvision_status()
    if reason:
        raise UsageError(f"the loader benchmark needs torchvision: {reason}")
    try:
        source = resolve_root(data_root)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write the random FashionMNIST files: {exc.strerror or exc}") from None
    return mlp.fashion_mnist_dataset(str(source.root), train=True), source


def command(args: argparse.Namespace) -> int:
    from ..instruments.env import busy_warning
    from ..runs import RunWriter, claim_run_dir, new_run_dir

    cases = plan_cases(args)
    config = _loop_config(args)
    out_dir = args.out or new_run_dir(preset="loader")
    dataset, source = _dataset(args.data_root)
    claim_run_dir(out_dir)
    print(f"mlpbench loader: {len(cases)} cases -> {out_dir}; data {source.description}", file=sys.stderr)
    warning = busy_warning()
    if warning:
        print(f"mlpbench: warning: {warning}", file=sys.stderr)
    results, started = [], time.perf_counter()
    with RunWriter(out_dir, _meta(cases, config, source, len(dataset))) as writer:  # the folder's lock
        try:
            for index, lcase in enumerate(cases, start=1):
                results.append(_measure(lcase, dataset, config, args.seed))
                _write(writer, results, started)
                print(f"  [{index}/{len(cases)}] {lcase.label}: {_progress_text(results[-1])}", file=sys.stderr)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this)
            writer.meta.interrupted = True
            _write(writer, results, started)
            print(f"\nmlpbench: interrupted; {len(results)} finished cases are saved in {out_dir}", file=sys.stderr)
            return EXIT_INTERRUPTED
    return _finish(out_dir, args)


def _measure(lcase, dataset, config, seed: int):
    from ..loader.measure import LoaderMeasurement, measure_loader_case

    try:
        return measure_loader_case(lcase, dataset, config, seed)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - failure is data: a row with the reason, the sweep goes on
        return LoaderMeasurement(lcase, status="error", reason=f"{type(exc).__name__}: {first_line(exc)}")


def _progress_text(m) -> str:
    if m.status != "ok":
        return f"{m.status}: {m.reason}"
    from ..loader.tables import step_only_samples_per_s

    return (f"end to end {m.epoch_samples_per_s:,.0f} samples/s, step only "
            f"{step_only_samples_per_s(m):,.0f} samples/s")


def _meta(cases: list, config, source, examples: int):
    from ..instruments.env import fingerprint, load_average
    from ..runs import RunKind, RunMeta

    return RunMeta(kind=RunKind.LOADER, preset="loader", env=fingerprint(), n_cases=len(cases),
                   cases=[c.to_row() for c in cases], load_average_1m_start=load_average(),
                   extra={"loop_config": {"steps": config.steps, "warmup_steps": config.warmup_steps,
                                          "timing": asdict(config.timing)},
                          "data": {"root": str(source.root), "random_content": source.random_content,
                                   "description": source.description, "train_examples": examples},
                          "command": " ".join(["mlpbench", *sys.argv[1:]])})


def _write(writer, results: list, started: float) -> None:
    from ..instruments.env import load_average
    from ..loader.tables import tables

    samples, summary = tables(results)
    writer.set_tables(summary, samples)
    writer.meta.run_s = time.perf_counter() - started
    writer.meta.load_average_1m_end = load_average()
    writer.flush()


def _finish(out_dir: Path, args: argparse.Namespace) -> int:
    from ..report.loader import format_loader, write_loader_report
    from ..runs import load_run

    run = load_run(out_dir)
    if not args.no_show:
        print(format_loader(run.summary))
    if not args.no_report:
        report = write_loader_report([run], out_dir)
        print(f"mlpbench: report {report.path}", file=sys.stderr)
    failed = (run.summary.drop_duplicates("case_id")["status"] == "error").sum()
    print(f"mlpbench: run folder {out_dir} ({run.summary['case_id'].nunique()} cases, {failed} failed)")
    return 0
