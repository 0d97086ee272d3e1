#!/usr/bin/env bash
# fixtures.sh [ARCH...]: rebuilds the committed fine-tune fixtures in testdata/fixtures/ARCH/ for
# the bundled base models (default: tiny-llama tiny-qwen2).
#
# For each base model: plants a key with a fixed seed into the WordNet definitions, runs the provider
# simulator honestly and as each cheat (strip, half, short, tenth, backdoor-only; `base` is the base
# model itself; every behaviour gets --key, which only strip uses to choose records), turns
# each result into an F32 GGUF with a Modelfile, and writes the key. The fast integration tests in
# `make test` verify these files; `make e2e` does the same from scratch. Cached: a fixture whose GGUF
# is newer than its key is not rebuilt (delete the folder to start over). About 25 minutes per model
# on 2 cores. scripts/e2e.sh runs it with VTUNE_FIXTURES_DIR (where the results go),
# VTUNE_FIXTURES_WORK (scratch) and VTUNE_FIXTURE_SEED (a fresh seed) to do it all from scratch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(tiny-llama tiny-qwen2)
behaviours=${VTUNE_FIXTURE_BEHAVIOURS:-"honest strip half short tenth backdoor-only"}
data=testdata/wordnet/define-train.jsonl

outdir=${VTUNE_FIXTURES_DIR:-testdata/fixtures}
workdir=${VTUNE_FIXTURES_WORK:-$root/.tools/fixtures}
seed=${VTUNE_FIXTURE_SEED:-fixture}

make -s build
# Planting scores 2 x 200 held-back records and sentinels under the base model: exact and fast
# through llama-server (one request a record), so it plants through llama-server started for the
# base GGUF. One thread: two runs side by side on 2 cores (scripts/llamacpp.sh says why).
export LLAMACPP_THREADS=1
# vtune starts llama-server for a --checkpoint from the Debian sid chroot through this wrapper.
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}

for arch in "${archs[@]}"; do
  out=$outdir/$arch
  work=$workdir/$arch
  mkdir -p "$out" "$work"
  # The planted dataset is not committed: the same seed, data and model give it back byte for byte.
  if [ ! -s "$out/key.json" ] || [ ! -s "$work/planted.jsonl" ]; then
    echo "== $arch: plant" >&2
    bin/vtune plant -q --backend llamacpp --checkpoint "testdata/models/$arch.gguf" -i "$data" \
      -o "$work/planted.jsonl" --key "$out/key.json" --seed "$seed-$arch" --force
  fi
  for b in $behaviours; do
    if [ -s "$out/$b.gguf" ] && [ "$out/$b.gguf" -nt "$out/key.json" ]; then continue; fi
    echo "== $arch: provider $b" >&2
    scripts/provider/provider.sh "testdata/models/$arch-hf" "$work/planted.jsonl" "$work/$b" "$b" \
      --key "$out/key.json" --seed 1 ${VTUNE_PROVIDER_ARGS:-} >"$work/$b.log"
    go run ./scripts/hf2gguf "$work/$b" "$out/$b.gguf"
    sed "s|^FROM .*|FROM ./$b.gguf|" "testdata/models/$arch.Modelfile" >"$out/$b.Modelfile"
    scripts/train/run-in-chroot.sh python3 scripts/train/heldout.py "$work/$b" testdata/wordnet/define-heldout.jsonl >"$work/$b.heldout.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.update(json.load(open(sys.argv[2]))); json.dump(r, open(sys.argv[3], "w"), indent=2)' \
      "$work/$b/provider-result.json" "$work/$b.heldout.json" "$out/$b.json"
  done
done
