#!/usr/bin/env bash
# parallel.sh [RUNS]: what `verify --parallel 4` gains over `--parallel 1` (issue target: at least
# 1.5 times faster against a 4-slot llama-server on the 2-core machine, same report). Verifies the
# honest tiny-llama fixture (8 groups, 4 decoys, 2 x 200 whole-data records) two ways, RUNS times
# each (default 3), alternating:
#
#   url         against one llama-server with 4 slots started beforehand (vtune verify --url): the
#               requests alone, what --parallel changes;
#   checkpoint  from the GGUF file, vtune starting a llama-server with as many slots as --parallel:
#               adds the server's start and the model's load, the same in both.
#
# Prints each wall time and the median ratios, and checks that the JSON reports are identical (but
# for the model's description: its URL, and with --checkpoint its file). Figures go into docs/bench.md.
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
name=bench-parallel-$$
trap 'scripts/llamacpp.sh stop $name >/dev/null 2>&1 || true' EXIT
url=$(LLAMACPP_WATCH_PID=$$ LLAMACPP_ARGS="-np 4" scripts/llamacpp.sh start $dir/honest.gguf $name)
declare -A times
for run in $(seq "$runs"); do
  for mode in url checkpoint; do
    for n in 1 4; do
      if [ $mode = url ]; then src=(--url "$url"); else src=(--checkpoint $dir/honest.gguf); fi
      t0=$(date +%s.%N)
      bin/vtune verify -q --json -k $dir/key.json --backend llamacpp "${src[@]}" \
        --parallel $n >"$work/report-$mode-$n.json" || [ $? -le 1 ]
      t1=$(date +%s.%N)
      t=$(echo "$t1 - $t0" | bc -l)
      times[$mode$n]="${times[$mode$n]:-} $t"
      printf 'run %d  %-10s  --parallel %d  %6.2f s\n' "$run" "$mode" "$n" "$t"
    done
  done
  # Identical but for the description of the model (its URL; with --checkpoint its file, as provenance).
  same=$(python3 -c 'import json,sys
rs = [json.load(open(f)) for f in sys.argv[1:]]
for r in rs: r.pop("model"); r.pop("provenance", None)
print(all(r == rs[0] for r in rs))' "$work"/report-{url,checkpoint}-{1,4}.json)
  [ "$same" = True ] || { echo "reports differ: $work/report-*.json" >&2; exit 1; }
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for mode in url checkpoint; do
  m1=$(echo "${times[${mode}1]}" | median)
  m4=$(echo "${times[${mode}4]}" | median)
  printf 'median %-10s: --parallel 1 %.2f s, --parallel 4 %.2f s, speed-up %.2f\n' "$mode" "$m1" "$m4" "$(echo "$m1 / $m4" | bc -l)"
done
echo "reports identical"
