#!/usr/bin/env bash
# The between-run noise evaluation of issue 41, in one command (see README.md here):
#
#   bash results/noise-eval/run.sh [PAIRS=40] [OUT=results/noise-eval]
#
# collect.py measures PAIRS pairs of separate runs (A/A and A/B with a +10% slowdown injected in a copy;
# quiet, under a competing load it starts itself, and mixed), appending each finished pair to OUT/pairs.jsonl
# (a second call continues); analyse.py then scores main's verdict logic and this tree's on the same
# folders, runs --confirm's interleaved re-measurement on one A/A and one A/B pair, and writes
# OUT/results.md and OUT/results.json. Needs PYTHON (default .venv/bin/python) with torch.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
pairs="${1:-40}"; out="${2:-$repo/results/noise-eval}"
py="${PYTHON:-$repo/.venv/bin/python}"
echo "# $(date -u +%FT%TZ) cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) load: $(cat /proc/loadavg)" \
    >> "$out/log.txt"
"$py" "$repo/results/noise-eval/collect.py" --pairs "$pairs" --out "$out"
"$py" "$repo/results/noise-eval/analyse.py" --dir "$out" --confirm
echo "# done $(date -u +%FT%TZ) load: $(cat /proc/loadavg)" >> "$out/log.txt"
