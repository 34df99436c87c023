"""The GPU kit's findings page on a synthetic GPU run (known speedups and ceilings) and a real CPU run."""

from __future__ import annotations

import re
import shutil

from bench.gpuref.findings import findings
from bench.gpuref.stages import Layout


def test_findings_quote_the_ceiling_share_and_the_crossover_of_the_synthetic_runs(tmp_path, gpu_run_dir, cpu_run_dir,
                                                                                  expected_crossover):
    layout = Layout(tmp_path / "out")
    shutil.copytree(gpu_run_dir, layout.gpu_run)
    shutil.copytree(cpu_run_dir, layout.cpu_run)
    text = findings(layout.out)
    assert "- ceiling cuda/fp32: 50 TFLOP/s at n=8192 = 75% of the datasheet's 67" in text  # 50 / 67
    crossings = re.findall(r"crossover vs this machine's CPU, fp32 w(\d+) d\d+: GPU wins from batch \S+ "
                           r"\(interpolated ([\d.]+)\)", text)
    assert crossings and all(abs(float(c) - expected_crossover) / expected_crossover < 0.01 for _, c in crossings)
    assert "tests: no input" in text and "timer: no input" in text
    assert re.search(r"- run: \d+ ok, 0 skipped for the run budget, 0 failed", text)
