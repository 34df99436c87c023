"""``make gpu-reference`` (``python -m tools.gpuref``): the whole CUDA verification in one prepared command, stage by stage, each bounded.

Stages (``plan.STAGES``): preflight, the CUDA tests, the ``gpu`` preset under a run budget, the
crossover grid on the machine's own CPU cores, the engine-vs-``do_bench`` timer check, a profile of
the large MLP, and the merged CPU-vs-GPU reports. Each runs in its own process with its own time
limit (killed at it), writes into OUT as it goes, and is recorded in OUT/stages.json; after every
stage the archive (a tar.gz of OUT, under 16 MiB) is rewritten, so a command killed at any point
keeps everything finished before it. A failed preflight stops the kit with one line.

``--device cpu --tiny`` is the rehearsal: every stage end to end at toy sizes on the CPU, CUDA-only
stages saying ``skipped: no CUDA``. ``--dry-run`` prints the plan with the predicted time of each
stage on an H100/H200 (``forecast``). docs/gpu-reference.md has the command line for the GPU machine.

It needs the checkout (the tests it runs, results/reference), so it lives in tools/, not in the wheel; its stages
run the product as ``python -m bench ...``. Module-level imports stay light (no torch).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.errors import ONE_LINE_CHARS, OneLineParser, UsageError, one_line_errors
from bench.instruments.processes import KILL_GRACE_S, run_bounded
from tools.gpuref.archive import write_archive
from tools.gpuref.plan import STAGES, TOTAL_LIMIT_S, Stage, StageName, total_limit_s
from tools.gpuref.stages import REPO, Layout, by_name, commands

FAILURE_TAIL_LINES = 15  # lines of a failed stage's log printed to the console
NO_CUDA = "no CUDA"  # printed as `skipped: no CUDA`


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.gpuref``: bad input is one line and exit code 2, as in ``mlpbench``."""
    def run() -> int:
        parser = OneLineParser(prog="python -m tools.gpuref",
                               description="The GPU kit: every CUDA check and measurement, stage by stage, bounded.")
        add_arguments(parser)
        return command(parser.parse_args(argv))

    return one_line_errors(run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="output folder (every stage writes into it as it goes)")
    parser.add_argument("--archive", type=Path,
                        help="the tar.gz of OUT, rewritten after every stage (default: OUT.tar.gz beside OUT); "
                             "on the device machine: $OUT/gpu-reference.tar.gz")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda on the GPU machine; cpu for the rehearsal (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes and short limits (the CPU rehearsal)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and predicted times, run nothing")
    parser.add_argument("--gpu", choices=("h100", "h200"), default="h100", help="the GPU the dry run predicts for")
    parser.add_argument("--stages", metavar="LIST",
                        help=f"comma list of stages to run (default all): {', '.join(s.name.value for s in STAGES)}; "
                             "with an existing OUT, reruns them there")


def command(args: argparse.Namespace) -> int:
    try:
        stages = by_name([s.strip() for s in args.stages.split(",")]) if args.stages else list(STAGES)
    except ValueError as exc:
        raise UsageError(f"--stages: {exc}") from None
    if args.dry_run:
        print_plan(stages, args.gpu, args.tiny)
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required (or --dry-run)")
    from bench.runs import output_file, output_folder

    out = output_folder(args.out.resolve(), "--out", new=not args.stages,  # the stages run from the checkout's root
                        otherwise="choose another --out, or rerun some stages into it with --stages")
    archive = output_file((args.archive or out.parent / f"{out.name}.tar.gz").resolve(), "--archive")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Kit(Layout(out), archive, args.device, args.tiny).run(stages)


def print_plan(stages: list[Stage], gpu: str, tiny: bool) -> None:
    from tabulate import tabulate

    from tools.gpuref.forecast import forecast

    predicted = {f.stage.name: f for f in forecast(gpu)}
    rows = [{"stage": s.name.value, "limit s": f"{s.limit(tiny):g}",
             f"predicted s ({gpu.upper()})": f"{predicted[s.name].predicted_s:.0f}",
             "what": s.title + ("" if not s.cuda_only else " [CUDA only]"),
             "how predicted": predicted[s.name].note} for s in stages]
    print(tabulate(rows, headers="keys", tablefmt="github"))
    total_predicted = sum(predicted[s.name].predicted_s for s in stages)
    print(f"\ntotal: predicted {total_predicted:.0f} s on an {gpu.upper()}; limits {total_limit_s(tiny):.0f} s with "
          f"the orchestration (must be <= {TOTAL_LIMIT_S:.0f} s); nothing run (dry run)")


class Kit:
    """Runs the stages in order, each bounded, recording status and rewriting the archive after each."""

    def __init__(self, layout: Layout, archive: Path, device: str, tiny: bool):
        self.layout, self.archive, self.device, self.tiny = layout, archive, device, tiny
        self.records: list[dict] = []
        self.started = time.perf_counter()
        self.cuda = None  # known after the preflight (or probed when it is not run)

    # ------------------------------------------------------------------ status and archive

    def _write_status(self) -> None:
        self.records.sort(key=lambda r: list(StageName).index(StageName(r["stage"])))
        status = {"device": self.device, "tiny": self.tiny, "out": str(self.layout.out), "archive": str(self.archive),
                  "started": self.started_at, "elapsed_s": time.perf_counter() - self.started,
                  "stages": self.records}
        from bench.runs import write_json

        write_json(self.layout.status, status)

    def _write_archive(self) -> None:
        size, left_out = write_archive(self.layout.out, self.archive)
        self.archive_bytes, self.archive_left_out = size, left_out

    # ------------------------------------------------------------------ stages

    def run(self, stages: list[Stage]) -> int:
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        self.archive_bytes, self.archive_left_out = 0, []
        # --stages into an existing OUT: the other stages' records stay
        self.records = self._earlier_records({s.name.value for s in stages})
        stopped = ""
        for i, stage in enumerate(stages, 1):
            if stopped:
                record = self._record(stage, "not run", 0.0, None, stopped)
            elif stage.cuda_only and not self._has_cuda():
                record = self._record(stage, "skipped", 0.0, None, NO_CUDA)
            else:
                for path in self.layout.outputs(stage.name):
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                record = self._run_stage(stage)
                if stage.name is StageName.PREFLIGHT and record["status"] != "ok":
                    stopped = "the preflight failed"
            self.records.append(record)
            self._write_status()
            self._write_archive()
            print(f"[{i}/{len(stages)}] {stage.name.value}: {record['status']}"
                  + (f" ({record['seconds']:.0f} s of {record['limit_s']:g} s)" if record["rc"] is not None else "")
                  + (f": {record['summary']}" if record["summary"] else ""), flush=True)
            if record["status"] in ("failed", "timeout"):
                for line in record.get("tail", []):
                    print(f"    | {line}", flush=True)
        self._write_status()
        self._write_archive()
        if self.layout.findings.is_file():  # the device tool returns the console's end: the figures go there
            print(self.layout.findings.read_text(), end="", flush=True)
        counts = {s: sum(1 for r in self.records if r["status"] == s) for s in dict.fromkeys(
            r["status"] for r in self.records)}
        print(f"gpu-reference: {len(self.records)} stages ({', '.join(f'{n} {s}' for s, n in counts.items())}) in "
              f"{time.perf_counter() - self.started:.0f} s; status {self.layout.status}; archive {self.archive} "
              f"({self.archive_bytes / 2**20:.1f} MiB"
              + (f", left out: {', '.join(self.archive_left_out)}" if self.archive_left_out else "") + ")", flush=True)
        return 0 if all(r["status"] in ("ok", "skipped") for r in self.records) else 1

    def _earlier_records(self, rerun: set[str]) -> list[dict]:
        try:
            records = json.loads(self.layout.status.read_text())["stages"]
        except (OSError, KeyError, ValueError):
            return []
        return [r for r in records if r.get("stage") not in rerun and r.get("stage") in {n.value for n in StageName}]

    def _has_cuda(self) -> bool:
        if self.cuda is None:
            try:
                self.cuda = bool(json.loads(self.layout.preflight.read_text())["fingerprint"]["cuda_available"])
            except (OSError, KeyError, ValueError):
                out = subprocess.run([self._python(), "-c", "import torch; print(torch.cuda.is_available())"],
                                     capture_output=True, text=True, timeout=60, env=self._env())
                self.cuda = out.stdout.strip() == "True"
        return self.cuda and self.device == "cuda"

    @staticmethod
    def _python() -> str:
        return sys.executable

    @staticmethod
    def _env(debug: bool = False) -> dict:
        """The stages' environment: this checkout first on the path; tracebacks in the logs (not in the tests)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.update({"PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
        if debug:
            env["MLPBENCH_DEBUG"] = "1"
        return env

    def _record(self, stage: Stage, status: str, seconds: float, rc: int | None, summary: str, **extra) -> dict:
        return {"stage": stage.name.value, "title": stage.title, "status": status, "rc": rc, "seconds": seconds,
                "limit_s": stage.limit(self.tiny), "summary": summary, **extra}

    def _run_stage(self, stage: Stage) -> dict:
        limit = stage.limit(self.tiny)
        log = self.layout.logs / f"{list(StageName).index(stage.name) + 1}-{stage.name.value}.log"
        start = time.perf_counter()
        running = self._record(stage, "running", 0.0, None, "")
        self.records.append(running)
        self._write_status()
        self.records.remove(running)
        status, rc = "ok", 0
        with log.open("w") as sink:
            for cmd in commands(stage, self.layout, self.device, self.tiny):
                sink.write(f"$ {' '.join(cmd)}\n")
                sink.flush()
                rc = _run_bounded(cmd, sink, limit - (time.perf_counter() - start),
                                  self._env(debug=stage.name is not StageName.TESTS))
                if rc is None:
                    status = "timeout"
                    break
                if rc != 0:
                    status = "failed"
        lines = [ln.rstrip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        summary = lines[-1][:ONE_LINE_CHARS] if lines else ""
        if status == "timeout":
            summary = f"killed at its {limit:g} s limit; last line: {summary}"
        if stage.name is StageName.PREFLIGHT:
            preflight_line = next((ln for ln in lines if ln.startswith("preflight:")), summary)
            summary = preflight_line[:400]
        return self._record(stage, status, time.perf_counter() - start, rc, summary, log=str(log),
                            tail=lines[-FAILURE_TAIL_LINES:] if status != "ok" else [])


def _run_bounded(cmd: list[str], sink, limit_s: float, env: dict) -> int | None:
    """Run ``cmd`` (its own process group) with output to ``sink``; None when killed at ``limit_s``."""
    if limit_s <= 0:
        return None
    return run_bounded(cmd, sink, limit_s, env, cwd=REPO, grace_s=KILL_GRACE_S)
