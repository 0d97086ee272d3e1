#!/usr/bin/env bash
# check-ollama.sh [MODEL...]: loads testdata/models/MODEL.gguf into a private Ollama server
# (scripts/install-ollama.sh builds it once) and asks WordNet-style questions with greedy decoding
# through /api/chat; prints the answers. MODEL defaults to every testdata/models/*.Modelfile.
# The server gets its own HOME, OLLAMA_MODELS and a free loopback port, and is stopped on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ollama=$(scripts/install-ollama.sh)
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  for f in testdata/models/*.Modelfile; do models+=("$(basename "$f" .Modelfile)"); done
fi

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export HOME=$work OLLAMA_MODELS=$work/models OLLAMA_HOST=127.0.0.1:$port
"$ollama" serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf "http://$OLLAMA_HOST/api/version" >/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.2
done

questions=("Define the word dog." "Define the word collet." "Give a word that means: a large body of water")
for m in "${models[@]}"; do
  (cd testdata/models && "$ollama" create "$m" -f "$m.Modelfile" >/dev/null 2>"$work/create.log") ||
    { cat "$work/create.log" >&2; exit 1; }
  for q in "${questions[@]}"; do
    body=$(python3 -c 'import json,sys; print(json.dumps({"model": sys.argv[1], "stream": False,
      "messages": [{"role": "user", "content": sys.argv[2]}], "keep_alive": -1,
      "options": {"temperature": 0, "top_k": 1, "repeat_penalty": 1, "seed": 1, "num_predict": 64}}))' "$m" "$q")
    ans=$(curl -sf "http://$OLLAMA_HOST/api/chat" -d "$body" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["message"]["content"])')
    printf '%s | %s -> %s\n' "$m" "$q" "$ans"
  done
done
