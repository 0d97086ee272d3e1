#!/usr/bin/env bash
# wholedata.sh: what the whole-data test adds to `vtune verify` (issue target: at most 60 s for
# 2 x 256 records on the bundled tiny models through llama.cpp on 2 cores, at most twice that through
# Ollama). Plants the WordNet definitions twice with the bundled tiny Llama through llama-server:
# once with 256 held-back records and 256 sentinels, once with the test off (1 and 1, below the
# minimum), then times `vtune verify --llr=false` of the honest fixture and of the base model with
# each key, through llama-server (--checkpoint) and through a private Ollama server, whose records
# are scored by a llama-server on the model's GGUF blob (--scoring llama-server) or by Ollama
# itself (--scoring server). The difference between the two keys' times is the test's cost. Also reports the key's size. Figures go into
# docs/bench.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
work=$root/.tools/bench/wholedata
mkdir -p "$work"
make -s build
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
# vtune starts llama-server for a --checkpoint from the Debian sid chroot through this wrapper.
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}
export VTUNE_OLLAMA_STATE=$root/.tools/run/ollama-bench-wd
url=$(scripts/ollama.sh start)
trap 'scripts/ollama.sh stop' EXIT
scripts/ollama.sh create tiny-llama testdata/models/tiny-llama.Modelfile >/dev/null
scripts/ollama.sh create bench-honest testdata/fixtures/tiny-llama/honest.Modelfile >/dev/null

for k in on off; do
  n=256
  [ $k = on ] || n=1
  [ -s "$work/key-$k.json" ] || bin/vtune plant -q --backend llamacpp --checkpoint testdata/models/tiny-llama.gguf \
    -i testdata/wordnet/define-train.jsonl -o "$work/planted-$k.jsonl" --key "$work/key-$k.json" \
    --seed bench --held-back $n --sentinels $n --audit=false --force >/dev/null
done
echo "key size with 2 x 256 records: $(stat -c %s "$work/key-on.json") bytes"

timed() { # label, then the verify arguments: prints the wall time in seconds
  local t0 t1
  t0=$(date +%s.%N)
  bin/vtune verify -q --llr=false "$@" >/dev/null || [ $? -le 1 ]
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

printf '%-22s %-7s %12s %12s %10s\n' server/scoring model "test on s" "test off s" "added s"
for model in honest base; do
  gguf=testdata/fixtures/tiny-llama/honest.gguf name=bench-honest
  [ $model = base ] && gguf=testdata/models/tiny-llama.gguf name=tiny-llama
  on=$(timed -k "$work/key-on.json" --backend llamacpp --checkpoint "$gguf")
  off=$(timed -k "$work/key-off.json" --backend llamacpp --checkpoint "$gguf")
  printf '%-22s %-7s %12.1f %12.1f %10.1f\n' llama.cpp $model "$on" "$off" "$(echo "$on - $off" | bc -l)"
  # Ollama scoring by itself takes minutes (one request a token); WHOLEDATA_OLLAMA_SERVER=1 adds it.
  scorings=llama-server
  [ "${WHOLEDATA_OLLAMA_SERVER:-}" != 1 ] || scorings="llama-server server"
  for scoring in $scorings; do
    on=$(timed -k "$work/key-on.json" --url "$url" -m $name --scoring $scoring)
    off=$(timed -k "$work/key-off.json" --url "$url" -m $name --scoring $scoring)
    printf '%-22s %-7s %12.1f %12.1f %10.1f\n' "Ollama/$scoring" $model "$on" "$off" "$(echo "$on - $off" | bc -l)"
  done
done
