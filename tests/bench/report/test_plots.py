"""Figures: every expected PNG is a real image of non-trivial size; missing dimensions give reasons, not errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench import runs as run_record
from bench.report import plots
from bench.report.tables import merged_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 8_000  # an empty titled axes is ~5 kB at our DPI; a drawn figure is well above
MIN_WIDTH_PX = 600


def _assert_real_png(path: Path) -> None:
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > MIN_PNG_BYTES, (path, len(data))
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert width >= MIN_WIDTH_PX and height >= 200, (path, image.shape)
    assert image[..., :3].std() > 0.05, f"{path} looks blank"


@pytest.mark.parametrize("render", ["cpu_report", "merged_report"], ids=["cpu", "cpu+gpu"])
def test_every_drawn_figure_is_a_valid_png(render, request) -> None:
    _, figures = request.getfixturevalue(render)
    drawn = [f for f in figures if f.path is not None]
    assert len(drawn) >= 4
    for figure in drawn:
        _assert_real_png(figure.path)
        assert figure.caption and figure.title


def test_figures_come_in_report_order(merged_report) -> None:
    _, figures = merged_report
    assert [f.name for f in figures] == ["throughput", "phases", "gpu_speedup", "compile", "roofline", "activations"]


def _empty_like(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.iloc[0:0]


@pytest.mark.parametrize("figure_fn", [plots.throughput, plots.phase_breakdown, plots.gpu_speedup,
                                       plots.compile_speedup, plots.roofline, plots.activations])
def test_each_figure_explains_itself_when_there_is_nothing_to_draw(figure_fn, tmp_path: Path, cpu_run_dir) -> None:
    summary, _ = merged_summary([run_record.load_run(cpu_run_dir)])
    figure = figure_fn(_empty_like(summary), tmp_path)
    assert figure.path is None and len(figure.reason) > 20
    assert not list(tmp_path.glob("*.png"))


def test_gpu_figure_without_cpu_rows_says_so(tmp_path: Path, gpu_run_dir) -> None:
    summary, _ = merged_summary([run_record.load_run(gpu_run_dir)])
    figure = plots.gpu_speedup(summary, tmp_path)
    assert figure.path is None and "this report has: cuda" in figure.reason


def test_one_width_still_draws_the_gpu_heatmap(tmp_path: Path, cpu_run_dir, gpu_run_dir) -> None:
    runs = [run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)]
    summary, _ = merged_summary(runs)
    figure = plots.gpu_speedup(summary[summary["width"] == 16], tmp_path)
    assert figure.path is not None
    _assert_real_png(figure.path)
