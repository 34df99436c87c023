"""The GPU kit's findings page on a synthetic GPU run (known speedups and ceilings) and a real CPU run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from tools.gpuref.findings import findings
from tools.gpuref.stages import Layout


def test_findings_quote_the_ceiling_share_and_the_crossover_of_the_synthetic_runs(tmp_path, gpu_run_dir, cpu_run_dir,
                                                                                  expected_crossover):
    layout = Layout(tmp_path / "out")
    shutil.copytree(gpu_run_dir, layout.gpu_run)
    shutil.copytree(cpu_run_dir, layout.cpu_run)
    text = findings(layout.out)
    assert "- ceiling cuda/fp32: 50 TFLOP/s (n=8192) = 75% of the datasheet's 67" in text  # 50 / 67
    crossings = re.findall(r"crossover vs this machine's CPU, fp32 w(\d+) d\d+: GPU wins from batch \S+ "
                           r"\(interpolated ([\d.]+)\)", text)
    assert crossings and all(abs(float(c) - expected_crossover) / expected_crossover < 0.01 for _, c in crossings)
    assert "tests: no input" in text and "timer: no input" in text
    assert re.search(r"- run: \d+ ok, 0 skipped for the run budget, 0 failed", text)


H100 = Path(__file__).resolve().parents[3] / "results" / "reference" / "h100"


def test_findings_of_the_committed_h100_reference(tmp_path):
    """The real first H100 run: both crossovers found, and a memory line that says what the run lacks."""
    out = tmp_path / "h100"
    shutil.copytree(H100, out)
    text = findings(out)
    # the 2-core reference is the crossover grid measured on that machine (results/reference/cpu-2core/crossover)
    assert "- crossover vs the 2-core CPU reference, fp32 w256 d2: GPU wins from batch 64 (interpolated 38)" in text
    assert "- crossover vs the 2-core CPU reference, fp32 w8192 d2: GPU wins from batch 4" in text
    assert "- crossover vs this machine's CPU, fp32 w256 d2: GPU wins from batch 1.02e+03" in text
    assert "this run predates the analytic phase peaks and the harness column" in text
    assert "- tests: 27 selected, 0 failed, 0 errors, 11 skipped" in text


def test_findings_compare_analytic_phase_peaks_with_the_peak_less_the_harness(tmp_path):
    """Known columns: every eager forward/optimizer/inference row exact but one, 20% over."""
    out = tmp_path / "h100"
    shutil.copytree(H100, out)
    summary_path = out / "runs" / "gpu" / "summary.csv"
    summary = pd.read_csv(summary_path)
    harness = 100 * 2**20
    summary["harness_mem_bytes"] = harness
    summary["mem_phase_peak_bytes"] = summary["peak_mem_bytes"] - harness
    checked = summary[(summary["status"] == "ok") & (summary["compile"] == "none")
                      & summary["phase"].isin(["forward", "optimizer", "inference"])]
    off = checked.index[0]
    summary.loc[off, "mem_phase_peak_bytes"] *= 1.2
    summary.to_csv(summary_path, index=False)
    text = findings(out)
    assert (f"analytic within 10% of the measured peak less the harness for {len(checked) - 1} of {len(checked)} "
            f"case phases; worst {summary.loc[off, 'label']} {summary.loc[off, 'phase']}: "
            "analytic/measured 1.2") in text
    assert "- memory harness (pooled batches + standing allocations): 100 to 100 MiB per case" in text


def test_findings_name_the_product_that_set_the_ceiling(tmp_path):
    out = tmp_path / "h100"
    shutil.copytree(H100, out)
    assert "- ceiling cuda/bf16: 789.1 TFLOP/s (8192x16384x8192 tn) = 80% of the datasheet's 989.4" in findings(out)


def test_findings_quote_both_do_bench_readings_when_the_timer_check_has_them(tmp_path):
    """The second H100 call's first timer check (results/reference/h100/second-call), in today's field names."""
    import json

    out = tmp_path / "h100"
    shutil.copytree(H100, out)
    case = {"case": "fashion_mnist b64 cuda fp32 eager", "case_id": "8f7b6f5fb226", "engine_median_s": 0.0010361,
            "do_bench_median_s": 0.0010884, "ratio": 0.9519, "block_steps": 19,
            "do_bench_block_median_s": 0.0012090, "ratio_block": 0.857, "seconds": 2.0}
    (out / "timer-check.json").write_text(json.dumps({"cases": [case], "copy": None, "errors": []}))
    assert ("- engine vs do_bench, fashion_mnist b64 cuda fp32 eager: ratio 0.952 (1.036 ms vs 1.088 ms); "
            "19 steps per do_bench call: ratio 0.857") in findings(out)


def test_findings_name_each_mfus_ceiling_and_flag_a_profile_above_it(tmp_path):
    """The audit's figures, recomputed here from the archive's own files: fp16's MFU is against fp16's ceiling
    (and 67.2% of bf16's), and the profile's matmul kernels ran above the same-run bf16 ceiling."""
    import json

    out = tmp_path / "h100"
    shutil.copytree(H100, out)
    text = findings(out)
    meta = json.loads((H100 / "runs" / "gpu" / "meta.json").read_text())
    bf16, fp16 = (meta["ceilings"][f"cuda/{d}"]["measured_tflops"] for d in ("bf16", "fp16"))
    summary = pd.read_csv(H100 / "runs" / "gpu" / "summary.csv")
    large = summary[(summary["width"] == 8192) & (summary["depth"] == 4) & (summary["batch"] == 8192)
                    & (summary["phase"] == "step")].set_index(["dtype", "compile"])
    fp16_tflops = large.loc[("fp16", "none"), "tflops"]
    assert f"MFU 70.9% of the same-run fp16 ceiling ({fp16:.4g}), {fp16_tflops / bf16:.1%} of bf16's" in text
    assert f"{fp16_tflops / bf16:.1%}" == "67.2%"
    # profile.md's device ms of aten::addmm (forward) + aten::mm (backward), and the step's matmul FLOPs
    rate = large.loc[("bf16", "none"), "matmul_flops"] / ((6.680 + 12.351) * 1e-3) / 1e12
    line = next(x for x in text.splitlines() if x.startswith("- profile "))
    shown = float(re.search(r"= ([\d.]+) TFLOP/s", line).group(1))
    assert abs(shown - rate) / rate < 5e-4  # profile.md rounds the device times to the microsecond
    assert "the ceiling under-reads" in line and rate / bf16 > 1.02
    assert "passes: squares 774.5, start 789.1, end 768.1" in text
