#!/usr/bin/env bash
# install-ollama.sh: builds the Ollama server from the Go module proxy into .tools/ollama/ and prints
# the binary's path. v0.17.4 is the newest release that builds from the module zip alone (later ones
# fetch llama.cpp with CMake); the zip drops llama.cpp's vendor/ folder, so three header-only
# libraries come from Debian (nlohmann, stb) and from the sid chroot (miniaudio, not in bookworm).
# First run: 6 to 9 minutes on 2 cores. Later runs: instant.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ver=${OLLAMA_VERSION:-v0.17.4}
out=$root/.tools/ollama/$ver
bin=$out/bin/ollama
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$out"
exec 8>"$root/.tools/ollama.lock"
flock 8
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

if [ "$(dpkg-query -W -f='${Status}\n' nlohmann-json3-dev libstb-dev 2>/dev/null | grep -c "ok installed")" != 2 ]; then
  echo "install-ollama: installing header packages" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nlohmann-json3-dev libstb-dev >/dev/null
fi
sid=$("$root/scripts/sid-chroot.sh" libminiaudio-dev)

inc=$out/include
mkdir -p "$inc/stb" "$inc/miniaudio" "$inc/nlohmann"
ln -sf /usr/include/stb/stb_image.h "$inc/stb/stb_image.h"
ma=$(find "$sid/usr/include" -name miniaudio.h | head -1)
[ -n "$ma" ] && ln -sf "$ma" "$inc/miniaudio/miniaudio.h"
for f in /usr/include/nlohmann/*; do ln -sf "$f" "$inc/nlohmann/"; done
[ -e "$inc/miniaudio/miniaudio.h" ] || { echo "install-ollama: miniaudio.h not found in $sid" >&2; exit 1; }

echo "install-ollama: building ollama $ver (6 to 9 minutes the first time)" >&2
# The version string is stamped in, as Ollama's release build does, so /api/version names it.
GOBIN=$out/bin.partial CGO_ENABLED=1 CGO_CPPFLAGS="-I$inc" \
  GOFLAGS=-mod=mod go install -ldflags "-X github.com/ollama/ollama/version.Version=${ver#v}" "github.com/ollama/ollama@$ver" >"$out/build.log" 2>&1 ||
  { echo "install-ollama: build failed, see $out/build.log" >&2; tail -5 "$out/build.log" >&2; exit 1; }
rm -rf "$out/bin" && mv "$out/bin.partial" "$out/bin"
echo "$bin"
