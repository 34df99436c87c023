"""Report of a data-parallel run (``mlpbench ddp``): the scaling figure and table, from result tables only.

``mlpbench report RUN`` sends runs whose meta.json says ``kind: ddp`` here. The figure shows
scaling efficiency against the number of processes (weak and strong; one process is 1 by
definition) and the communication share of the DDP step per case; the table gives step times,
throughput, efficiency and communication share with bootstrap intervals, and each rank's median.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..format import interval, ms, number, pct, table as format_table
from ..runs import RunKind, Status, write_atomic
from .efficiency import scaling_table
from .figure import Figure, markdown_lines, pyplot, save
from .markdown import PLOTS_DIR, REPORT_MD, Report, environment_section
from .tables import platform_name, run_names

FIGURE = "scaling"
SCALING_STYLE = {"weak": ("o", "-"), "strong": ("s", "--")}


def is_ddp_run(run) -> bool:
    return run.meta.kind is RunKind.DDP


def _ranks_text(per_rank: dict) -> str:
    return ", ".join(f"r{r} {ms(s)}" for r, s in sorted(per_rank.items(), key=lambda kv: int(kv[0])))


def table_rows(table: pd.DataFrame) -> list[dict]:
    rows = []
    for _, r in table.iterrows():
        has_ref = "efficiency" in r and not pd.isna(r.get("efficiency"))
        rows.append({
            "case": r["label"], "scaling": r["scaling"], "procs": r["world_size"],
            "batch/rank": r["batch_per_rank"], "global batch": r["global_batch"],
            "bucket MB": f"{r['bucket_cap_mb']:g}", "threads/proc": r["threads"],
            "step ms (all ranks)": ms(r["step_s"]), "per rank ms": _ranks_text(r["rank_step_s"]),
            "samples/s": f"{r['samples_per_s']:,.0f}",
            "1 proc: batch, step ms, samples/s": (f"{r['reference_batch']}, {ms(r['reference_step_s'])}, "
                                               f"{r['reference_samples_per_s']:,.0f}") if has_ref else "-",
            "efficiency [95% CI]": interval(r.get("efficiency"), r.get("efficiency_low"),
                                             r.get("efficiency_high"), lambda v: f"{v:.2f}") if has_ref else "-",
            "comm share [95% CI]": interval(r["comm_share"], r["comm_low"], r["comm_high"], pct),
        })
    return rows


def format_scaling(summary: pd.DataFrame, samples: pd.DataFrame, tablefmt: str = "github") -> str:
    table = scaling_table(summary, samples)
    return format_table(table_rows(table), tablefmt) if len(table) else "(no data-parallel case measured)"


def scaling_figure(table: pd.DataFrame, out_dir: Path) -> Figure:
    """Efficiency vs processes (left) and the communication share of each DDP case (right)."""
    title = "Data-parallel scaling efficiency and communication share"
    if not len(table) or "efficiency" not in table or table["efficiency"].isna().all():
        return Figure(FIGURE, title, None, "no data-parallel case with its one-process reference")
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1, 1.2]})
    default_bucket = table.groupby(["network", "width", "depth", "scaling"])["bucket_cap_mb"].transform("first")
    main = table[(table["bucket_cap_mb"] == default_bucket) & table["efficiency"].notna()]
    for (size, scaling), group in main.groupby([_size(main), "scaling"]):
        marker, line = SCALING_STYLE.get(scaling, ("o", "-"))
        group = group.sort_values("world_size")
        x = [1] + group["world_size"].tolist()
        y = [1.0] + group["efficiency"].tolist()
        err_low = [0.0] + (group["efficiency"] - group["efficiency_low"]).tolist()
        err_high = [0.0] + (group["efficiency_high"] - group["efficiency"]).tolist()
        left.errorbar(x, y, yerr=[err_low, err_high], marker=marker, linestyle=line, capsize=3,
                      label=f"{size}, {scaling} (b{int(group['batch_per_rank'].iloc[0])}/rank)")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.set_xlabel("processes")
    left.set_ylabel("scaling efficiency (1 = ideal)")
    left.set_xticks(sorted({1, *main["world_size"].tolist()}))
    left.set_ylim(bottom=0)
    left.legend(loc="lower left")
    labels = [f"{s} {sc} x{w} {b:g}MB" for s, sc, w, b in zip(_size(table), table["scaling"], table["world_size"],
                                                                 table["bucket_cap_mb"])]
    y = range(len(table))
    right.barh(list(y), table["comm_share"] * 100, color="#DD8452",
               xerr=[(table["comm_share"] - table["comm_low"]) * 100, (table["comm_high"] - table["comm_share"]) * 100],
               capsize=3)
    right.set_yticks(list(y), labels)
    right.invert_yaxis()
    right.axvline(0, color="grey", linewidth=0.8)
    right.set_xlabel("communication share of the step, % ((sync - no_sync) / sync)")
    fig.suptitle(title, fontsize=10)
    path = save(fig, out_dir / PLOTS_DIR / f"{FIGURE}.png")
    return Figure(FIGURE, title, path, caption="Left: efficiency against the same case in one process "
                  "(weak: throughput_N / (N x throughput_1), batch per rank fixed; strong: global batch fixed), "
                  "bars are 95% bootstrap intervals. Right: the share of the DDP step that skipping the gradient "
                  "all-reduce (no_sync) saves.")


def _size(table: pd.DataFrame) -> list[str]:
    return [f"w{int(w)} d{int(d)}" if n == "uniform" else n
            for n, w, d in zip(table["network"], table["width"], table["depth"])]


def write_scaling_report(runs: Sequence, out_dir: Path) -> Report:
    """report.md + plots/scaling.png for ddp runs (one table per run)."""
    out_dir = Path(out_dir)
    names = run_names(runs)
    tables = [scaling_table(run.summary, run.samples) if len(run.samples) else pd.DataFrame() for run in runs]
    figure = scaling_figure(pd.concat(tables, ignore_index=True), out_dir)
    if figure.path is None:
        (out_dir / PLOTS_DIR / f"{FIGURE}.png").unlink(missing_ok=True)  # no stale figure from an earlier render
    parts = [f"# mlpbench data-parallel report: {', '.join(names)}", "", *_figure_lines(figure, out_dir)]
    for run, name, table in zip(runs, names, tables):
        parts += _run_section(run, name, table)
    parts += environment_section(runs, names)
    path = out_dir / REPORT_MD
    write_atomic(path, "\n".join(parts).rstrip() + "\n")
    return Report(path, [figure])


def _figure_lines(figure: Figure, out_dir: Path) -> list[str]:
    if figure.path is None:
        return [f"Scaling figure omitted: {figure.reason}.", ""]
    return markdown_lines(figure, out_dir)


def _run_section(run, name: str, table: pd.DataFrame) -> list[str]:
    ddp, env = run.meta.ddp or {}, run.meta.env
    platform = platform_name("cuda" if ddp.get("backend") == "nccl" else "cpu", env)
    lines = [f"## {name}", "",
             f"{platform}; {ddp.get('nproc_per_node', '?')} processes per node x {ddp.get('nnodes', 1)} node(s), "
             f"backend {ddp.get('backend', '?')}, {ddp.get('threads_per_process', '?')} torch thread(s) per process; "
             f"load average {number(run.meta.load_average_1m_start, '.1f', '?')} at the start, "
             f"{number(run.meta.load_average_1m_end, '.1f', '?')} at the end (above the core count, the ranks "
             "compete with other work and efficiency reads low).", "",
             f"The one-process reference is {ddp.get('reference', 'the same case in one process')}. Step times are "
             "medians of block means; `all ranks` takes each round's slowest rank (the job moves at its pace).", ""]
    lines += [format_table(table_rows(table)) if len(table) else "(no data-parallel case measured)", ""]
    failed = run.summary[run.summary["status"] != Status.OK]
    if len(failed):
        lines += ["### Not measured", "", format_table([{"case": r["label"], "status": r["status"], "reason": r["reason"]}
                                                   for _, r in failed.iterrows()]), ""]
    launch = ddp.get("launch")
    if launch:
        lines.append(f"torchrun: `{launch['command']}`: exit {launch['exit_code']}, {launch['wall_s']:.1f} s"
                     + (f", failed: {launch['failure']}" if launch.get("failure") else ""))
    return lines + [""]
