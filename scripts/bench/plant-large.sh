#!/usr/bin/env bash
# plant-large.sh [SIZE_MB]: planting's dataset share on a large file (default 1024 MB), in time
# and peak memory, against `cat`. Builds a chat JSONL of that size from the bundled WordNet
# records (each line made unique), then, in one run, RUNS times in turn (default 3; medians are
# reported):
#   - `cat FILE >/dev/null` (reading from the page cache), `cat FILE > OUT` (a copy) and
#     `cat FILE > OUT && sync OUT` (a copy on disk, as planting's output is before it is renamed
#     into place), and `openssl dgst -sha256 FILE`: the key holds the SHA-256 of the input and of
#     the output, a cost that no `cat` pays;
#   - planting with the in-process fake model (verifier's TestPlantLargeFile under
#     /usr/bin/time), on the file and on its first 1 MB: the difference is the dataset's share,
#     with nothing else running.
# Unless OLLAMA=0, then ORUNS times (default 1), `vtune plant` on the bundled tiny model through a
# private Ollama, on the file and on its first 1 MB, with 32 held-back records and 32 sentinels
# in both, so that the model's work is the same (drawing 12 secrets, scoring 64 records: Ollama
# scores one token a request, and the default 256 + 256 records would take many minutes); the
# difference is again the dataset's share, within the noise of the model calls; and once `vtune
# plant` as it runs by default, ending with the key-free audit of its output, for its peak memory.
# Then, RUNS times, the audit on its own (`vtune audit`) of the file as planted with the in-process
# model.
# Every output is removed, and the disk synced, before the next step, so each write finds the
# memory the last one freed and no write-back of it. The machine's load average is printed before
# and after: the machine is shared, and other jobs slow every figure. The figures go into docs/bench.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mb=${1:-1024}
runs=${RUNS:-3}
oruns=${ORUNS:-1}
work=${BENCH_DIR:-$root/.tools/bench} # BENCH_DIR: somewhere else for the 1 GB file and outputs
mkdir -p "$work/tmp"
data=$work/large-$mb.jsonl
if [ ! -s "$data" ]; then
  echo "building $data ($mb MB)" >&2
  go run ./scripts/bench/gendata testdata/wordnet/define-train.jsonl "$mb" "$data.partial"
  mv "$data.partial" "$data"
fi
small=$work/small.jsonl
head -c 1048576 "$data" | head -n -1 >"$small"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
go build -o bin/vtune ./cmd/vtune
go test -c -o "$work/verifier.test" ./verifier

out=$work/out.jsonl
key=$work/key.json
# timed NAME CMD...: runs CMD under /usr/bin/time and appends "seconds peak-RSS-KB CPU-seconds"
# to $work/NAME. CPU time (user and system) says what the work costs when other jobs share the
# machine and stretch the elapsed time.
timed() {
  local name=$1
  shift
  rm -f "$out" "$key"
  sync # the last step's output, written back to disk now, does not slow this one
  /usr/bin/time -f '%e %M %U %S' -o "$work/last.time" "$@" >"$work/last.out" 2>&1 ||
    { echo "plant-large: $name failed:" >&2; tail -5 "$work/last.out" >&2; exit 1; }
  awk '{print $1, $2, $3 + $4}' "$work/last.time" >>"$work/$name"
}
# median NAME COLUMN: the median of a column of $work/NAME.
median() { awk -v c="$2" '{print $c}' "$work/$1" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# fake FILE and plant FILE: the command lines of the two ways of planting.
fake() { echo env TMPDIR="$work/tmp" VTUNE_LARGE_DATASET="$1" "$work/verifier.test" -test.run '^TestPlantLargeFile$' -test.v; }
plant() { # plant FILE [AUDIT]: AUDIT=true runs the audit, as vtune plant does by default
  echo bin/vtune plant -q --audit="${2:-false}" --held-back 32 --sentinels 32 --url "$url" -m tiny-llama \
    -i "$1" -o "$out" --key "$key" --seed bench
}

ollama=${OLLAMA:-1}
if [ "$ollama" = 1 ]; then
  export VTUNE_OLLAMA_STATE=$root/.tools/run/ollama-bench
  url=$(scripts/ollama.sh start)
  trap 'scripts/ollama.sh stop' EXIT
  scripts/ollama.sh create tiny-llama testdata/models/tiny-llama.Modelfile
fi

names="cat-null cat-copy cat-sync sha256 fake-large fake-small audit"
[ "$ollama" = 1 ] && names="$names plant-large plant-small plant-audit"
for n in $names; do rm -f "$work/$n"; done
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$data" >/dev/null
for r in $(seq "$runs"); do
  timed cat-null sh -c 'cat "$1" >/dev/null' sh "$data"
  timed cat-copy sh -c 'cat "$1" >"$2"' sh "$data" "$out"
  timed cat-sync sh -c 'cat "$1" >"$2" && sync "$2"' sh "$data" "$out"
  # The key holds the SHA-256 of the input and of the output: one of them, on its own.
  timed sha256 openssl dgst -sha256 "$data"
  timed fake-large $(fake "$data")
  stages=$(grep -o 'stages: .*' "$work/last.out")
  records=$(grep -o '[0-9]* records' "$work/last.out" | head -1)
  timed fake-small $(fake "$small")
  echo "run $r of $runs done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done
if [ "$ollama" = 1 ]; then
  $(plant "$small") >/dev/null # untimed: the first requests load the model
  for r in $(seq "$oruns"); do
    timed plant-small $(plant "$small")
    timed plant-large $(plant "$data")
    echo "Ollama run $r of $oruns done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
  timed plant-audit $(plant "$data" true) # the default: planting, then the audit
fi
# The audit on its own, on the file as planted with the in-process model (kept this time).
planted=$work/planted.jsonl
env VTUNE_LARGE_OUTPUT="$planted" $(fake "$data") >/dev/null
for r in $(seq "$runs"); do
  timed audit bin/vtune audit -k "$planted.key" "$planted"
done
rm -f "$planted" "$planted.key"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

cat_null=$(median cat-null 1)
cat_copy=$(median cat-copy 1)
cat_sync=$(median cat-sync 1)
share() { # share LARGE SMALL: the dataset's share, its throughput and its ratios to the two cats
  local s c
  s=$(echo "$(median "$1" 1) - $(median "$2" 1)" | bc -l)
  c=$(echo "$(median "$1" 3) - $(median "$2" 3)" | bc -l)
  printf '%.2f s, %.0f MB/s, %.1fx cat >/dev/null, %.1fx cat > OUT, %.1fx with sync; CPU %.2f s' "$s" \
    "$(echo "$mb / $s" | bc -l)" "$(echo "$s / $cat_null" | bc -l)" "$(echo "$s / $cat_copy" | bc -l)" \
    "$(echo "$s / $cat_sync" | bc -l)" "$c"
}
mib() { echo "$(median "$1" 2) / 1024" | bc; }
printf 'dataset                     %s MB, %s; medians of %s runs\n' "$mb" "$records" "$runs"
printf 'cat FILE >/dev/null         %.2f s, CPU %.2f s\n' "$cat_null" "$(median cat-null 3)"
printf 'cat FILE > OUT              %.2f s, CPU %.2f s\n' "$cat_copy" "$(median cat-copy 3)"
printf 'cat FILE > OUT && sync OUT  %.2f s, CPU %.2f s\n' "$cat_sync" "$(median cat-sync 3)"
printf 'openssl dgst -sha256 FILE   %.2f s, CPU %.2f s (the key hashes input and output)\n' "$(median sha256 1)" "$(median sha256 3)"
printf 'fake model, whole file      %.2f s, peak RSS %s MiB\n' "$(median fake-large 1)" "$(mib fake-large)"
printf '                            (last run %s)\n' "$stages"
printf 'fake model, first 1 MB      %.2f s, peak RSS %s MiB\n' "$(median fake-small 1)" "$(mib fake-small)"
printf 'dataset share (fake model)  %s\n' "$(share fake-large fake-small)"
if [ "$ollama" = 1 ]; then
  printf 'vtune plant, whole file     %.2f s, peak RSS %s MiB (median of %s)\n' "$(median plant-large 1)" "$(mib plant-large)" "$oruns"
  printf 'vtune plant, first 1 MB     %.2f s, peak RSS %s MiB (the model calls)\n' "$(median plant-small 1)" "$(mib plant-small)"
  printf 'dataset share (Ollama)      %s\n' "$(share plant-large plant-small)"
  printf 'vtune plant with the audit  %.2f s, peak RSS %s MiB (the default; one run)\n' "$(median plant-audit 1)" "$(mib plant-audit)"
fi
printf 'vtune audit, planted file   %.2f s, CPU %.2f s, peak RSS %s MiB\n' "$(median audit 1)" "$(median audit 3)" "$(mib audit)"
rm -f "$out" "$key" "$small" "$work/last.out" "$work/last.time"
