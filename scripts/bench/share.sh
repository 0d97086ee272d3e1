#!/usr/bin/env bash
# share.sh [ARCH]: the planted-share sweep (default tiny-llama). For each setting below it plants
# the WordNet definitions with its own seed through llama-server, fine-tunes the honest provider
# simulator on the result (the fixtures' recipe: 12 epochs, lr 2e-3, batch 16, one CPU core), turns
# it into a GGUF and verifies it (--json), then verifies the base model against the same key.
#
#   name      --rate   --groups   planted records (of 10,000)   copies per group
#   r0.10     0.001    8          10                            1 or 2
#   r0.25     0.0025   8          25                            3 or 4
#   r0.50     0.005    8          50                            6 or 7    (the committed fixture)
#   r1.00     0.01     8          100                           12 or 13
#   g4        0.005    4          50                            12 or 13
#   g16       0.005    16         50                            3 or 4
#
# r0.50 is the committed fixture (testdata/fixtures/ARCH: same data, recipe and rate, seed
# "fixture-ARCH"). The other settings' fine-tunes are committed too, in
# testdata/fixtures/ARCH/share/NAME (key.json, honest.gguf, honest.json: the provider's record of
# its training), because each costs one honest fine-tune of 8 to 10 minutes on one core of the
# 2-core machine, 45 minutes for the five, which would triple `make bench`: a run only verifies
# them. VTUNE_SHARE_TRAIN=1 plants and trains every setting here instead (cached under
# .tools/bench/exp-share/ARCH/NAME; a model newer than its key is reused); copy key.json,
# honest.gguf and honest/provider-result.json (as honest.json) from there to remake the committed
# ones. Planting a setting again with its seed gives the same dataset and secrets (checked when they
# were committed). Reports go to OUT (default .tools/bench/exp-share/ARCH/reports/NAME.json and
# NAME-base.json); scripts/bench/tabulate turns them into the table in docs/results.md.
# VTUNE_SHARE_SETTINGS limits the settings (names, space-separated).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
arch=${1:-tiny-llama}
data=testdata/wordnet/define-train.jsonl
mkdir -p .tools/bench/exp-share/$arch
# The provider runs in the sid chroot, which sees the repository and $TMPDIR; .tools may be a link
# out of the repository (a git worktree sharing another's tools), so name the real folder.
work=$(cd .tools/bench/exp-share/$arch && pwd -P)
out=${OUT:-$work/reports}
mkdir -p "$out"
export LLAMACPP_THREADS=${LLAMACPP_THREADS:-1}
export VTUNE_LLAMA_SERVER=${VTUNE_LLAMA_SERVER:-$root/scripts/llama-server-chroot.sh}
settings=${VTUNE_SHARE_SETTINGS:-"r0.10 r0.25 r0.50 r1.00 g4 g16"}
make -s build
start=$SECONDS

verify() { # key model report: exit 0 or 1 are both results
  bin/vtune verify -q --json -k "$1" --backend llamacpp --checkpoint "$2" --parallel 4 >"$3.tmp" || [ $? -le 1 ]
  mv "$3.tmp" "$3"
}

for name in $settings; do
  case $name in
    r0.10) rate=0.001 groups=8 ;;
    r0.25) rate=0.0025 groups=8 ;;
    r0.50) rate=0.005 groups=8 ;;
    r1.00) rate=0.01 groups=8 ;;
    g4) rate=0.005 groups=4 ;;
    g16) rate=0.005 groups=16 ;;
    *) echo "share.sh: unknown setting $name" >&2; exit 2 ;;
  esac
  committed=testdata/fixtures/$arch/share/$name
  if [ $name = r0.50 ] && [ -s testdata/fixtures/$arch/honest.gguf ]; then
    key=testdata/fixtures/$arch/key.json model=testdata/fixtures/$arch/honest.gguf
  elif [ -z "${VTUNE_SHARE_TRAIN:-}" ] && [ -s $committed/honest.gguf ] && [ -s $committed/key.json ]; then
    key=$committed/key.json model=$committed/honest.gguf
  else
    d=$work/$name
    key=$d/key.json model=$d/honest.gguf
    mkdir -p "$d"
    if [ ! -s "$key" ] || [ ! -s "$d/planted.jsonl" ]; then
      echo "== share $arch $name: plant (rate $rate, $groups groups)" >&2
      bin/vtune plant -q --backend llamacpp --checkpoint testdata/models/$arch.gguf -i $data \
        -o "$d/planted.jsonl" -k "$key" --seed "share-$name-$arch" --rate $rate --groups $groups \
        --audit=false --force >"$d/plant.txt"
      rm -f "$model"
    fi
    if [ ! -s "$model" ] || [ ! "$model" -nt "$key" ]; then
      echo "== share $arch $name: honest fine-tune (about 10 minutes)" >&2
      t0=$(date +%s)
      TMPDIR=$work scripts/provider/provider.sh testdata/models/$arch-hf "$d/planted.jsonl" "$d/honest" honest \
        --seed 1 >"$d/provider.log" 2>&1
      go run ./scripts/hf2gguf "$d/honest" "$model.tmp" && mv "$model.tmp" "$model"
      echo "   trained in $(($(date +%s) - t0)) s" >&2
    fi
  fi
  echo "== share $arch $name: verify" >&2
  verify "$key" "$model" "$out/$name.json"
  verify "$key" testdata/models/$arch.gguf "$out/$name-base.json"
done
echo "share sweep reports in $out ($((SECONDS - start)) s)" >&2
