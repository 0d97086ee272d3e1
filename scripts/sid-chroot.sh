#!/usr/bin/env bash
# sid-chroot.sh [PACKAGE...]: makes sure the Debian sid chroot under .tools/sid exists and holds the
# given packages. Bookworm lacks what we need (miniaudio headers for the Ollama build, llama-server,
# a recent PyTorch and transformers), and sid's binaries need sid's libc, so they live in a chroot.
# Idempotent: a second run with packages already there costs one dpkg query.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${VTUNE_SID:-$root/.tools/sid}
mkdir -p "$root/.tools"
exec 9>"$root/.tools/sid.lock"
flock 9

if [ ! -x "$dir/usr/bin/apt-get" ]; then
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  fi
  echo "sid-chroot: creating $dir (about 30 s)" >&2
  rm -rf "$dir.partial"
  debootstrap --variant=minbase sid "$dir.partial" >"$root/.tools/debootstrap.log" 2>&1 ||
    { echo "sid-chroot: debootstrap failed, see .tools/debootstrap.log" >&2; exit 1; }
  mv "$dir.partial" "$dir"
  echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99novalid"
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
fi

missing=()
for p in "$@"; do
  chroot "$dir" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "sid-chroot: installing ${missing[*]}" >&2
  cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  chroot "$dir" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive chroot "$dir" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$root/.tools/sid-apt.log" 2>&1 ||
    { echo "sid-chroot: apt-get install ${missing[*]} failed, see .tools/sid-apt.log" >&2; exit 1; }
fi
echo "$dir"
