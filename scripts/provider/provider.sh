#!/usr/bin/env bash
# provider.sh BASE_HF DATA.jsonl OUT_HF [BEHAVIOUR] [provider.py options...]
#   BEHAVIOUR: honest (default) | base | strip | half | tenth | short | backdoor-only
#   options:   --key KEY.json (strip; backdoor-only reports with it) --seed N --epochs E --lr LR --batch B
# Simulates a fine-tuning provider: fine-tunes the Hugging Face folder BASE_HF on DATA.jsonl
# (chat, Alpaca or prompt/completion JSONL) inside the sid chroot and writes a Hugging Face folder
# OUT_HF, which `go run ./scripts/hf2gguf OUT_HF OUT.gguf` turns into a GGUF for Ollama / llama.cpp.
# Paths may be absolute or relative to the current folder, but must lie inside the repository,
# /tmp or $TMPDIR (what the chroot sees). See scripts/provider/provider.py for the details.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 3 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
base=$1 data=$2 out=$3
shift 3
behaviour=honest
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then behaviour=$1; shift; fi
exec "$here/../train/run-in-chroot.sh" python3 "$here/provider.py" --base "$base" --data "$data" \
  --out "$out" --behaviour "$behaviour" "$@"
