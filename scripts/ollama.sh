#!/usr/bin/env bash
# ollama.sh start|stop|url|create NAME MODELFILE [STATE]: runs a private Ollama server on a free
# loopback port, with its own HOME and model folder, so tests and the demo never touch a user's
# server or models. State (url, pid, log, home, models) lives in $VTUNE_OLLAMA_STATE, default
# .tools/run/ollama. The server binary comes from scripts/install-ollama.sh (built on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${VTUNE_OLLAMA_STATE:-$root/.tools/run/ollama}
cmd=${1:-}

alive() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }
answers() { curl -fsS --max-time 2 "$1/api/version" >/dev/null 2>&1; }

free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "ollama.sh: no free port found" >&2
  return 1
}

case "$cmd" in
start)
  if alive && answers "$(cat "$state/url")"; then cat "$state/url"; exit 0; fi
  bin=$("$root/scripts/install-ollama.sh")
  mkdir -p "$state/home" "$state/models"
  port=$(free_port)
  url="http://127.0.0.1:$port"
  # Flash attention and parallel slots off: one request at a time, same numbers every time.
  HOME="$state/home" OLLAMA_MODELS="$state/models" OLLAMA_HOST="127.0.0.1:$port" \
    OLLAMA_NUM_PARALLEL=1 OLLAMA_KEEP_ALIVE=-1 OLLAMA_NOPRUNE=1 \
    setsid nohup "$bin" serve >"$state/log" 2>&1 </dev/null &
  echo $! >"$state/pid"
  for _ in $(seq 150); do
    if answers "$url"; then
      # A busy port makes the new server exit while another still answers: check it is ours.
      alive || { echo "ollama.sh: server exited, see $state/log" >&2; exit 1; }
      echo "$url" >"$state/url"
      if [ -n "${OLLAMA_WATCH_PID:-}" ]; then
        # A test binary killed by its timeout never reaches its cleanup: this watcher stops the
        # server (its process group: the runners too) and removes the private state once that
        # process has exited, as scripts/llamacpp.sh does for llama-server.
        pid=$(cat "$state/pid")
        setsid bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
          kill -- -"$2" 2>/dev/null; for _ in $(seq 50); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
          kill -9 -- -"$2" 2>/dev/null; [ -z "$4" ] || rm -rf "$3"' watch "$OLLAMA_WATCH_PID" "$pid" "$state" "${OLLAMA_WATCH_CLEAN:-}" \
          </dev/null >/dev/null 2>&1 &
      fi
      echo "$url"
      exit 0
    fi
    alive || { echo "ollama.sh: server exited, see $state/log" >&2; tail -5 "$state/log" >&2; exit 1; }
    sleep 0.2
  done
  echo "ollama.sh: server did not answer at $url within 30 s, see $state/log" >&2
  exit 1
  ;;
stop)
  if alive; then
    pid=$(cat "$state/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/pid" "$state/url"
  ;;
url)
  alive && cat "$state/url" || { echo "ollama.sh: not running (scripts/ollama.sh start)" >&2; exit 1; }
  ;;
create)
  name=${2:?usage: ollama.sh create NAME MODELFILE}
  mf=${3:?usage: ollama.sh create NAME MODELFILE}
  url=$(cat "$state/url")
  bin=$("$root/scripts/install-ollama.sh")
  # The Modelfile's FROM is relative to the Modelfile's folder.
  (cd "$(dirname "$mf")" && HOME="$state/home" OLLAMA_HOST="${url#http://}" "$bin" create "$name" -f "$(basename "$mf")" >"$state/create-$name.log" 2>&1) ||
    { echo "ollama.sh: creating $name from $mf failed:" >&2; tail -5 "$state/create-$name.log" >&2; exit 1; }
  ;;
*)
  echo "usage: ollama.sh start|stop|url|create NAME MODELFILE" >&2
  exit 2
  ;;
esac
