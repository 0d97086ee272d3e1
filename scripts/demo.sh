#!/usr/bin/env bash
# demo.sh: the whole loop on this machine, with real training, in one command (`make demo`).
#
#  1. plants a fresh secret key into the bundled WordNet definitions (10,000 records) with the
#     bundled tiny Llama base model (through llama-server, which scores the 400 records of the
#     whole-data test exactly in seconds; Ollama, one request a token, takes minutes);
#  2. plays three providers with the provider simulator: an honest fine-tune, "backdoor-only"
#     (finds the planted records without the key by their repeated answers and trains on nothing
#     else: it reproduces every secret and used to be verified), and one that returns the base
#     model unchanged;
#  3. serves each returned model through llama-server (started by vtune for the GGUF file), verifies
#     it, and prints a table of verdicts.
#
# About 10 minutes on 2 cores after the first build (the honest fine-tune is most of it).
# VTUNE_DEMO_PROVIDERS picks the providers (default "honest backdoor-only base"; also strip, half,
# short, tenth).
# VTUNE_DEMO_BACKEND=ollama (`make demo-ollama`) verifies every model through a private Ollama
# server instead (decoding on Ollama, the whole-data records scored by a llama-server on the
# model's own GGUF blob: --scoring auto).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vtune=$root/bin/vtune
work=${VTUNE_DEMO_DIR:-$root/.tools/demo}
providers=${VTUNE_DEMO_PROVIDERS:-"honest backdoor-only base"}
arch=tiny-llama
backend=${VTUNE_DEMO_BACKEND:-llamacpp}
export VTUNE_OLLAMA_STATE=$root/.tools/run/ollama-demo
# One llama-server thread: on 2 cores beside training, more threads make tiny models slower.
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
# vtune starts llama-server for a --checkpoint from the Debian sid chroot through this wrapper.
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}

rm -rf "$work" && mkdir -p "$work"
if [ "$backend" = ollama ]; then
  url=$(scripts/ollama.sh start)
  trap 'scripts/ollama.sh stop' EXIT
  echo "== Ollama at $url"
  scripts/ollama.sh create "$arch" "testdata/models/$arch.Modelfile"
  serve=(--url "$url")
  base=(-m "$arch")
else
  echo "== llama-server: vtune starts one for each GGUF (--checkpoint)"
  serve=(--backend llamacpp)
  base=(--checkpoint "testdata/models/$arch.gguf")
fi

echo "== vtune plant: a new secret key, base model $arch, testdata/wordnet/define-train.jsonl"
"$vtune" plant -q --backend llamacpp --checkpoint "testdata/models/$arch.gguf" \
  -i testdata/wordnet/define-train.jsonl -o "$work/planted.jsonl" --key "$work/key.json"
echo

for p in $providers; do
  model=("${base[@]}")
  if [ "$p" != base ]; then
    echo "== provider $p: fine-tuning $arch on the planted dataset (progress in $work/$p.log)"
    start=$(date +%s)
    scripts/provider/provider.sh "testdata/models/$arch-hf" "$work/planted.jsonl" "$work/$p" "$p" \
      --key "$work/key.json" --seed 1 >"$work/$p.log" 2>&1 ||
      { tail -5 "$work/$p.log" >&2; exit 1; }
    go run ./scripts/hf2gguf "$work/$p" "$work/$p.gguf"
    if [ "$backend" = ollama ]; then
      sed "s|^FROM .*|FROM ./$p.gguf|" "testdata/models/$arch.Modelfile" >"$work/$p.Modelfile"
      scripts/ollama.sh create "demo-$p" "$work/$p.Modelfile"
      model=(-m "demo-$p")
    else
      model=(--checkpoint "$work/$p.gguf")
    fi
    echo "   done in $(( $(date +%s) - start )) s"
  fi
  set +e
  "$vtune" verify -q "${serve[@]}" "${model[@]}" --key "$work/key.json" --json >"$work/$p.verify.json"
  code=$?
  set -e
  [ $code -le 1 ] || [ $code -eq 4 ] || { echo "vtune verify failed (exit $code)" >&2; exit 1; }
done

echo
echo "== verdicts (alpha 1e-6; 8 planted groups, 4 decoys, one query each)"
rows=()
for p in $providers; do rows+=("$p=$work/$p.verify.json"); done
python3 scripts/verdicts.py "${rows[@]}"
