"""The history as Markdown (a CI job summary) and as trend plots; takes check results, measures nothing.

Imports no measuring code (a test checks): only ``detect``'s result types and matplotlib.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .detect import MIN_POINTS_EACH_SIDE, STEP_ALPHA, VERDICT_TOO_SHORT, ChangePoint, SeriesCheck

SHA_CHARS = 8
MAX_OLDER_ROWS = 20  # older change points listed in the summary; the rest are counted
TIME_SUFFIX = "_s"
PLOT_METRIC = "median_s"  # every case's trend; other metrics are plotted where they changed
MAX_TICKS = 20


def format_value(metric: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if metric.endswith(TIME_SUFFIX):
        scale, unit = _time_unit(value)
        return f"{value / scale:.3g} {unit}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


EXACT = "exact"  # beside an exact counter's change only: never beside a measured metric's interval or noise


def interval_text(metric: str, cp: ChangePoint) -> str:
    """The step's 95% interval: "exact" for an exact counter; none where a segment has one point."""
    if cp.exact:
        return EXACT
    if not (math.isfinite(cp.ci_low) and math.isfinite(cp.ci_high)):
        return "no interval (one commit on a side)"
    return f"[{format_value(metric, cp.ci_low)}, {format_value(metric, cp.ci_high)}]"


def noise_text(cp: ChangePoint) -> str:
    """The step in units of the series' noise: "exact" for an exact counter; a measured zero noise says so."""
    if cp.exact:
        return EXACT
    return "no noise seen" if cp.noise == 0 else f"{cp.step_over_noise:.1f}x"


def verdict_text(check: SeriesCheck, cp: ChangePoint) -> str:
    """``significant`` (``recent`` in the last N commits), ``not significant`` or ``not enough history``."""
    return "recent" if cp in check.flagged else cp.verdict


def _step_text(metric: str, cp: ChangePoint) -> str:
    rel = f"{cp.step_rel:+.2%}" if math.isfinite(cp.step_rel) else "n/a"
    return f"{rel} ({format_value(metric, cp.step)} {interval_text(metric, cp)})"


def _row(check: SeriesCheck, cp: ChangePoint) -> str:
    s, metric = check.series, check.series.key.metric
    return (f"| `{s.commits[cp.index][:SHA_CHARS]}` | {s.label} | {s.key.phase} | {metric} | "
            f"{format_value(metric, cp.before)} → {format_value(metric, cp.after)} | {_step_text(metric, cp)} | "
            f"{noise_text(cp)} |")


HEADER = ["| commit | case | phase | metric | median before → after | step (95% CI) | step / noise |",
          "|---|---|---|---|---:|---:|---:|"]


def not_enough_history(short: Sequence[SeriesCheck], checks: Sequence[SeriesCheck]) -> str:
    fewest = min(len(c.series.values) for c in short)
    return (f"{VERDICT_TOO_SHORT}: {len(short)} of {len(checks)} series (the measured ones) have too few commits "
            f"to judge (fewest {fewest}; a change needs {MIN_POINTS_EACH_SIDE} on each side, "
            f"{2 * MIN_POINTS_EACH_SIDE} in all); exact counters checked: PASS")


def markdown_summary(checks: Sequence[SeriesCheck], last: int, source: str) -> str:
    """What ``history check`` found, for a terminal or ``$GITHUB_STEP_SUMMARY``."""
    flagged = [(c, cp) for c in checks for cp in c.flagged]
    commits = {sha for c in checks for sha in c.series.commits}
    machines = {c.series.key.machine_id: c.series.machine for c in checks}
    short = [c for c in checks if not c.enough_history]
    pending = [(c, cp) for c in checks for cp in c.pending]
    head = (f"{len(flagged)} change(s) in the last {last} commits: FAIL" if flagged
            else not_enough_history(short, checks) if short
            else f"no change in the last {last} commits: PASS")
    lines = [f"## mlpbench history: {head}", "",
             f"_{source} · {len(checks)} series · {len(commits)} commits · {len(machines)} machine class(es) · "
             "PELT (ruptures) on each series, penalty scaled by its own noise; a change counts when the 95% "
             "bootstrap interval of its step excludes 0, a Mann-Whitney test of the two segments gives "
             f"p < {STEP_ALPHA:g}, the step exceeds twice one point's between-run noise, and each segment holds "
             f"at least {MIN_POINTS_EACH_SIDE} commits (docs/history.md)_", ""]
    if pending:
        lines += [f"### Pending ({len(pending)}, {VERDICT_TOO_SHORT}: too few commits on a side for a verdict; "
                  f"they fail once {MIN_POINTS_EACH_SIDE} a side confirm them)", "", *HEADER,
                  *(_row(c, cp) for c, cp in pending), ""]
    if flagged:
        lines += ["### Changes", "", *HEADER, *(_row(c, cp) for c, cp in flagged), ""]
        by_commit: dict[str, set[str]] = defaultdict(set)
        for c, cp in flagged:
            by_commit[c.series.commits[cp.index]].add(c.series.label)
        lines += [f"- `{sha[:SHA_CHARS]}`: {len(labels)} case(s): {', '.join(sorted(labels))}"
                  for sha, labels in by_commit.items()] + [""]
    # significant and older than the last N commits (flagged: the recent significant ones; pending: no verdict)
    older = [(c, cp) for c in checks for cp in c.change_points
             if cp.significant and cp.index < len(c.series.values) - last]
    if older:
        lines += [f"### Earlier change points ({len(older)}, before the last {last} commits)", "", *HEADER,
                  *(_row(c, cp) for c, cp in older[:MAX_OLDER_ROWS])]
        if len(older) > MAX_OLDER_ROWS:
            lines.append(f"\n_... and {len(older) - MAX_OLDER_ROWS} more_")
        lines.append("")
    lines += ["### Machine classes (a series never mixes two)", ""]
    lines += [f"- {text} (class `{mid}`)" for mid, text in sorted(machines.items())]
    return "\n".join(lines).rstrip() + "\n"


def plot_cases(checks: Sequence[SeriesCheck], out_dir: Path) -> list[Path]:
    """One PNG per case and machine class: the time per phase over commits, CI band, change points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple[str, str], list[SeriesCheck]] = defaultdict(list)
    for c in checks:
        if c.series.key.metric == PLOT_METRIC or c.change_points:
            groups[(c.series.key.case_id, c.series.key.machine_id)].append(c)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (case_id, machine_id), group in sorted(groups.items()):
        group.sort(key=lambda c: (c.series.key.metric != PLOT_METRIC, c.series.key.metric, c.series.key.phase))
        fig, axes = plt.subplots(len(group), 1, figsize=(9, 1.9 * len(group) + 0.9), sharex=False, squeeze=False)
        for ax, check in zip(axes[:, 0], group):
            _plot_series(ax, check)
        fig.suptitle(f"{group[0].series.label}  ·  {group[0].series.machine}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{case_id}-{machine_id}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _plot_series(ax, check: SeriesCheck) -> None:
    s = check.series
    x = list(range(len(s.values)))
    scale, unit = _axis_scale(s.key.metric, s.values)
    ax.plot(x, [v / scale for v in s.values], "o-", ms=3, lw=1, color="tab:blue")
    band = [(i, lo / scale, hi / scale) for i, lo, hi in zip(x, s.ci_low, s.ci_high) if lo is not None and hi is not None]
    if band:
        xs, lows, highs = zip(*band)
        ax.fill_between(xs, lows, highs, color="tab:blue", alpha=0.2, lw=0, label="95% CI of the run's median")
    for cp in check.change_points:
        color = "tab:red" if cp in check.flagged else ("tab:orange" if cp.significant else "0.6")
        ax.axvline(cp.index - 0.5, color=color, ls="--", lw=1.2)
        ax.annotate(f"{cp.step_rel:+.1%}", (cp.index - 0.5, 1.0), xycoords=("data", "axes fraction"),
                    va="top", ha="left", fontsize=7, color=color)
    ax.set_ylabel(f"{s.key.phase}\n{s.key.metric.removesuffix(TIME_SUFFIX) if unit else s.key.metric}"
                  + (f" ({unit})" if unit else ""), fontsize=7)
    every = max(1, math.ceil(len(x) / MAX_TICKS))
    ax.set_xticks(x[::every], [c[:7] for c in s.commits[::every]], rotation=60, fontsize=6)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)


def _axis_scale(metric: str, values: Sequence[float]) -> tuple[float, str]:
    if not metric.endswith(TIME_SUFFIX):
        return 1.0, ""
    return _time_unit(max(abs(v) for v in values) if values else 1.0)


def _time_unit(seconds: float) -> tuple[float, str]:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return scale, unit
    return 1e-9, "ns"


def plots_markdown(paths: Sequence[Path], out_dir: Path) -> str:
    return "\n".join(f"![{p.stem}]({p.relative_to(out_dir)})" for p in paths) + "\n"
