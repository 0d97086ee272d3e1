#!/usr/bin/env bash
# run.sh: what `make bench` runs. The quantization table (quant.sh), the planted-share sweep
# (share.sh) and the false-positive experiments (fpr.sh), then the tables and figures into
# docs/results.md (between its bench markers) and docs/img/bench-*.png (scripts/bench/tabulate,
# scripts/bench/pngsmall). Work files stay under .tools/bench/exp-*/.
#
# Cost from cold caches on the 2-core machine, shared (2026-11-30, load 3 to 9): 19.5 minutes.
# quant.sh 99 and 88 s for the two architectures; share.sh 34 s (it verifies the committed
# sweep fine-tunes; VTUNE_SHARE_TRAIN=1 trains them again, 45 minutes); fpr.sh 1,000 fresh keys at
# about 0.8 s a key (4 at once) within FPR_BUDGET (default 15m; the table says how many keys it
# holds, and a later run adds to the cache), then 2.5 minutes scoring its pools. With every cache
# full a run took 5 minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
t0=$(date +%s)
load=$(cut -d' ' -f1-3 /proc/loadavg)
scripts/bench/quant.sh
scripts/bench/share.sh tiny-llama
scripts/bench/fpr.sh tiny-llama
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
os=$(. /etc/os-release && echo "$PRETTY_NAME")
machine="$(nproc) cores ($cpu), $os, load average $load at the start (other jobs share the machine), llama-server $(scripts/llama-server-chroot.sh --version 2>&1 | grep -o 'version: [^ ]*' | head -1 | cut -d' ' -f2) with one thread; \`make bench\` took $(( ($(date +%s) - t0) / 60 )) minutes"
go run ./scripts/bench/tabulate -quant .tools/bench/exp-quant -share .tools/bench/exp-share/tiny-llama/reports \
  -fpr .tools/bench/exp-fpr/tiny-llama -results docs/results.md -machine "$machine"
mkdir -p docs/img
go run ./scripts/bench/pngsmall .tools/bench/exp-quant/plots-tiny-llama/pvalues.png docs/img/bench-quant-pvalues.png
go run ./scripts/bench/pngsmall .tools/bench/exp-quant/plots-tiny-llama/wholedata-backdoor-only_Q4_0.png docs/img/bench-wholedata-backdoor-only-q4_0.png
echo "bench: tables in docs/results.md (section between the bench markers), figures docs/img/bench-*.png; reports under .tools/bench/exp-{quant,share,fpr}" >&2
