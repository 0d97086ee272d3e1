#!/usr/bin/env bash
# plant-large.sh [SIZE_MB]: planting throughput and memory on a large dataset (default 1024 MB).
# Builds a chat JSONL of that size from the bundled WordNet records (each line made unique), then
# times `cat FILE >/dev/null` against `vtune plant` on the bundled tiny model and reports vtune's
# peak RSS. Page cache is warmed first so both read from memory; the figures go into docs/bench.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mb=${1:-1024}
work=$root/.tools/bench
mkdir -p "$work"
data=$work/large-$mb.jsonl
if [ ! -s "$data" ]; then
  echo "building $data ($mb MB)" >&2
  go run ./scripts/bench/gendata testdata/wordnet/define-train.jsonl "$mb" "$data.partial"
  mv "$data.partial" "$data"
fi
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

export VTUNE_OLLAMA_STATE=$root/.tools/run/ollama-bench
url=$(scripts/ollama.sh start)
trap 'scripts/ollama.sh stop' EXIT
scripts/ollama.sh create tiny-llama testdata/models/tiny-llama.Modelfile

cat "$data" >/dev/null
t0=$(date +%s.%N); cat "$data" >/dev/null; t1=$(date +%s.%N)
cat_s=$(echo "$t1 - $t0" | bc -l)
rm -f "$work/out.jsonl" "$work/key.json"
/usr/bin/time -f '%e %M' -o "$work/time.txt" bin/vtune plant -q --url "$url" -m tiny-llama \
  -i "$data" -o "$work/out.jsonl" --key "$work/key.json" --seed bench >"$work/plant.txt"
read -r plant_s rss_kb <"$work/time.txt"
records=$(grep -o 'of [0-9]* records' "$work/plant.txt" | grep -o '[0-9]*')

# The model's share of the time (drawing 12 secrets: hundreds of requests) does not grow with the
# dataset; planting a 1 MB file measures it, and the difference is what the dataset costs.
small=$work/small.jsonl
head -c 1048576 "$data" | head -n -1 >"$small"
rm -f "$work/out.jsonl" "$work/key.json"
/usr/bin/time -f '%e %M' -o "$work/time-small.txt" bin/vtune plant -q --url "$url" -m tiny-llama \
  -i "$small" -o "$work/out.jsonl" --key "$work/key.json" --seed bench >/dev/null
read -r small_s small_kb <"$work/time-small.txt"
data_s=$(echo "$plant_s - $small_s" | bc -l)

printf 'dataset              %s MB, %s records\n' "$mb" "$records"
printf 'cat                  %.2f s\n' "$cat_s"
printf 'vtune plant          %.2f s, peak RSS %.0f MB\n' "$plant_s" "$(echo "$rss_kb / 1024" | bc -l)"
printf 'same on 1 MB         %.2f s, peak RSS %.0f MB (the model calls)\n' "$small_s" "$(echo "$small_kb / 1024" | bc -l)"
printf 'dataset share        %.2f s (%.0f MB/s, %.1fx cat)\n' "$data_s" "$(echo "$mb / $data_s" | bc -l)" "$(echo "$data_s / $cat_s" | bc -l)"
rm -f "$work/out.jsonl" "$small"
