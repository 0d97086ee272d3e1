#!/usr/bin/env bash
# parallel.sh [RUNS]: what `verify --parallel 4` against a 4-slot llama-server gains over
# `--parallel 1` against a 1-slot one (issue target: at least 1.5 times faster on the 2-core machine,
# same report). Verifies the honest tiny-llama fixture (8 groups, 4 decoys, 2 x 200 whole-data
# records) from its GGUF file, vtune starting the llama-server with as many slots as --parallel,
# RUNS times each (default 3), alternating; prints each wall time and the median ratio, and checks
# that the JSON reports are identical (but for the server's port). Figures go into docs/bench.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
runs=${1:-3}
work=$root/.tools/bench/parallel
mkdir -p "$work"
make -s build
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}
dir=testdata/fixtures/tiny-llama
declare -A times
for run in $(seq "$runs"); do
  for n in 1 4; do
    t0=$(date +%s.%N)
    bin/vtune verify -q --json -k $dir/key.json --backend llamacpp --checkpoint $dir/honest.gguf \
      --parallel $n >"$work/report-$n.json" || [ $? -le 1 ]
    t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc -l)
    times[$n]="${times[$n]:-} $t"
    printf 'run %d  --parallel %d  %6.2f s\n' "$run" "$n" "$t"
  done
  # Identical but for the port of the llama-server each run started.
  same=$(python3 -c 'import json,sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
for r in (a, b): r["model"].pop("url")
print(a == b)' "$work/report-1.json" "$work/report-4.json")
  [ "$same" = True ] || { echo "reports differ: $work/report-{1,4}.json" >&2; exit 1; }
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m1=$(echo "${times[1]}" | median)
m4=$(echo "${times[4]}" | median)
printf 'median: --parallel 1 %.2f s, --parallel 4 %.2f s, speed-up %.2f; reports identical\n' "$m1" "$m4" "$(echo "$m1 / $m4" | bc -l)"
