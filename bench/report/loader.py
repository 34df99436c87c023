"""Report of an input-pipeline run (``mlpbench loader``): table, regime and figure, from result tables only.

``mlpbench report RUN`` and ``mlpbench show RUN`` send runs whose meta.json says ``kind: loader`` here.
The figure shows, per batch size, end-to-end samples/s (the classic loop: DataLoader, copy, step)
against the step-only samples/s of the same case over num_workers, and the loop's time split per case
(waiting for the batch, copy, step, the rest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..format import missing, ms, number, table
from ..runs import RunKind, write_atomic
from .markdown import PLOTS_DIR, REPORT_MD, Report
from .figure import Figure, markdown_lines, pyplot, save as save_figure
from .regime import Regime
from .tables import platform_name, run_names

FIGURE = "loader"
INPUT_BOUND_SHARE = 0.5  # the loop waits for its batch over half of its wall time
STEP_BOUND = "step-bound"
SHARE_COLORS = {"loader_share": "#C44E52", "copy_share": "#8172B2", "compute_share": "#4C72B0"}
SHARE_NAMES = {"loader_share": "waiting for the batch", "copy_share": "copy to the device",
               "compute_share": "training step"}

RULE = (f"A case is **{Regime.INPUT.value}** when the loop spends over {INPUT_BOUND_SHARE:.0%} of its wall time "
        "waiting for the next batch (`loader_share` = the measured steps' total wait in `next(loader)` over the loop's "
        f"wall time), else **{STEP_BOUND}** (the training step and the copy set the pace; `mlpbench run` and its "
        "regimes say what limits the step itself).")


def is_loader_run(run) -> bool:
    return run.meta.kind is RunKind.LOADER


def regime(loader_share: float) -> str:
    if missing(loader_share):
        return ""
    return Regime.INPUT.value if loader_share > INPUT_BOUND_SHARE else STEP_BOUND


def _phase_median(summary: pd.DataFrame, case_id: str, phase: str) -> float:
    rows = summary[(summary["case_id"] == case_id) & (summary["phase"] == phase)]
    return float(rows["median_s"].iloc[0]) if len(rows) and "median_s" in rows else math.nan


def cases_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per case (its first summary row) with the per-step medians and the regime."""
    frame = summary.drop_duplicates("case_id").copy()
    for phase in ("wait", "copy", "compute", "iteration", "step"):
        frame[f"{phase}_median_s"] = [_phase_median(summary, c, phase) for c in frame["case_id"]]
    frame["regime"] = [regime(v) if s == "ok" else "" for v, s in
                       zip(frame.get("loader_share", pd.Series(math.nan, index=frame.index)), frame["status"])]
    return frame


def table_rows(summary: pd.DataFrame) -> list[dict]:
    rows = []
    for _, r in cases_frame(summary).iterrows():
        ok = r["status"] == "ok"
        ratio = r["epoch_samples_per_s"] / r["step_only_samples_per_s"] if ok else math.nan
        rows.append({
            "case": r["label"], "batch": r["batch"], "workers": r["num_workers"],
            "pin": "on" if str(r["pin_memory"]) == "True" else "off",
            "end to end samples/s": f"{r['epoch_samples_per_s']:,.0f}" if ok else "",
            "step only samples/s": f"{r['step_only_samples_per_s']:,.0f}" if ok else "",
            "end to end / step only": f"{ratio:.2f}" if ok else "",
            "per step ms: wait / copy / step / loop": " / ".join(ms(r[f"{p}_median_s"]) for p in
                                                               ("wait", "copy", "compute", "iteration")) if ok else "",
            "loader share": f"{r['loader_share']:.0%}" if ok else "",
            "first batch ms": ms(r["first_batch_s"]) if ok else "",
            "regime": r["regime"],
            "status": "ok" if ok else f"{r['status']}: {r['reason']}",
        })
    return rows


def format_loader(summary: pd.DataFrame, tablefmt: str = "github") -> str:
    return table(table_rows(summary), tablefmt, empty="(no case)")


def loader_figure(summary: pd.DataFrame, out_dir: Path) -> Figure:
    """Left: samples/s against num_workers per batch (end to end solid, step only dashed). Right: time split."""
    title = "The classic loop end to end against the training step alone"
    frame = cases_frame(summary)
    frame = frame[frame["status"] == "ok"]
    if not len(frame):
        return Figure(FIGURE, title, None, "no case was measured")
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.9 + 0.32 * max(len(frame), 6)),
                                      gridspec_kw={"width_ratios": [1, 1.25]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = frame.groupby(["device", "batch", "pin_memory", "threads", "dtype"], sort=True)
    for i, ((device, batch, pin, threads, dtype), group) in enumerate(groups):
        group = group.sort_values("num_workers")
        color = colors[i % len(colors)]
        name = f"b{batch} {device}" + (" pinned" if str(pin) == "True" else "") + (f" t{threads}" if threads else "")
        left.plot(group["num_workers"], group["epoch_samples_per_s"], marker="o", color=color, label=f"{name} end to end")
        left.plot(group["num_workers"], group["step_only_samples_per_s"], marker="x", linestyle="--", color=color,
                  label=f"{name} step only")
    left.set_xlabel("DataLoader num_workers")
    left.set_ylabel("samples/s")
    left.set_yscale("log")
    left.set_xticks(sorted(frame["num_workers"].unique()))
    left.legend(loc="best")
    labels = [f"b{b} w{w}" + (" pin" if str(p) == "True" else "") + (f" {d}" if frame["device"].nunique() > 1 else "")
              for b, w, p, d in zip(frame["batch"], frame["num_workers"], frame["pin_memory"], frame["device"])]
    y = list(range(len(frame)))
    left_edge = pd.Series(0.0, index=frame.index)
    for column, color in SHARE_COLORS.items():
        right.barh(y, frame[column] * 100, left=left_edge * 100, color=color, label=SHARE_NAMES[column])
        left_edge = left_edge + frame[column]
    right.barh(y, (1 - left_edge).clip(lower=0) * 100, left=left_edge * 100, color="#CCCCCC", label="rest of the loop")
    right.axvline(INPUT_BOUND_SHARE * 100, color="black", linewidth=0.8, linestyle=":")
    right.set_yticks(y, labels)
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel(f"share of the loop's wall time, % (dotted: {Regime.INPUT.value} above)")
    right.legend(loc="lower right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    path = save_figure(fig, out_dir / PLOTS_DIR / f"{FIGURE}.png")
    return Figure(FIGURE, title, path, caption="Left: samples/s of the classic loop (FashionMNIST dataset, DataLoader, "
                  "copy, training step; solid) and of the same step fed resident batches (dashed), per number of "
                  "DataLoader workers. Right: where the loop's wall time goes, per case.")


def write_loader_report(runs: Sequence, out_dir: Path) -> Report:
    """report.md + plots/loader.png for loader runs (one table per run)."""
    out_dir = Path(out_dir)
    names = run_names(runs)
    summary = pd.concat([run.summary for run in runs], ignore_index=True)
    figure = loader_figure(summary, out_dir)
    if figure.path is None:
        (out_dir / PLOTS_DIR / f"{FIGURE}.png").unlink(missing_ok=True)
    parts = [f"# mlpbench input-pipeline report: {', '.join(names)}", ""]
    if figure.path is not None:
        parts += markdown_lines(figure, out_dir)
    else:
        parts += [f"Figure omitted: {figure.reason}.", ""]
    for run, name in zip(runs, names):
        parts += _run_section(run, name)
    parts += ["## Regime", "", RULE, ""]
    path = out_dir / REPORT_MD
    write_atomic(path, "\n".join(parts).rstrip() + "\n")
    return Report(path, [figure])


def _run_section(run, name: str) -> list[str]:
    meta, env = run.meta, run.meta.get("env", {})
    data, loop = meta.get("data", {}), meta.get("loop_config", {})
    devices = sorted(set(run.summary["device"])) if "device" in run.summary else ["cpu"]
    platforms = "; ".join(platform_name(d, env) for d in devices)
    content = ("**The images are random** (mlpbench wrote FashionMNIST's IDX format and shapes with random, "
               "class-patterned content: loader timings are those of the real files, accuracy means nothing)"
               if data.get("random_content") else "The data are the FashionMNIST files under the given root")
    start, end = (number(meta.get(f"load_average_1m_{when}"), ".1f", "?") for when in ("start", "end"))
    lines = [f"## {name}", "",
             f"{platforms}; torch {env.get('torch', '?')}; load average {start} at the start, {end} at the end (above "
             "the core count, workers and step compete with other work).", "",
             f"{content}: `{data.get('root', '?')}`, {data.get('train_examples', '?'):,} training examples, read by "
             "`torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=ToTensor())` through "
             "`DataLoader(batch_size, shuffle=True, num_workers, pin_memory, persistent_workers)`.", "",
             f"Each case: {loop.get('warmup_steps', '?')} loop steps of warm-up, then {loop.get('steps', '?')} measured "
             "steps (end to end = their examples over the loop's wall time; per step: the wait for the batch, the copy, "
             "the training step, the whole iteration; medians). Step only: the same training step fed resident "
             "batches of the dataset's images, timed in blocks as `mlpbench run` times it (median).", "",
             format_loader(run.summary), ""]
    if meta.get("interrupted"):
        lines += ["The run was interrupted; the cases above are those it finished.", ""]
    lines += [f"Command: `{meta.get('command', '?')}`; CPU {env.get('cpu_model', '?')}, {env.get('cpu_count', '?')} cores; "
              f"{env.get('date', '')}.", ""]
    return lines
