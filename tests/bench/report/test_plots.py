"""Figures: every expected PNG is a real image of non-trivial size; missing dimensions give reasons, not errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import runs as run_record
from bench.report import plots
from bench.report.figure import FigureInputs
from bench.report.figures import definitions
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


def _plotted_points(fig) -> int:
    """Data points a matplotlib Figure really draws: finite marker positions, scatter offsets, bars, image cells.

    Counted from the artists, not the PNG: a figure of NaN medians still has axes, ticks and a
    legend (57 kB of PNG) but no point. Lines without markers (ceilings, guides) are not data.
    """
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.image import AxesImage

    count = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_marker() not in (None, "None", "", " "):
                xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
                count += int(np.isfinite(xy).all(axis=1).sum())
        for collection in ax.collections:
            if isinstance(collection, PathCollection):
                offsets = np.asarray(collection.get_offsets(), dtype=float).reshape(-1, 2)
                count += int(np.isfinite(offsets).all(axis=1).sum())
        for container in ax.containers:
            if isinstance(container, BarContainer):
                count += sum(np.isfinite([p.get_width(), p.get_height(), p.get_x(), p.get_y()]).all()
                             and p.get_width() * p.get_height() != 0 for p in container.patches)
        for image in ax.get_images():
            if isinstance(image, AxesImage):
                count += int(np.isfinite(np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)).sum())
    return count


# Points each figure draws from the shared tiny runs (tests/bench/report/conftest.py): six CPU cases
# (w16/w32 relu at batch 4 and 16, w16 gelu at batch 16, the teaching net at batch 4), their
# synthetic GPU copies (the five uniform ones) and compiled GPU copies (the four relu ones).
EXPECTED_POINTS = {
    "throughput": 4 + 4 + 4,  # w16 and w32 relu at two batches: CPU, GPU eager, GPU compiled
    "phases": 3 * (6 + 5 + 4),  # a bar per training phase of every case
    "gpu_speedup": 4,  # the eager heatmap's cells, w16/w32 x b4/b16 (compiled cases have no CPU twin)
    "compile": 4,  # a bar per compiled/eager pair
    "roofline": 6 + 5 + 4,  # a point per case
    "activations": 3 * 2,  # relu and gelu at w16 b16: a bar per training phase each
}


def test_every_drawn_figure_plots_its_data_points(tmp_path: Path, monkeypatch, cpu_run_dir, gpu_run_dir) -> None:
    """Each figure of the merged report draws at least one finite point per case it is about."""
    import matplotlib.figure

    counted = {}
    save = matplotlib.figure.Figure.savefig

    def counting_savefig(fig, fname, *args, **kwargs):
        counted[Path(fname).stem] = _plotted_points(fig)
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", counting_savefig)
    summary, _ = merged_summary([run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)])
    figures = plots.render_all(summary, tmp_path)
    drawn = {f.name for f in figures if f.path is not None}
    assert drawn == set(EXPECTED_POINTS), {f.name: f.reason for f in figures if f.path is None}
    for name, minimum in EXPECTED_POINTS.items():
        assert counted[name] >= minimum, (name, counted[name], minimum)


def test_figures_come_in_report_order(merged_report) -> None:
    _, figures = merged_report
    assert [f.name for f in figures] == ["throughput", "phases", "gpu_speedup", "compile", "roofline", "activations"]


def _empty_like(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.iloc[0:0]


def _draw(name: str, summary: pd.DataFrame, out_dir: Path):
    """The figure ``name`` of the registry drawn as report.md's PNG from ``summary`` alone."""
    module = next(m for m in definitions() if m.NAME == name)
    return plots.render(module, FigureInputs(summary), out_dir)


@pytest.mark.parametrize("name", list(EXPECTED_POINTS))
def test_each_figure_explains_itself_when_there_is_nothing_to_draw(name, tmp_path: Path, cpu_run_dir) -> None:
    summary, _ = merged_summary([run_record.load_run(cpu_run_dir)])
    figure = _draw(name, _empty_like(summary), tmp_path)
    assert figure.path is None and len(figure.reason) > 20
    assert not list(tmp_path.glob("*.png"))


def test_gpu_figure_without_cpu_rows_says_so(tmp_path: Path, gpu_run_dir) -> None:
    summary, _ = merged_summary([run_record.load_run(gpu_run_dir)])
    figure = _draw("gpu_speedup", summary, tmp_path)
    assert figure.path is None and "this report has: cuda" in figure.reason


def test_one_width_still_draws_the_gpu_heatmap(tmp_path: Path, cpu_run_dir, gpu_run_dir) -> None:
    runs = [run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)]
    summary, _ = merged_summary(runs)
    figure = _draw("gpu_speedup", summary[summary["width"] == 16], tmp_path)
    assert figure.path is not None
    _assert_real_png(figure.path)
