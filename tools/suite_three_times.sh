#!/usr/bin/env bash
# Issue 11's proof: the whole suite three times in a row, each on a fresh clone through .ci/run,
# while two busy loops keep both cores busy.
#   bash tools/suite_three_times.sh [REPO] [OUT]
# REPO defaults to this checkout, OUT to /tmp/suite-three-times.out (one line per run, "done" at the end).
set -u
REPO=${1:-$(cd "$(dirname "$0")/.." && pwd)}
OUT=${2:-/tmp/suite-three-times.out}
python3 -c "while True: pass" & B1=$!
python3 -c "while True: pass" & B2=$!
trap 'kill $B1 $B2 2>/dev/null' EXIT
echo "commit $(git -C "$REPO" rev-parse --short HEAD), $(date -u +%FT%TZ)" >> "$OUT"
for i in 1 2 3; do
  dir=/tmp/suite-run$i
  rm -rf "$dir" && git clone -q "$REPO" "$dir"
  start=$(date +%s)
  (cd "$dir" && CI=true bash .ci/run > "$dir.log" 2>&1); rc=$?
  echo "run $i: exit $rc in $(( $(date +%s) - start )) s; $(tail -1 "$dir.log"); load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
done
echo done >> "$OUT"
