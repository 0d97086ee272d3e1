#!/usr/bin/env bash
# e2e.sh: the whole method from scratch, for both bundled architectures (`make e2e`, run by CI).
#
# Plants a key into the WordNet definitions with each base model (nothing is reused from earlier runs),
# trains the honest provider and every cheat (strip, half, short, tenth, backdoor-only; base is the
# base model), verifies each from its GGUF through a real llama-server and checks the method's
# promises with the same tests as the committed fixtures (TestFixture*): honest VERIFIED (p_agnostic <= 1e-40 from one query per
# group at 0.5% planted, and the whole-data test certifies the trained share), every other provider
# NOT VERIFIED with the reasons that apply (cmd/vtune/fixtures_test.go lists them; backdoor-only,
# trained only on the records a keyless duplicate scan flags, reproduces the secrets and is caught
# by the whole-data test), a relabelled decoy giving INCONCLUSIVE, no decoy hit, and held-out loss
# within 2% of the fine-tune without the planted records. Prints the table that docs/results.md
# records, also when a check failed (the exit status then says so).
# About 30 minutes on 2 cores: the two architectures train side by side, one core each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dir=${VTUNE_E2E_DIR:-$root/.tools/e2e}
rm -rf "$dir" && mkdir -p "$dir/reports"
export VTUNE_FIXTURES_DIR=$dir/fixtures VTUNE_FIXTURES_WORK=$dir/work
# The committed fixtures' seed by default, so that CI is reproducible: planting and training are
# deterministic for a seed (one PyTorch thread), and the run rebuilds the fixtures from nothing.
# VTUNE_FIXTURE_SEED=any-text draws fresh secrets (docs/results.md records three).
export VTUNE_FIXTURE_SEED=${VTUNE_FIXTURE_SEED:-fixture}

make -s build
pids=()
for arch in tiny-llama tiny-qwen2; do
  scripts/fixtures.sh "$arch" >"$dir/$arch.log" 2>&1 &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { echo "e2e: building fine-tunes failed, see $dir/*.log" >&2; tail -20 "$dir"/*.log >&2; exit 1; }
done

status=0
VTUNE_REQUIRE_SERVERS=1 VTUNE_REPORTS_DIR=$dir/reports go test -count=1 -run 'TestFixture' -v ./cmd/vtune || status=$?

for arch in tiny-llama tiny-qwen2; do
  echo
  echo "### $arch"
  echo
  rows=()
  for p in honest base strip half short tenth backdoor-only; do
    if [ ! -f "$dir/reports/$arch-$p.json" ]; then
      echo "e2e: no report for $arch $p (not verified by the fixture test); row left out" >&2
      continue
    fi
    prov=""
    [ -f "$VTUNE_FIXTURES_DIR/$arch/$p.json" ] && prov=",$VTUNE_FIXTURES_DIR/$arch/$p.json"
    rows+=("$p=$dir/reports/$arch-$p.json$prov")
  done
  python3 scripts/verdicts.py --markdown "${rows[@]}"
done | tee "$dir/results.md"
exit $status
