"""What each stage of the GPU kit runs: the command lines (each its own process) and the files they write.

Every stage is one or more ``python -m ...`` processes of this checkout, so a stage that hangs or
crashes is killed at its limit without taking the kit with it, and each writes into its own part of
the output folder as it goes (a run folder is rewritten after every case).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tools.gpuref.plan import STAGES, Stage, StageName, run_max_s, tune_max_s

REPO = Path(__file__).resolve().parents[2]
# the committed 2-core CPU reference: the gpu preset's crossover grid measured on that machine
REFERENCE_CPU_RUN = REPO / "results" / "reference" / "cpu-2core" / "crossover"
LARGE_MLP = ("--width", "8192", "--depth", "4", "--batch", "8192", "--dtype", "bf16")
TINY_MLP = ("--width", "64", "--depth", "2", "--batch", "64", "--dtype", "fp32")
# fastest-step: `mlpbench tune` on the large MLP (the >= 85% MFU goal), then the batch-64 nets (the whole-step
# CUDA graph's >= 1.5x goal on FashionMNIST); named networks ignore --width/--depth, so one grid gives three bases
TUNES = (("large", LARGE_MLP),
         ("batch64", ("--network", "teaching,fashion_mnist,uniform", "--width", "1024", "--depth", "4",
                      "--batch", "64")))
TINY_TUNES = (("tiny", ("--network", "uniform,teaching", "--width", "64", "--depth", "2", "--batch", "64",
                        "--dtype", "bf16")),)
TEST_MARKERS = "cuda or torchvision"
MARKER_TEXTS = ("mark.cuda", "mark.torchvision")  # a test file that can hold a selected test names one of these
# The rehearsal checks the orchestration, not the numbers: fewer rounds, and one thread (a shared 2-core
# machine makes OpenMP's barriers bimodal; see the README's note on noise).
TINY_RUN_FLAGS = ("--repeats", "3", "--warmup-s", "0.05", "--threads", "1")


@dataclass(frozen=True)
class Layout:
    """Where the kit writes, under its output folder."""

    out: Path

    @property
    def preflight(self) -> Path:
        return self.out / "preflight.json"

    @property
    def junit(self) -> Path:
        return self.out / "tests" / "junit.xml"

    @property
    def gpu_run(self) -> Path:
        return self.out / "runs" / "gpu"

    @property
    def fastest(self) -> Path:
        return self.out / "fastest-step"

    @property
    def cpu_run(self) -> Path:
        return self.out / "runs" / "cpu"

    @property
    def timer(self) -> Path:
        return self.out / "timer-check.json"

    @property
    def profile(self) -> Path:
        return self.out / "profile"

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def report_reference(self) -> Path:
        return self.out / "report-vs-cpu-2core"

    @property
    def findings(self) -> Path:
        return self.out / "findings.md"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def status(self) -> Path:
        return self.out / "stages.json"

    def outputs(self, name: StageName) -> list[Path]:
        """What a stage writes: removed before the stage is run again (``--stages``)."""
        return {StageName.PREFLIGHT: [self.preflight], StageName.TESTS: [self.junit.parent], StageName.MUTANTS: [],
                StageName.GPU_RUN: [self.gpu_run], StageName.FASTEST: [self.fastest], StageName.CPU_RUN: [self.cpu_run],
                StageName.TIMER: [self.timer], StageName.PROFILE: [self.profile],
                StageName.REPORT: [self.report, self.report_reference, self.findings]}[name]


CUDA_MUTANTS = ("cuda-host-clock", "cuda-no-sync")  # tests/mutants.py; the CPU ones run in .ci/run


def _bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def commands(stage: Stage, layout: Layout, device: str, tiny: bool) -> list[list[str]]:
    """The processes of ``stage``, in order (the report stage has two)."""
    name = stage.name
    if name is StageName.PREFLIGHT:
        return [[sys.executable, "-m", "tools.gpuref.preflight", "--device", device, "--out", str(layout.preflight)]]
    if name is StageName.TESTS:
        return [[sys.executable, "-m", "pytest", "-m", TEST_MARKERS, "-q", "-p", "no:cacheprovider", "-rs",
                 f"--junitxml={layout.junit}", *marked_test_files()]]
    if name is StageName.MUTANTS:  # tests/mutants.py: its CUDA mutants, run only where CUDA is
        return [[sys.executable, "-m", "tests.mutants", "--cuda", *CUDA_MUTANTS]]
    if name is StageName.GPU_RUN:
        return [_bench("run", "--preset", "gpu-tiny" if tiny else "gpu", "--device", device,
                       "--max-run-s", f"{run_max_s(stage, tiny):g}", "--out", str(layout.gpu_run), "--no-progress",
                       *(TINY_RUN_FLAGS if tiny else ()))]
    if name is StageName.FASTEST:
        # --no-confirm: the interleaved re-measurement of the finalists builds (and compiles) them again in two
        # workers, which the stage's limit has no room for; the kit's tune.md says the ranking is the screening's
        return [_bench("tune", *args, "--device", device, "--max-run-s", f"{tune_max_s(stage, tiny, folder):g}",
                       "--out", str(layout.fastest / folder), "--no-progress", "--no-confirm",
                       *(TINY_RUN_FLAGS if tiny else ()))
                for folder, args in (TINY_TUNES if tiny else TUNES)]
    if name is StageName.CPU_RUN:
        return [_bench("run", "--preset", "crossover-tiny" if tiny else "crossover", "--device", "cpu",
                       "--max-run-s", f"{run_max_s(stage, tiny):g}", "--out", str(layout.cpu_run), "--no-progress",
                       *(TINY_RUN_FLAGS if tiny else ()))]
    if name is StageName.TIMER:
        return [[sys.executable, "-m", "tools.gpuref.timercheck", "--out", str(layout.timer),
                 *(["--tiny"] if tiny else [])]]
    if name is StageName.PROFILE:
        return [_bench("profile", *(TINY_MLP if tiny else LARGE_MLP), "--device", device,
                       "--out", str(layout.profile))]
    from bench.runs import is_run_dir

    runs = [str(layout.gpu_run)] + ([str(layout.cpu_run)] if is_run_dir(layout.cpu_run) else [])
    # --html: report.html too where plotly is installed; without it (the GPU machines) one line says it was skipped
    out = [_bench("report", *runs, "--out", str(layout.report), "--html")]
    if is_run_dir(REFERENCE_CPU_RUN):
        out.append(_bench("report", str(layout.gpu_run), str(REFERENCE_CPU_RUN), "--out",
                          str(layout.report_reference), "--html"))
    out.append([sys.executable, "-m", "tools.gpuref.findings", "--out", str(layout.out)])
    return out


def marked_test_files(root: Path = REPO / "tests") -> list[str]:
    """The test files that mention a selected marker (collecting only them saves the suite's import time)."""
    files = [str(p) for p in sorted(root.rglob("test_*.py")) if any(m in p.read_text() for m in MARKER_TEXTS)]
    return files or [str(root)]


def by_name(names: list[str]) -> list[Stage]:
    """The stages named (in the kit's order); a ValueError names the valid ones."""
    known = {s.name.value: s for s in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    return [s for s in STAGES if s.name.value in names]
