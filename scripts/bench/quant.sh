#!/usr/bin/env bash
# quant.sh [ARCH...]: every bundled architecture (default tiny-llama tiny-qwen2) x every provider
# behaviour of the committed fixtures (base, honest, strip, half, short, tenth, backdoor-only) x
# {F32, Q8_0, Q4_K_M, Q4_0}. One `vtune verify` run per architecture with the fixture key,
# --quantize Q8_0,Q4_K_M,Q4_0 (llama-quantize from the sid chroot, files made in a temporary place
# and removed), every model served by llama-server (one thread). Writes OUT/ARCH.json (verify
# --json: one row per model and type) and the figures of --plot in OUT/plots-ARCH/; default OUT
# .tools/bench/exp-quant. scripts/bench/tabulate turns the JSON into the table in docs/results.md.
# About 1.5 minutes per architecture on 2 cores with --parallel 4 (99 and 88 s, 2026-11-30); nothing is cached (the quantized files are removed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(tiny-llama tiny-qwen2)
out=${OUT:-.tools/bench/exp-quant}
mkdir -p "$out"
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}
export VTUNE_LLAMA_QUANTIZE=${VTUNE_LLAMA_QUANTIZE:-$root/scripts/llama-quantize-chroot.sh}
make -s build
for arch in "${archs[@]}"; do
  f=testdata/fixtures/$arch
  list=$out/models-$arch.txt
  {
    echo "testdata/models/$arch.gguf base"
    for b in honest strip half short tenth backdoor-only; do echo "$f/$b.gguf $b"; done
  } >"$list"
  echo "== quant $arch: 7 models x 4 types" >&2
  t0=$(date +%s)
  rm -rf "$out/plots-$arch"
  # exit 1 (some model not verified) is the expected outcome; 2 and 3 are failures.
  bin/vtune verify -q --json -k $f/key.json --backend llamacpp --models "$list" --parallel 4 \
    --quantize Q8_0,Q4_K_M,Q4_0 --plot "$out/plots-$arch" >"$out/$arch.json.tmp" || [ $? -le 1 ]
  mv "$out/$arch.json.tmp" "$out/$arch.json"
  echo "   $(($(date +%s) - t0)) s" >&2
done
echo "quantization reports in $out" >&2
