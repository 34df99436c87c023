"""Time `mlpbench history publish` on a history of 500 commits x 50 series (synthetic values, a real SQLite
database written through HistoryDB.add, as `history add` writes it).

    PYTHONPATH=. python tools/experiments/time_publish.py [--commits 500] [--cases 10] [--out /tmp/publish-500x50]

10 cases x 5 phases = 50 median_s series; each a noisy level (2% noise) with a +15% step in a fifth of them.
Prints the time of each part (read the database, detector + rendering, writing) for three publishes: into an
empty folder, again with nothing changed, and after one more commit of one case (5 series).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.history.ingest import IngestedRun, Point
from bench.history.publish import render_site, run_paths, write_site
from bench.history.series import machine_class
from bench.history.store import HistoryDB, shown_url

PHASES = ("step", "forward", "backward", "optimizer", "inference")


def build(db_path: Path, commits: int, cases: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    machine = machine_class({"cpu_model": "synthetic", "cpu_count": 2, "torch": "2.14.1"}, "cpu")
    levels = rng.uniform(1e-4, 1e-2, size=(cases, len(PHASES)))
    steps = rng.integers(commits // 4, commits, size=(cases, len(PHASES)))
    stepped = rng.random((cases, len(PHASES))) < 0.2
    with HistoryDB(db_path, create=True) as db:
        for i in range(commits):
            points = []
            for c in range(cases):
                for p, phase in enumerate(PHASES):
                    level = levels[c, p] * (1.15 if stepped[c, p] and i >= steps[c, p] else 1.0)
                    v = level * (1 + 0.02 * rng.standard_normal())
                    points.append(Point(f"case{c:02d}", f"w{64 * (c + 1)} d2 b32 cpu fp32 eager", machine, phase,
                                        "median_s", v, v * 0.98, v * 1.02, 12))
            db.add(IngestedRun(f"{i:05d}" + "ab" * 16 + "cdef"[: 40 - 37], None, f"/runs/{i:05d}", f"d{i}", None,
                               "{}", tuple(points)))


def publish_timed(db_path: Path, out: Path, last: int = 10) -> dict:
    t0 = time.perf_counter()
    with HistoryDB(str(db_path), create=False) as db:
        series, paths, source = db.series(), run_paths(db), shown_url(db.url)
    t1 = time.perf_counter()
    pages = render_site(series, paths, last, source)
    t2 = time.perf_counter()
    written, removed, sizes = write_site(pages, out)
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "detect_render_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0,
            "pages": len(pages), "written": written, "series": len(series), "sizes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/publish-500x50"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    db = args.out / "history.sqlite"
    print(f"cpu: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}; "
          f"load {os.getloadavg()}")
    t = time.perf_counter()
    build(db, args.commits, args.cases)
    print(f"built {args.commits} commits x {args.cases * len(PHASES)} series in {time.perf_counter() - t:.1f} s")
    site = args.out / "site"
    for name in ("empty folder", "nothing changed"):
        r = publish_timed(db, site)
        print(f"{name}: {r['total_s']:.2f} s (read {r['read_s']:.2f}, detector + render {r['detect_render_s']:.2f}, "
              f"write {r['write_s']:.2f}); {r['series']} series, {r['pages']} pages, {r['written']} files written")
    sizes = r["sizes"]
    series_sizes = [v for k, v in sizes.items() if k.startswith("series/")]
    print(f"sizes: index.html {sizes['index.html'] / 1e3:.0f} kB, series pages {min(series_sizes) / 1e3:.0f}-"
          f"{max(series_sizes) / 1e3:.0f} kB, plotly.min.js {sizes['plotly.min.js'] / 1e6:.1f} MB")
    machine = machine_class({"cpu_model": "synthetic", "cpu_count": 2, "torch": "2.14.1"}, "cpu")
    with HistoryDB(db, create=False) as h:  # one more commit of one case: its 5 series change
        h.add(IngestedRun("f" * 40, None, "/runs/new", "dnew", None, "{}",
                          tuple(Point("case00", "w64 d2 b32 cpu fp32 eager", machine, p, "median_s", 1e-3, 9.8e-4,
                                      1.02e-3, 12) for p in PHASES)))
    r = publish_timed(db, site)
    print(f"one more commit of one case: {r['total_s']:.2f} s (detector + render {r['detect_render_s']:.2f}); "
          f"{r['written']} files written of {r['pages']} pages")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
