"""report --html without a browser: the file is self-contained (plotly.js inside, nothing fetched), the figures
hold the cases of summary.csv, a run without plotly still gets report.md with a one-line reason, a run with no ok
case gets a page that says so, and a damaged run is one line and exit 2 with nothing written.
The page in a real browser: tests/browser/test_report_page.py."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pandas as pd
import pytest

from bench.cli import main

pytest.importorskip("plotly", reason="NO PLOTLY: report --html needs the html extra (pip install plotly)")


def _figures(text: str) -> dict[str, dict]:
    """Each figure's JSON as written into the page, by its element id."""
    found = re.findall(r'<div id="(fig-[a-z]+)" class="figure".*?</div>\n<script>\(function\(\) \{ const f = (.*?);'
                       r' Plotly\.newPlot', text, flags=re.S)
    return {name: json.loads(data) for name, data in found}


def test_report_html_is_one_file_that_needs_no_network(cpu_run_dir, tmp_path):
    from bench.report.html import write_html_report
    from bench.runs import load_run

    run = tmp_path / "run"
    shutil.copytree(cpu_run_dir, run)
    text = write_html_report([load_run(run)], run).path.read_text()
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in text  # plotly.js is inside; the rest of the page loads nothing
    rest = text.replace(get_plotlyjs(), "")
    assert "<script src" not in rest and not re.search(r"""(src|href)=["']https?:""", rest)
    summary = pd.read_csv(run / "summary.csv")
    steps = summary[(summary["phase"] == "step") & (summary["status"] == "ok")]
    figures = _figures(text)
    points = [x for trace in figures["fig-throughput"]["data"] for x in trace["x"]]
    assert sorted(points) == sorted(steps["batch"])
    for label in summary.loc[summary["phase"] == "step", "label"]:  # every case is a row of the table
        assert f"<td>{label}</td>" in text


def _no_ok_run(cpu_run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cpu_run_dir, run)
    summary = pd.read_csv(run / "summary.csv")
    summary["status"], summary["reason"] = "oom", "out of memory (test)"
    summary.to_csv(run / "summary.csv", index=False)
    return run, summary


def test_without_plotly_report_md_is_written_and_one_line_says_why(cpu_run_dir, tmp_path, capsys, monkeypatch):
    run, _ = _no_ok_run(cpu_run_dir, tmp_path)  # no figure: report.md is quick to write
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly raises ImportError, as on the GPU machines
    assert main(["report", str(run), "--html"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "report.html" in line]
    assert lines == ["mlpbench: report.html skipped: plotly is not installed (pip install 'mlpbench[html]')"]
    assert (run / "report.md").is_file() and not (run / "report.html").exists()


def test_a_run_without_an_ok_case_gets_a_page_that_says_so(cpu_run_dir, tmp_path, capsys):
    run, summary = _no_ok_run(cpu_run_dir, tmp_path)
    assert main(["report", str(run), "--html"]) == 0
    assert f"mlpbench: report {run / 'report.html'} (" in capsys.readouterr().out
    text = (run / "report.html").read_text()
    assert 'id="no-ok-cases"' in text and "no case was measured ok" in text
    assert "Plotly.newPlot" not in text and text.count("oom: out of memory (test)") == len(summary["case_id"].unique())


def test_a_damaged_run_is_one_line_and_exit_2(cpu_run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cpu_run_dir, run)
    data = (run / "summary.csv").read_bytes()
    (run / "summary.csv").write_bytes(data[: len(data) // 2])  # cut mid-line
    assert main(["report", str(run), "--html"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "summary.csv" in err
    assert not (run / "report.html").exists()


def test_two_runs_get_the_comparison_drawn_with_a_marker_per_shared_case(cpu_run_dir, slowed_pair, tmp_path):
    """report A B --html: the "Runs compared" figure's ratio panel holds B/A of every shared case, as the two
    summary.csv give it (pandas alone), and its table a row per case; one case slowed 3x in B reads slower."""
    from bench.report.html import write_html_report
    from bench.runs import load_run

    a, b, slowed = slowed_pair(cpu_run_dir, tmp_path, 3.0)
    summary = pd.read_csv(b / "summary.csv")
    text = write_html_report([load_run(a), load_run(b)], tmp_path).path.read_text()
    found = re.search(r'<div id="fig-compare-1" class="figure".*?</div>\n<script>\(function\(\) \{ const f = (.*?);'
                      r' Plotly\.newPlot', text, flags=re.S)
    assert found, "no comparison figure"
    traces = json.loads(found.group(1))["data"]
    ratios = sorted(x for t in traces if t.get("xaxis") == "x" and t["mode"] == "markers" for x in t["x"])
    joined = pd.read_csv(a / "summary.csv").merge(summary, on=["case_id", "phase"], suffixes=("_a", "_b"))
    joined = joined[(joined["phase"] == "step") & (joined["status_a"] == "ok") & (joined["status_b"] == "ok")]
    assert ratios == pytest.approx(sorted(joined["median_s_b"] / joined["median_s_a"]), rel=1e-9)
    slower = [x for t in traces if t.get("xaxis") == "x" and t["name"] == "slower" for x in t["x"]]
    assert slower == pytest.approx([3.0])
    table = text[text.index('<table id="compare-1"'):]
    assert table[:table.index("</table>")].count("<tr>") == 2 + len(joined)  # header, filter boxes, a row per case
