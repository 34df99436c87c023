"""Reports: Markdown tables (tabulate) from result tables only; measurement never imports this."""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate


def _ms(seconds: float) -> str:
    return "" if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)) else f"{seconds * 1e3:.3f}"


def format_summary(summary: pd.DataFrame, all_phases: bool = False, tablefmt: str = "github") -> str:
    """The run's summary: one row per case (the whole step), or per case x phase."""
    frame = summary if all_phases else summary[summary["phase"] == "step"]
    rows = []
    for _, r in frame.iterrows():
        ok = r["status"] == "ok"
        rows.append({
            "case": r["label"],
            **({"phase": r["phase"]} if all_phases else {}),
            "median ms": _ms(r.get("median_s")) if ok else "",
            "IQR ms": _ms(r.get("iqr_s")) if ok else "",
            "samples/s": f"{r['samples_per_s']:.4g}" if ok else "",
            "TFLOP/s": f"{r['tflops']:.3g}" if ok else "",
            "MFU": f"{r['mfu']:.1%}" if ok and not pd.isna(r.get("mfu")) else "",
            "status": r["status"] + ("" if ok else f": {r['reason']}") + (" (noisy)" if ok and r.get("noisy") else ""),
        })
    return tabulate(rows, headers="keys", tablefmt=tablefmt, disable_numparse=True)
