#!/usr/bin/env bash
# The between-run noise evaluation of issue 41, in one command (see README.md here):
#
#   bash tools/experiments/noise_eval/run.sh [QUIET,LOADED=22,10] [OUT=results/noise-eval/round3]
#
# Round 3's protocol (2026-12-03): collect.py --chain runs QUIET then LOADED separate `mlpbench run --preset
# quick` processes, alternating A (this tree) and B (a copy with a +10% CPU spin in 8 cases), under a competing
# load it starts itself for the LOADED ones; every run makes an A/B pair with the one before it and an A/A pair
# with the one two before it (OUT/runs.jsonl, OUT/pairs.jsonl; a second call continues). confirm_campaign.py
# then measures `compare --confirm`'s interleaved instrument on the same two trees (OUT/confirm.jsonl), and
# analyse.py scores main's verdict logic before issue 41 and this tree's on the same folders (OUT/results.md,
# OUT/results.json). About 55 min for the runs and 20 for the campaign on the 2-core AMD EPYC.
# Rounds 1 and 2 (pairs of 12-case one-thread runs): collect.py --pairs N --out DIR, as README.md says.
# Needs PYTHON (default .venv/bin/python) with torch.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
chain="${1:-22,10}"; out="${2:-$repo/results/noise-eval/round3}"
py="${PYTHON:-$repo/.venv/bin/python}"
mkdir -p "$out"
echo "# $(date -u +%FT%TZ) cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) load: $(cat /proc/loadavg)" \
    >> "$out/log.txt"
(cd "$repo" && "$py" -m tools.experiments.noise_eval.collect --chain "$chain" --out "$out")
(cd "$repo" && "$py" -m tools.experiments.noise_eval.confirm_campaign --dir "$out")
(cd "$repo" && "$py" -m tools.experiments.noise_eval.analyse --dir "$out")
echo "# done $(date -u +%FT%TZ) load: $(cat /proc/loadavg)" >> "$out/log.txt"
