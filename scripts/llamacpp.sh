#!/usr/bin/env bash
# llamacpp.sh: installs and runs llama.cpp's llama-server for tests and local use.
#
#   scripts/llamacpp.sh install                 make sure llama-server is in the sid chroot; print its path
#   scripts/llamacpp.sh start MODEL.gguf [NAME] start a server for MODEL (or reuse a live one); print its URL
#   scripts/llamacpp.sh stop [NAME]             stop the server NAME, waiting until it has exited
#   scripts/llamacpp.sh url [NAME]              print the URL of a live server NAME, fail if none
#
# NAME defaults to the model file's name without .gguf. State lives in $LLAMACPP_STATE, default
# .tools/run/llamacpp-NAME/, as files url, pid, port, model and log, so tests and other scripts find
# the server without asking this script.
#
# Debian sid ships llama-server (llama.cpp-tools) but its binary needs sid's libc, so it runs under
# chroot; the model is hard-linked (or copied) into the chroot because the server cannot see outside.
# With $LLAMACPP_WATCH_PID set, the server is stopped and its state folder removed once that process
# has exited (tests pass their own pid with a private $LLAMACPP_STATE).
# Extra server flags can be given in $LLAMACPP_ARGS; $LLAMACPP_THREADS sets the thread count (default
# all cores). Tests use 1: ggml's worker threads spin on barriers, so on a busy 2-core machine two
# threads make a tiny model hundreds of times slower than one.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sid=${VTUNE_SID:-$root/.tools/sid}
cmd=${1:-}
shift || true

die() { echo "llamacpp: $*" >&2; exit 1; }

install() {
  "$root/scripts/sid-chroot.sh" llama.cpp-tools >/dev/null
  [ -x "$sid/usr/bin/llama-server" ] || die "llama-server missing in $sid after install"
  echo "$sid/usr/bin/llama-server"
}

statedir() { echo "${LLAMACPP_STATE:-$root/.tools/run/llamacpp-$1}"; }

# alive PID: true while PID is a running llama-server. The name check keeps a stale pid file from
# making stop kill whatever process reused the number.
alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
  [ ! -r "/proc/$1/cmdline" ] || tr '\0' ' ' <"/proc/$1/cmdline" | grep -q llama-server
}

# health PORT: true when /health answers 200. Plain bash, so curl is not needed on a fresh machine.
health() {
  local line
  line=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$1"'
    printf "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3; head -1 <&3' 2>/dev/null) || return 1
  [[ $line == *" 200"* ]]
}

# freeport: a loopback port that nothing listens on now. Another process may still take it before the
# server binds, so start retries when the server dies.
freeport() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# live DIR: true when DIR describes a server whose process is alive and answers. Both checks matter:
# a server that lost the port race exits while the old one on that port still answers /health.
live() {
  local d=$1
  [ -f "$d/pid" ] && [ -f "$d/port" ] || return 1
  alive "$(cat "$d/pid")" && health "$(cat "$d/port")"
}

stop_dir() {
  local d=$1 pid
  [ -f "$d/pid" ] || return 0
  pid=$(cat "$d/pid")
  if alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$d/pid" "$d/url" "$d/port"
}

start() {
  local model=${1:-} name=${2:-}
  [ -n "$model" ] || die "usage: llamacpp.sh start MODEL.gguf [NAME]"
  [ -f "$model" ] || die "model $model not found"
  model=$(cd "$(dirname "$model")" && pwd)/$(basename "$model")
  [ -n "$name" ] || name=$(basename "$model" .gguf)
  local d sum
  d=$(statedir "$name")
  mkdir -p "$d"
  exec 7>"$d/lock"
  flock 7
  sum=$(sha256sum "$model" | cut -c1-64)
  if live "$d" && [ "$(cat "$d/model" 2>/dev/null)" = "$sum" ]; then
    cat "$d/url"
    return
  fi
  stop_dir "$d"
  install >/dev/null

  # The file name carries the digest so a rebuilt model never reuses a link to the old content.
  mkdir -p "$sid/models"
  local inside=/models/$name-${sum:0:12}.gguf
  if [ ! -f "$sid$inside" ]; then
    if ! ln -f "$model" "$sid$inside" 2>/dev/null; then
      cp "$model" "$sid$inside.partial" && mv -f "$sid$inside.partial" "$sid$inside"
    fi
  fi
  [ -f "$sid$inside" ] || die "could not place $model in $sid/models"

  local port pid
  for attempt in 1 2 3 4 5; do
    port=$(freeport)
    # One slot: requests queue on it and share its prompt cache, which teacher forcing relies on.
    # The lock descriptor is closed for the server, or it would hold the lock for its lifetime.
    # setsid keeps the server out of the caller's process group: a Ctrl-C meant for the caller
    # (a test run, make) does not reach it; stop (or the watcher below) ends it.
    # shellcheck disable=SC2086
    setsid chroot "$sid" llama-server -m "$inside" -a "$name" --host 127.0.0.1 --port "$port" \
      -t "${LLAMACPP_THREADS:-$(nproc)}" -np 1 --no-webui ${LLAMACPP_ARGS:-} </dev/null >"$d/log" 2>&1 7>&- &
    pid=$!
    echo "$pid" >"$d/pid"
    echo "$port" >"$d/port"
    for _ in $(seq 600); do
      # kill -0, not alive: until setsid and chroot have exec'd, the process is not yet named
      # llama-server, and the name check would call a starting server dead.
      kill -0 "$pid" 2>/dev/null || break
      if health "$port"; then
        echo "$sum" >"$d/model"
        echo "http://127.0.0.1:$port" >"$d/url"
        if [ -n "${LLAMACPP_WATCH_PID:-}" ]; then
          # A test binary has no hook that runs when it dies; this watcher stops the server and
          # removes its private state then, so no server outlives the tests that started it.
          setsid bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
            kill "$2" 2>/dev/null; for _ in $(seq 50); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$2" 2>/dev/null; rm -rf "$3"' watch "$LLAMACPP_WATCH_PID" "$pid" "$d" </dev/null >/dev/null 2>&1 7>&- &
        fi
        cat "$d/url"
        return
      fi
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      stop_dir "$d"
      die "llama-server did not answer /health within 60 s; see $d/log"
    fi
    rm -f "$d/pid" "$d/port"
    grep -qiE "bind|address already in use|couldn't|could not" "$d/log" || break
    echo "llamacpp: port $port was taken, retrying (attempt $attempt)" >&2
  done
  tail -5 "$d/log" >&2 || true
  die "llama-server exited during startup; see $d/log"
}

case $cmd in
  install) install ;;
  start) start "$@" ;;
  stop)
    name=${1:-}
    [ -n "$name" ] || [ -n "${LLAMACPP_STATE:-}" ] || die "usage: llamacpp.sh stop NAME"
    d=$(statedir "$name")
    [ -d "$d" ] || exit 0
    exec 7>"$d/lock"
    flock 7
    stop_dir "$d"
    ;;
  url)
    d=$(statedir "${1:-}")
    live "$d" || die "no live server in $d"
    cat "$d/url"
    ;;
  *) die "usage: llamacpp.sh install | start MODEL.gguf [NAME] | stop NAME | url NAME" ;;
esac
