#!/usr/bin/env bash
# build-models.sh [--force] [MODEL...]: rebuilds the WordNet datasets and the tiny test models.
#   MODEL: tiny-llama, tiny-qwen2 (default: both)
#
# Outputs (committed):
#   testdata/wordnet/{define,word}-{train,heldout}.jsonl   chat JSONL from WordNet 3.0
#   testdata/models/tokenizer/                             byte-level BPE shared by both models
#   testdata/models/MODEL-hf/                              Hugging Face folder (F16 safetensors)
#   testdata/models/MODEL.gguf, MODEL.Modelfile            F32 GGUF for Ollama / llama.cpp
# Cache (not committed): .tools/train/ (pretraining corpus).
#
# Idempotent and fast when nothing changed: every output records a stamp (SHA-256 of the scripts
# and settings that made it); a stage runs only when its stamp differs or its output is missing,
# so a fresh checkout with the committed outputs only re-checks stamps (and re-makes a missing
# GGUF with the Go converter, well under a second). Pretraining a model takes about 10 minutes on
# 2 cores. Bump RECIPE when a change to scripts/train/common.py should retrain the models.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
RECIPE=1
force=0
models=()
for a in "$@"; do
  case $a in
    --force) force=1 ;;
    tiny-llama | tiny-qwen2) models+=("$a") ;;
    *) echo "usage: build-models.sh [--force] [tiny-llama] [tiny-qwen2]" >&2; exit 2 ;;
  esac
done
[ ${#models[@]} -gt 0 ] || models=(tiny-llama tiny-qwen2)

# Pretraining settings per model (arguments to pretrain.py).
declare -A ARGS=(
  [tiny-llama]="--arch llama --hidden 128 --layers 3 --heads 4 --kv-heads 2 --ffn 384 --steps 3000 --batch 32 --lr 3e-3 --seed 1"
  [tiny-qwen2]="--arch qwen2 --hidden 128 --layers 3 --heads 4 --kv-heads 2 --ffn 384 --steps 3000 --batch 32 --lr 3e-3 --seed 2"
)

cache=.tools/train
wn=testdata/wordnet
tm=testdata/models
mkdir -p "$cache" "$wn" "$tm"
exec 9>"$cache/build.lock"
flock 9

run() { scripts/train/run-in-chroot.sh "$@"; }
sha() { cat "$@" | sha256sum | cut -c1-16; }
fresh() { [ $force = 0 ] && [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
log() { echo "build-models: $*" >&2; }

data_stamp="wordnet-$(sha scripts/data/wordnet.py)"
tok_stamp="tok-$(sha scripts/data/wordnet.py scripts/train/tokenizer.py)"

corpus() { # the pretraining corpus (not committed), plus the committed datasets
  if fresh "$cache/corpus.stamp" "$data_stamp" && [ -s "$cache/corpus.jsonl" ] &&
    [ -s "$wn/define-train.jsonl" ]; then return; fi
  log "WordNet datasets and pretraining corpus"
  "$root/scripts/sid-chroot.sh" wordnet-base >/dev/null
  run python3 scripts/data/wordnet.py --out "$wn" --corpus "$cache/corpus.jsonl"
  echo "$data_stamp" >"$cache/corpus.stamp"
}

data() { # committed datasets only: rebuilt when missing or made by another wordnet.py
  if fresh "$wn/build-stamp" "$data_stamp" && [ -s "$wn/define-train.jsonl" ] && [ -s "$wn/word-heldout.jsonl" ]; then
    return
  fi
  corpus
  echo "$data_stamp" >"$wn/build-stamp"
}

tokenizer() {
  if fresh "$tm/tokenizer/build-stamp" "$tok_stamp" && [ -s "$tm/tokenizer/tokenizer.json" ]; then return; fi
  corpus
  log "tokenizer"
  run python3 scripts/train/tokenizer.py --corpus "$cache/corpus.jsonl" --out "$tm/tokenizer.tmp"
  echo "$tok_stamp" >"$tm/tokenizer.tmp/build-stamp"
  rm -rf "$tm/tokenizer" && mv "$tm/tokenizer.tmp" "$tm/tokenizer"
}

modelfile() {
  cat >"$tm/$1.Modelfile.tmp" <<'EOF'
FROM ./MODEL.gguf
TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|endoftext|>"
PARAMETER repeat_penalty 1
EOF
  sed -i "s/MODEL/$1/" "$tm/$1.Modelfile.tmp"
  if cmp -s "$tm/$1.Modelfile.tmp" "$tm/$1.Modelfile"; then rm "$tm/$1.Modelfile.tmp"; else mv "$tm/$1.Modelfile.tmp" "$tm/$1.Modelfile"; fi
}

model() {
  local m=$1 hf=$tm/$1-hf
  local stamp
  stamp="model-$RECIPE-$(sha scripts/data/wordnet.py scripts/train/tokenizer.py scripts/train/pretrain.py)-$(echo "${ARGS[$m]}" | sha256sum | cut -c1-16)"
  if ! fresh "$hf/build-stamp" "$stamp" || [ ! -s "$hf/model.safetensors" ]; then
    corpus
    tokenizer
    log "pretraining $m (${ARGS[$m]})"
    local t0=$SECONDS
    # shellcheck disable=SC2086
    run python3 scripts/train/pretrain.py ${ARGS[$m]} --tokenizer "$tm/tokenizer" \
      --corpus "$cache/corpus.jsonl" --heldout "$wn/define-heldout.jsonl" "$wn/word-heldout.jsonl" \
      --out "$cache/$m-hf" >"$cache/$m.log"
    log "$m pretrained in $((SECONDS - t0)) s"
    echo "$stamp" >"$cache/$m-hf/build-stamp"
    rm -rf "$hf" && cp -r "$cache/$m-hf" "$hf.tmp" && mv "$hf.tmp" "$hf"
    rm -f "$tm/$m.gguf"
  fi
  local gstamp
  gstamp="$stamp-$(sha "$hf/model.safetensors" scripts/hf2gguf/main.go)"
  if ! fresh "$hf/gguf-stamp" "$gstamp" || [ ! -s "$tm/$m.gguf" ]; then
    log "converting $m to GGUF"
    go run ./scripts/hf2gguf "$hf" "$tm/$m.gguf"
    echo "$gstamp" >"$hf/gguf-stamp"
  fi
  modelfile "$m"
}

data
for m in "${models[@]}"; do model "$m"; done
log "done: $(cd "$tm" && ls -s --block-size=K ./*.gguf | tr '\n' ' ')"
