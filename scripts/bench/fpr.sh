#!/usr/bin/env bash
# fpr.sh [ARCH]: false positives of both tests on real models (default tiny-llama), through
# scripts/bench/fpr (read its comment for the design; docs/results.md explains it).
#
#  1. secrets: FPR_KEYS fresh keys (default 1000) of the default shape (8 groups, 4 decoys), planted
#     with the base model in the first 600 WordNet records through one llama-server kept running,
#     each verified against the base model and the six fixture fine-tunes (honest, strip, half,
#     short, tenth, backdoor-only), none of which saw these keys: every hit is a false positive.
#     Keys and each key's results are cached in .tools/bench/exp-fpr/ARCH/keys (results under a
#     name made of the models' SHA-256s), so a second run does only what the first left.
#     FPR_WORKERS (default 4) keys are planted and verified at once, every server running as many
#     slots. FPR_BUDGET (default 15m) stops starting new keys after that long: a key costs about
#     0.7 s in all with 4 workers on the 2-core machine (1.0 s with one), so 1,000 keys take about
#     12 minutes cold; the table says how many keys it holds.
#  2. wholedata: a pool of 1,200 records the fixture providers received and the 1,200 no model
#     here trained on (WordNet's held-out split and the fixture key's held-back records), scored
#     once under each model (cached like the results), then FPR_SPLITS (default 10000) whole-data
#     splits re-drawn in-process.
# FPR_PARTS (default "secrets wholedata") picks the experiments.
#
# One llama-server (one thread) per model, stopped at the end. Tables go to OUT (default
# .tools/bench/exp-fpr/ARCH): secrets.md, secrets.csv, wholedata.md, wholedata.csv.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
arch=${1:-tiny-llama}
work=.tools/bench/exp-fpr/$arch
out=${OUT:-$work}
mkdir -p "$work/keys" "$out"
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
go build -o "$work/fpr.$$" ./scripts/bench/fpr && mv "$work/fpr.$$" "$work/fpr"
fixtures=testdata/fixtures/$arch
planted=.tools/fixtures/$arch/planted.jsonl
if [ ! -s "$planted" ]; then # the fixture's planted dataset is not committed: the same seed gives it back
  make -s build
  mkdir -p "$(dirname "$planted")"
  VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh} \
    bin/vtune plant -q --backend llamacpp --checkpoint testdata/models/$arch.gguf -i testdata/wordnet/define-train.jsonl \
    -o "$planted" --key "$work/fixture-key.json" --seed "fixture-$arch" --force --audit=false >/dev/null
  cmp -s <(jq -c .groups "$work/fixture-key.json") <(jq -c .groups $fixtures/key.json) ||
    { echo "fpr.sh: re-planting the fixture gave other secrets" >&2; exit 1; }
fi
# Rewritten only when it differs: a run planting from it meanwhile would stop ("dataset changed").
head -600 testdata/wordnet/define-train.jsonl >"$work/small.jsonl.$$"
if cmp -s "$work/small.jsonl.$$" "$work/small.jsonl"; then rm "$work/small.jsonl.$$"; else mv "$work/small.jsonl.$$" "$work/small.jsonl"; fi
# Cached results are valid for these models and data only.
sums=$(sha256sum testdata/models/$arch.gguf $fixtures/*.gguf $fixtures/key.json "$work/small.jsonl" | sha256sum | cut -c1-12)
parts=${FPR_PARTS:-"secrets wholedata"}
workers=${FPR_WORKERS:-4}

names=()
stop() { for n in "${names[@]}"; do scripts/llamacpp.sh stop "$n" >/dev/null 2>&1 || true; done; }
trap stop EXIT
# start LABEL MODEL.gguf: starts the server and appends LABEL=URL to urls. It runs in this shell,
# not in a $(...) subshell, so that names keeps the server for stop.
urls=()
start() {
  local n=bench-fpr-$arch-$1-$$ # the pid: two runs never share (and stop) each other's servers
  names+=("$n")
  urls+=("$1=$(LLAMACPP_WATCH_PID=$$ LLAMACPP_ARGS="-np $workers" scripts/llamacpp.sh start "$2" "$n")")
}
start base testdata/models/$arch.gguf
base=${urls[0]}
models=()
for b in honest strip half short tenth backdoor-only; do
  start $b $fixtures/$b.gguf
  models+=(-model "${urls[-1]}")
done

if [[ " $parts " == *" secrets "* ]]; then
echo "== fpr $arch: secrets, ${FPR_KEYS:-1000} keys, budget ${FPR_BUDGET:-15m}" >&2
t0=$(date +%s)
"$work/fpr" secrets -base "${base#base=}" "${models[@]}" -data "$work/small.jsonl" -keys "$work/keys" \
  -results "$work/keys/results-$sums" -n "${FPR_KEYS:-1000}" -workers "$workers" -budget "${FPR_BUDGET:-15m}" -tag "$arch" \
  -csv "$out/secrets.csv" -md "$out/secrets.md"
echo "   $(($(date +%s) - t0)) s" >&2
fi
[[ " $parts " == *" wholedata "* ]] || exit 0
echo "== fpr $arch: whole-data splits" >&2
t0=$(date +%s)
wd=()
for m in honest half short tenth backdoor-only; do wd+=(-model "$(grep -o "$m=[^ ]*" <<<"${models[*]}" | head -1)"); done
"$work/fpr" wholedata -base "${base#base=}" -model "base=${base#base=}" "${wd[@]}" -sent "$planted" \
  -unseen testdata/wordnet/define-heldout.jsonl -key $fixtures/key.json -splits "${FPR_SPLITS:-10000}" -cache "$work/scores-$sums" \
  -csv "$out/wholedata.csv" -md "$out/wholedata.md"
echo "   $(($(date +%s) - t0)) s" >&2
echo "false-positive tables in $out" >&2
