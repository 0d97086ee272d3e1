#!/usr/bin/env bash
# demo.sh: the whole loop on the bundled tiny model, on a private Ollama server.
# Plants a fresh key into the bundled WordNet dataset, then verifies the base model (which never
# saw the secrets: not verified) and, where the fine-tune fixtures exist, an honest fine-tune and
# cheating providers, and prints the verdicts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
vtune=$root/bin/vtune
work=${VTUNE_DEMO_DIR:-$root/.tools/demo}
export VTUNE_OLLAMA_STATE=$root/.tools/run/ollama-demo

rm -rf "$work" && mkdir -p "$work"
url=$(scripts/ollama.sh start)
trap 'scripts/ollama.sh stop' EXIT
echo "== Ollama at $url"
scripts/ollama.sh create tiny-llama testdata/models/tiny-llama.Modelfile

echo "== vtune plant (base model tiny-llama, WordNet definitions)"
"$vtune" plant --url "$url" -m tiny-llama -i testdata/wordnet/define-train.jsonl \
  -o "$work/define-train.vtune.jsonl" --key "$work/key.json"
echo
echo "== vtune inspect"
"$vtune" inspect --key "$work/key.json"
echo
echo "== vtune verify: the provider returned the base model unchanged"
set +e
"$vtune" verify --url "$url" -m tiny-llama --key "$work/key.json"
code=$?
set -e
echo "(exit code $code: 0 verified, 1 not verified)"
