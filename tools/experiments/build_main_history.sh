#!/usr/bin/env bash
# Build a real history of this project's own main: for each of the last N first-parent commits
# (oldest first), export the tree with `git archive` (no worktree, nothing in .git changes), run one
# tiny fixed sweep with that commit's own code, and keep the run folder. Then `mlpbench history add`
# each run (in commit order) with --commit, and `mlpbench history check`.
#
#   bash tools/experiments/build_main_history.sh [N=20] [OUT=/tmp/mlpbench-main-history] [REF=main]
#
# Needs PYTHON (default /work/venv/bin/python, or .venv/bin/python) with torch installed.
set -euo pipefail
n="${1:-20}"; out="${2:-/tmp/mlpbench-main-history}"; ref="${3:-main}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-$( [ -x /work/venv/bin/python ] && echo /work/venv/bin/python || echo "$repo/.venv/bin/python")}"
# the sweep: two uniform MLPs, one thread, fp32 eager (flags every commit in range understands)
sweep=(--width 64,512 --depth 2 --batch 32 --threads 1 --no-progress --no-show)
mkdir -p "$out/runs" "$out/trees"
git -C "$repo" rev-list --first-parent -n "$n" "$ref" | tac > "$out/commits.txt"
echo "# $(date -u +%FT%TZ) cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) load: $(cat /proc/loadavg)" >> "$out/log.txt"
i=0
while read -r sha; do
    i=$((i + 1)); tag="$(printf '%02d' "$i")-${sha:0:7}"
    [ -f "$out/runs/$tag/summary.csv" ] && continue  # resumable: measured runs are kept
    tree="$out/trees/$tag"; rm -rf "$tree"; mkdir -p "$tree"
    git -C "$repo" archive "$sha" | tar -x -C "$tree"
    start=$(date +%s)
    (cd "$tree" && PYTHONPATH=. "$py" -m bench run "${sweep[@]}" --out "$out/runs/$tag") >"$out/runs-$tag.log" 2>&1 \
        || echo "run failed for $sha (see $out/runs-$tag.log)" >> "$out/log.txt"
    echo "$tag $(( $(date +%s) - start )) s load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/log.txt"
    rm -rf "$tree"
done < "$out/commits.txt"
echo "# done $(date -u +%FT%TZ) load: $(cat /proc/loadavg)" >> "$out/log.txt"

# Add the runs in commit order (a tree exported by git archive records no commit: --commit says it),
# then check and plot. The database is rebuilt from the runs each time.
db="$out/history.sqlite"; rm -f "$db"
i=0
while read -r sha; do
    i=$((i + 1)); tag="$(printf '%02d' "$i")-${sha:0:7}"
    [ -f "$out/runs/$tag/summary.csv" ] || continue
    PYTHONPATH="$repo" "$py" -m bench history add "$out/runs/$tag" --commit "$sha" --db "$db" 2>/dev/null
done < "$out/commits.txt"
PYTHONPATH="$repo" "$py" -m bench history check --db "$db" --last 10 --markdown "$out/check.md" 2>/dev/null \
    && echo "history check: exit 0" || echo "history check: exit $?"
PYTHONPATH="$repo" "$py" -m bench history plot --db "$db" --out "$out/plots" 2>/dev/null
