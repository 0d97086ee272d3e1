#!/usr/bin/env bash
# run-in-chroot.sh CMD [ARG...]: runs CMD inside the Debian sid chroot (.tools/sid) that holds the
# Python training stack, with the repository visible inside at its own absolute path and CMD started
# in the caller's folder: absolute and relative paths under the repository work unchanged.
#
# Installs the stack on first use (scripts/sid-chroot.sh; idempotent, one dpkg query afterwards).
# Mounts happen in a private mount namespace (unshare -m), so /proc and the bind mount of the
# repository vanish when CMD exits, even when it is killed, and concurrent runs do not interfere.
# Without /proc PyTorch loses its AVX kernels; without libopenblas0-openmp it trains ~16x slower.
# Where mounts are not allowed it falls back to copying: set VTUNE_CHROOT_COPY=1 to force that
# (the repository is copied in, without .git and the big tool folders, and copied back after).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
PKGS=(python3 python3-torch python3-transformers python3-tokenizers python3-safetensors python3-accelerate
  libopenblas0-openmp)
dir=$("$root/scripts/sid-chroot.sh" "${PKGS[@]}")
[ $# -gt 0 ] || { echo "usage: run-in-chroot.sh CMD [ARG...]" >&2; exit 2; }

here=$(pwd -P)
case "$here/" in
  "$root/"*) cwd=$here ;;
  *) cwd=$root ;;
esac
envs=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  TOKENIZERS_PARALLELISM=false OPENBLAS_NUM_THREADS=1 HF_HUB_DISABLE_PROGRESS_BARS=1
  TRANSFORMERS_VERBOSITY=error TQDM_DISABLE=1)
[ -n "${VTUNE_THREADS:-}" ] && envs+=(VTUNE_THREADS="$VTUNE_THREADS")

# Host temporary folders are visible too (tests keep datasets and keys there).
binds=/tmp
if [ -n "${TMPDIR:-}" ] && [ -d "$TMPDIR" ]; then
  t=$(cd "$TMPDIR" && pwd -P)
  case "$t/" in "$root/"* | /tmp/*) ;; *) binds="$binds:$t" ;; esac
fi
mkdir -p "$dir$root"
if [ "${VTUNE_CHROOT_COPY:-0}" != 1 ] && unshare -m --propagation private true 2>/dev/null; then
  # shellcheck disable=SC2016
  exec unshare -m --propagation private bash -c '
    set -e
    dir=$1 root=$2 binds=$3; shift 3
    mount --bind "$root" "$dir$root"
    IFS=: read -ra bs <<<"$binds"
    for d in "${bs[@]}"; do mkdir -p "$dir$d"; mount --bind "$d" "$dir$d"; done
    mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
    exec chroot "$dir" "$@"' _ "$dir" "$root" "$binds" /usr/bin/env -i "${envs[@]}" \
    bash -c 'cd "$0" && exec "$@"' "$cwd" "$@"
fi

# Fallback without mounts: copy the repository in (without .git and the big tool folders), run,
# and copy back only the files CMD created or changed, so concurrent edits in the tree survive.
# Paths outside the repository are not visible in this mode.
echo "run-in-chroot: mounts unavailable, copying the repository into the chroot" >&2
rm -rf "${dir:?}$root" && mkdir -p "$dir$root"
# tar exits 1 when a file changes while it is read (other work in the tree): not an error here.
{ tar -C "$root" --warning=no-file-changed --exclude=./.git --exclude=./.tools -cf - . || [ $? = 1 ]; } |
  tar -C "$dir$root" -xf -
if [ -d "$root/.tools/train" ]; then
  { tar -C "$root" --warning=no-file-changed -cf - ./.tools/train || [ $? = 1 ]; } | tar -C "$dir$root" -xf -
fi
marker=$dir/.run-in-chroot-marker
touch "$marker"
sleep 1
rc=0
chroot "$dir" /usr/bin/env -i "${envs[@]}" bash -c 'cd "$0" && exec "$@"' "$cwd" "$@" || rc=$?
(cd "$dir$root" && find . -type f -newer "$marker" -print0 | tar --null -T - -cf -) | tar -C "$root" -xf -
rm -rf "${dir:?}$root" "$marker"
exit $rc
