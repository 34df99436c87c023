"""The figure registry (bench/report/figures/): each figure is defined once and report.md and report.html draw the
same set from it; one colour per series, none shared, and the same colour for a series in the PNG and on the page;
the roofline's roofs in their points' colour; a 95% CI far from its median flagged; the Cases tables lead with
label, step time, samples/s, MFU and status.

References: the figure modules are listed from the folder on disk; the series are counted with pandas from
summary.csv's rows (a hand-written list of the case fields); the colours are read back from the matplotlib artists
and the plotly traces the two media really draw; a CI's factor is computed here from its three numbers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import bench.report.figures as figures_package
from bench import runs as run_record
from bench.report import html
from bench.report.figure import FigureInputs
from bench.report.figures import definitions
from bench.report.markdown import write_report
from bench.report.palette import SERIES_PALETTE, series_colors
from bench.report.regime import classify
from bench.report.tables import merged_ceilings, merged_limits, merged_summary

CASE_FIELDS = ["network", "width", "depth", "in_features", "out_features", "batch", "activation", "device", "dtype",
               "compile", "optimizer", "loss", "threads"]


def _inputs(*run_dirs: Path) -> FigureInputs:
    runs = [run_record.load_run(d) for d in run_dirs]
    summary, _ = merged_summary(runs)
    return FigureInputs(summary, classify(summary), merged_ceilings(runs), merged_limits(runs, "bandwidth"))


def _module(name: str):
    return next(m for m in definitions() if m.NAME == name)


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color).lower()


def _ok_steps(run_dirs) -> pd.DataFrame:
    summary = pd.concat([pd.read_csv(d / "summary.csv") for d in run_dirs], ignore_index=True)
    return summary[(summary["phase"] == "step") & (summary["status"] == "ok")]


# --------------------------------------------------------------------------- one definition, one set


def test_every_module_of_the_figures_folder_is_a_figure_in_both_reports(cpu_run_dir, gpu_run_dir, tmp_path):
    on_disk = sorted(p.stem for p in Path(figures_package.__file__).parent.glob("*.py") if p.stem != "__init__")
    modules = definitions()
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in modules) == on_disk
    assert len({m.ORDER for m in modules}) == len(modules) and len({m.NAME for m in modules}) == len(modules)
    inputs = _inputs(cpu_run_dir, gpu_run_dir)
    report = write_report([run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)], tmp_path)
    page = html.figures(inputs.summary, inputs.regimes, inputs.ceilings, inputs.bandwidths)
    assert [f.name for f in report.figures] == [m.NAME for m in modules]
    assert [f.name for f in page] == [f"fig-{m.NAME}" for m in modules]
    assert [f.path is None for f in report.figures] == [f.figure is None for f in page]  # drawn in one: in both
    assert [f.title for f in report.figures] == [f.title for f in page]
    assert [f.caption for f in report.figures] == [f.caption for f in page]


# --------------------------------------------------------------------------- colours


def test_series_colours_never_repeat_past_the_palette():
    colors = list(series_colors(list(range(3 * len(SERIES_PALETTE)))).values())
    assert len(set(c.lower() for c in colors)) == len(colors)
    assert colors[:len(SERIES_PALETTE)] == list(SERIES_PALETTE)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c.lower()) for c in colors)


def _png_series_colours(fig) -> dict[str, str]:
    """label -> colour of every labelled line / error-bar series matplotlib drew (legend proxies included)."""
    out = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            line = handle.lines[0] if hasattr(handle, "lines") else handle
            if hasattr(line, "get_color"):
                out[label] = _hex(line.get_color())
    return out


def _page_series_colours(figure: dict) -> dict[str, str]:
    out = {}
    for trace in figure["data"]:
        color = trace.get("line", {}).get("color") or trace.get("marker", {}).get("color")
        if trace.get("mode") != "lines":  # a marker trace: its markers and its line agree
            assert trace["marker"]["color"] == color, trace["name"]
        out[trace["name"]] = color.lower()
    return out


def test_throughput_colours_are_distinct_per_series_and_equal_in_png_and_page(cpu_run_dir, gpu_run_dir, tmp_path,
                                                                              many_series_run):
    """The CPU run copied at 1-3 threads: 16 CPU series and 5 GPU ones, more than a 10-colour palette holds."""
    plt = pytest.importorskip("matplotlib.pyplot")
    cpu = many_series_run(cpu_run_dir, tmp_path)
    data = _module("throughput").prepare(_inputs(cpu, gpu_run_dir))
    steps = _ok_steps([cpu, gpu_run_dir])
    expected = steps.groupby(["device"] + [f for f in CASE_FIELDS if f != "batch"]).ngroups  # one platform per device
    assert expected > 10
    png = _png_series_colours(_module("throughput").draw_png(data))
    page = _page_series_colours(_module("throughput").draw_plotly(data))
    plt.close("all")
    assert len(page) == expected and len(set(page.values())) == expected  # every series its own colour
    assert png == page


def test_roofline_roofs_wear_their_points_colour_in_png_and_page(cpu_run_dir, gpu_run_dir):
    plt = pytest.importorskip("matplotlib.pyplot")
    from matplotlib.collections import PathCollection

    module = _module("roofline")
    data = module.prepare(_inputs(cpu_run_dir, gpu_run_dir))
    pairs = _ok_steps([cpu_run_dir, gpu_run_dir]).groupby(["device", "dtype"]).ngroups
    page = {t["name"]: t for t in module.draw_plotly(data)["data"]}
    points = {n: t["marker"]["color"] for n, t in page.items() if not n.startswith("roof: ")}
    roofs = {n.removeprefix("roof: "): t["line"]["color"] for n, t in page.items() if n.startswith("roof: ")}
    assert len(points) == pairs and len(set(points.values())) == pairs
    assert roofs and roofs == {n: points[n] for n in roofs}
    fig = module.draw_png(data)
    ax = fig.axes[0]
    roof_lines = {line.get_label().removeprefix("roof: "): _hex(line.get_color()) for line in ax.get_lines()
                  if line.get_label().startswith("roof: ")}
    scatter = {_hex(c.get_facecolor()[0]) for c in ax.collections
               if isinstance(c, PathCollection) and len(c.get_offsets())}
    plt.close("all")
    assert roof_lines == {n: c.lower() for n, c in roofs.items()}  # the PNG's roofs: the page's colours
    assert scatter == {c.lower() for c in points.values()}  # and its points too


# --------------------------------------------------------------------------- a CI far from its median


def _widened(cpu_run_dir: Path, tmp_path: Path, factor: float) -> tuple[Path, str]:
    run = tmp_path / "wide"
    shutil.copytree(cpu_run_dir, run)
    summary = pd.read_csv(run / "summary.csv")
    steps = summary[(summary["phase"] == "step") & (summary["status"] == "ok")]
    index = steps.index[0]
    summary.loc[index, "ci_high_s"] = summary.loc[index, "median_s"] * factor
    summary.to_csv(run / "summary.csv", index=False)
    return run, summary.loc[index, "label"]


def test_a_ci_far_from_its_median_is_flagged_in_the_figures_and_the_tables(cpu_run_dir, tmp_path):
    run, label = _widened(cpu_run_dir, tmp_path, 400.0)  # far beyond any CI a loaded machine gives: the worst, named
    summary = pd.read_csv(run / "summary.csv")
    steps = summary[(summary["phase"] == "step") & (summary["status"] == "ok")]
    far = steps[[max(h / m, m / lo) >= 2 for m, lo, h in zip(steps["median_s"], steps["ci_low_s"],
                                                               steps["ci_high_s"])]]
    assert label in set(far["label"])
    report = write_report([run_record.load_run(run)], run)
    text = report.path.read_text()
    row = next(line for line in text.splitlines() if line.startswith(f"| {label} "))
    assert "wide CI (to 400.0x the median)" in row
    flagged_rows = [line for line in text.splitlines() if "wide CI (to" in line and line.startswith("| ")]
    assert len(flagged_rows) == len(far)  # every far case, and no other
    throughput = next(f for f in report.figures if f.name == "throughput")
    assert label in throughput.caption and "95% CI reaching beyond 2x" in throughput.caption
    inputs = _inputs(run)
    drawn = _module("throughput").draw_plotly(_module("throughput").prepare(inputs))
    assert sum(label in a["hovertext"] for a in drawn["layout"]["annotations"]) == 1
    assert len(drawn["layout"]["annotations"]) == len(far)
    page, _ = html.render_html([run_record.load_run(run)])
    assert f"<td>{label}</td>" in page
    assert page.count("wide CI (to 400.0x the median)") == 1


# --------------------------------------------------------------------------- the Cases tables


def test_the_cases_tables_lead_with_label_time_throughput_mfu_and_status(cpu_run_dir):
    inputs = _inputs(cpu_run_dir)
    columns, _ = html.case_rows(inputs.summary, inputs.regimes)
    assert columns[:5] == ["case", "median ms", "samples/s", "MFU", "status"]
    from bench.report.markdown import case_table

    header = [c.strip() for c in case_table(inputs.summary, inputs.regimes).splitlines()[0].strip("|").split("|")]
    assert header[:5] == ["case", "step ms (median ± IQR)", "samples/s", "MFU", "status"]
