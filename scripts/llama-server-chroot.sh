#!/usr/bin/env bash
# llama-server-chroot.sh ARGS...: runs llama-server from the Debian sid chroot that
# `scripts/llamacpp.sh install` builds, with llama-server's own arguments, for this repository's tests,
# demo and benchmarks. vtune never runs repository scripts; it is handed this one as its llama-server:
#
#   vtune verify --backend llamacpp --checkpoint X.gguf --llama-server scripts/llama-server-chroot.sh
#
# (the Makefile and the tests set VTUNE_LLAMA_SERVER to it). The chroot sees only its own tree, so the
# files that -m/--model, --lora and --model-draft name are hard-linked (or copied) into a private
# folder inside it for the server's lifetime and removed when it exits. $LLAMACPP_THREADS, when set,
# adds -t: tests on a busy 2-core machine use 1 (scripts/llamacpp.sh says why).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sid=${VTUNE_SID:-$root/.tools/sid}
if [ ! -x "$sid/usr/bin/llama-server" ]; then
  echo "llama-server-chroot: no llama-server in $sid: run scripts/llamacpp.sh install (make llamacpp)" >&2
  exit 127
fi
dir=$(mktemp -d "$sid/tmp/llama-server-chroot.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

# place FILE: prints FILE's path inside the chroot, after linking it into $dir.
place() {
  local dst
  dst=$dir/$(basename "$1")
  if [ -e "$dst" ]; then dst=$(mktemp -u "$dst.XXXX"); fi
  ln -f "$1" "$dst" 2>/dev/null || cp "$1" "$dst" || return 1
  echo "${dst#"$sid"}"
}

args=()
while [ $# -gt 0 ]; do
  case $1 in
    -m | --model | --lora | -md | --model-draft)
      [ $# -ge 2 ] || { echo "llama-server-chroot: $1 needs a file" >&2; exit 2; }
      inside=$(place "$2") || { echo "llama-server-chroot: cannot place $2 in $dir" >&2; exit 1; }
      args+=("$1" "$inside")
      shift 2
      ;;
    *)
      args+=("$1")
      shift
      ;;
  esac
done
if [ -n "${LLAMACPP_THREADS:-}" ]; then args+=(-t "$LLAMACPP_THREADS"); fi

# The server runs as a child, not by exec, so that the links can be removed when it ends; a signal
# to this script (vtune stops its llama-server with SIGTERM) is passed on to it.
chroot "$sid" llama-server "${args[@]}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT HUP
rc=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  rc=$?
done
exit "$rc"
