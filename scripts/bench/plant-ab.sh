#!/usr/bin/env bash
# plant-ab.sh OLD [NEW] [RUNS]: planting's time on the 1 GB file at two commits, for a change's
# effect on it. Builds the verifier test binary at OLD and at NEW (default: the working tree) and
# runs TestPlantLargeFile (the in-process fake model, as plant-large.sh does) with each in turn,
# RUNS times (default 5): alternating, so that the machine's other load falls on both alike. Prints
# each binary's runs sorted by time (elapsed, peak RSS KiB, user and system CPU, then the stages
# the test logs) and their medians. The file is plant-large.sh's (run it once first), or $DATA.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
old=${1:?usage: plant-ab.sh OLD [NEW] [RUNS]}
new=${2:-}
runs=${3:-5}
work=${BENCH_DIR:-$root/.tools/bench}
data=${DATA:-$work/large-1024.jsonl}
[ -s "$data" ] || { echo "plant-ab: no $data: run scripts/bench/plant-large.sh first" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/src-old" 2>/dev/null; git worktree remove --force "$tmp/src-new" 2>/dev/null; rm -rf "$tmp"' EXIT
# build NAME REV: the test binary of REV (the working tree when REV is empty) at $tmp/NAME.test.
build() {
  if [ -z "$2" ]; then
    go test -c -o "$tmp/$1.test" ./verifier
  else
    git worktree add -q --detach "$tmp/src-$1" "$2"
    (cd "$tmp/src-$1" && go test -c -o "$tmp/$1.test" ./verifier)
  fi
}
build old "$old"
build new "$new"

# stageMedians FILE: the median of each stage's time over the runs in FILE, in seconds. A stage
# reads "NAME 1.312s" or "NAME 707ms" (Go's durations), stages separated by ", ".
stageMedians() {
  sed 's/.*stages: //' "$1" | awk -F', ' '
    { for (i = 1; i <= NF; i++) {
        n = split($i, w, " "); v = w[n]; name = $i; sub(/ [^ ]*$/, "", name)
        if (v ~ /ms$/) { sub(/ms$/, "", v); v /= 1000 } else if (v ~ /µs$/) { sub(/µs$/, "", v); v /= 1e6 } else sub(/s$/, "", v)
        if (!(name in seen)) { seen[name] = 1; order[++k] = name }
        vals[name, ++cnt[name]] = v
    } }
    END { for (j = 1; j <= k; j++) {
        name = order[j]; m = cnt[name]
        for (a = 1; a <= m; a++) x[a] = vals[name, a]
        for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
        printf "median %s %.3f s\n", name, x[int((m + 1) / 2)]
    } }'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$runs"); do
  for b in old new; do
    sync
    /usr/bin/time -f '%e %M %U %S' -o "$tmp/time" env TMPDIR="$tmp" VTUNE_LARGE_DATASET="$data" \
      "$tmp/$b.test" -test.run '^TestPlantLargeFile$' -test.v >"$tmp/out" 2>&1 ||
      { echo "plant-ab: $b failed:" >&2; tail -5 "$tmp/out" >&2; exit 1; }
    echo "$(cat "$tmp/time") | $(grep -o 'stages: .*' "$tmp/out")" >>"$tmp/$b.runs"
  done
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
for b in old new; do
  rev=$old
  [ "$b" = new ] && rev=${new:-working tree}
  echo "== $b ($rev): elapsed s, peak RSS KiB, user s, system s | stages"
  sort -g "$tmp/$b.runs"
  printf 'median elapsed %s s\n' "$(sort -g "$tmp/$b.runs" | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')"
  stageMedians "$tmp/$b.runs"
done
