#!/usr/bin/env bash
# llama-quantize-chroot.sh IN.gguf OUT.gguf TYPE: runs llama-quantize from the Debian sid chroot that
# `scripts/llamacpp.sh install` builds, for this repository's tests and benchmarks. vtune is handed it
# as its llama-quantize (--llama-quantize, or VTUNE_LLAMA_QUANTIZE, which the tests set). The chroot
# sees only its own tree: IN is hard-linked (or copied) into a private folder inside it, the result
# is moved out to OUT, and the folder is removed. $LLAMACPP_THREADS, when set, is the thread count.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sid=${VTUNE_SID:-$root/.tools/sid}
if [ ! -x "$sid/usr/bin/llama-quantize" ]; then
  echo "llama-quantize-chroot: no llama-quantize in $sid: run scripts/llamacpp.sh install (make llamacpp)" >&2
  exit 127
fi
[ $# -eq 3 ] || { echo "usage: llama-quantize-chroot.sh IN.gguf OUT.gguf TYPE" >&2; exit 2; }
in=$1 out=$2 type=$3
dir=$(mktemp -d "$sid/tmp/llama-quantize-chroot.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
ln -f "$in" "$dir/in.gguf" 2>/dev/null || cp "$in" "$dir/in.gguf" || exit 1
inside=${dir#"$sid"}
chroot "$sid" llama-quantize "$inside/in.gguf" "$inside/out.gguf" "$type" ${LLAMACPP_THREADS:+"$LLAMACPP_THREADS"} || exit $?
mv -f "$dir/out.gguf" "$out" 2>/dev/null || cp "$dir/out.gguf" "$out"
