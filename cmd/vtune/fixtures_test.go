package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend/servertest"
	"vtune/verifier"
)

// fixturesDir is where the fine-tune fixtures are: the committed ones, or those an end-to-end run
// has just built from scratch (VTUNE_FIXTURES_DIR).
func fixturesDir() string {
	if d := os.Getenv("VTUNE_FIXTURES_DIR"); d != "" {
		return d
	}
	return filepath.Join(servertest.Root(), "testdata/fixtures")
}

// fixtureProviders are the provider simulator's behaviours with what method.md's table ("Cheats
// and what catches them") promises for each: only the honest fine-tune is verified; a cheat that
// never saw the secrets reproduces none; one that trained on the planted records alone, or on too
// small a part of the data, fails the whole-data test (whether a random part carried a planted
// copy often enough to reproduce a secret is chance: "some"); a fine-tune on everything for a tenth
// of the steps is judged as measured. Secrets and data: +1 must hold, -1 must not, 0 either.
var fixtureProviders = []struct {
	name          string
	verdict       string // "" as measured
	secrets, data int
}{
	{"honest", verifier.Verified, +1, +1},
	{"base", verifier.NotVerified, -1, -1},
	{"strip", verifier.NotVerified, -1, +1},
	{"half", verifier.NotVerified, 0, -1},
	{"short", "", 0, 0},
	{"tenth", verifier.NotVerified, 0, -1},
	{"backdoor-only", verifier.NotVerified, +1, -1},
}

// holds checks a tri-state expectation.
func holds(want int, got bool) bool { return want == 0 || (want > 0) == got }

// The fine-tune fixtures (scripts/fixtures.sh): for each bundled architecture, a key planted into
// the WordNet definitions, the provider simulator's honest fine-tune and its cheats, each verified
// from its GGUF file through a real llama-server (exact scores, one request per record). The
// method's promises, checked on real fine-tunes: the honest one is verified with p_agnostic <=
// 1e-40 from one query per group at <= 0.5% planted and the whole-data test certifying at least
// half of the data; every cheat is not verified, with the reasons that apply; no decoy ever hits.
func TestFixtureVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server")
	}
	servertest.UseLlamaServer(t)
	reports := os.Getenv("VTUNE_REPORTS_DIR") // scripts/e2e.sh tabulates the reports
	for _, arch := range []string{"tiny-llama", "tiny-qwen2"} {
		t.Run(arch, func(t *testing.T) {
			dir := filepath.Join(fixturesDir(), arch)
			keyPath := filepath.Join(dir, "key.json")
			key, err := verifier.ReadKey(keyPath)
			if err != nil {
				t.Fatalf("fixture key: %v (rebuild with scripts/fixtures.sh %s)", err, arch)
			}
			if key.WholeData == nil {
				t.Fatal("fixture key has no whole-data test")
			}
			out := key.Records - len(key.WholeData.HeldBack)
			if frac := float64(key.Planted) / float64(out); frac > 0.0052 {
				t.Errorf("planted fraction %.4f, want about 0.5%%", frac)
			}
			for _, p := range fixtureProviders {
				gguf := filepath.Join(dir, p.name+".gguf")
				if p.name == "base" {
					gguf = servertest.Model(arch + ".gguf")
				}
				code, stdout, stderr := vtune(t, nil, "verify", "-k", keyPath, "--backend", "llamacpp", "--checkpoint", gguf, "--json", "-q", "--llr=false")
				var rep verifier.Report
				if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
					t.Fatalf("%s: exit %d, %v: %s", p.name, code, err, stderr)
				}
				if reports != "" {
					os.WriteFile(filepath.Join(reports, arch+"-"+p.name+".json"), []byte(stdout), 0o644)
				}
				wd := rep.WholeData
				t.Logf("%-13s %s %q: hits %d/%d, log10 p_agnostic %.1f, X %d/%d, log10 p_data %.1f, share >= %.2f",
					p.name, rep.Verdict, rep.Reasons, rep.Hits, rep.Planted, rep.Log10PAgnostic, wd.X, wd.Sentinels, wd.Log10PData, wd.ShareLower95)
				if rep.DecoyHits != 0 {
					t.Errorf("%s: %d decoy hits", p.name, rep.DecoyHits)
				}
				if rep.Queries != rep.Planted || !wd.Available || !wd.Exact {
					t.Errorf("%s: %d queries for %d groups, whole-data test available %v exact %v", p.name, rep.Queries, rep.Planted, wd.Available, wd.Exact)
				}
				if p.verdict != "" && rep.Verdict != p.verdict {
					t.Errorf("%s: %s %q, want %s", p.name, rep.Verdict, rep.Reasons, p.verdict)
				}
				if (code == exitVerified) != rep.Verified || rep.Verdict == verifier.NotVerified && code != exitNotVerified {
					t.Errorf("%s: exit %d for %s", p.name, code, rep.Verdict)
				}
				if !holds(p.secrets, rep.Significant) || !holds(p.data, wd.Certified) {
					t.Errorf("%s: secrets reproduced %v (p_agnostic 10^%.1f), data share certified %v (p_data 10^%.1f); want %+d, %+d",
						p.name, rep.Significant, rep.Log10PAgnostic, wd.Certified, wd.Log10PData, p.secrets, p.data)
				}
				if p.secrets > 0 && rep.Log10PAgnostic > -40 {
					t.Errorf("%s: log10 p_agnostic %.1f, want <= -40 from one query per group", p.name, rep.Log10PAgnostic)
				}
			}
		})
	}
}

// A key whose decoys are planted (here: the fixture key with a planted group relabelled as a
// decoy, as a leaked key or broken matching would look) gives INCONCLUSIVE, exit 4, whatever else
// the model shows.
func TestFixtureDecoyHitIsInconclusive(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server")
	}
	servertest.UseLlamaServer(t)
	dir := filepath.Join(fixturesDir(), "tiny-llama")
	key, err := verifier.ReadKey(filepath.Join(dir, "key.json"))
	if err != nil {
		t.Fatal(err)
	}
	key.Groups[0].Decoy, key.Groups[0].Hosts = true, 0
	keyPath := filepath.Join(t.TempDir(), "leaked.json")
	if err := verifier.WriteKey(keyPath, key); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := vtune(t, nil, "verify", "-k", keyPath, "--backend", "llamacpp", "--checkpoint", filepath.Join(dir, "honest.gguf"), "-q", "--llr=false")
	if code != exitInconclusive || !strings.HasPrefix(stdout, "verdict: INCONCLUSIVE\n") || !strings.Contains(stdout, verifier.ReasonDecoy) {
		t.Fatalf("exit %d, want 4:\n%s%s", code, stdout, stderr)
	}
}

// TestFixtureNoHarm: the planted records do not hurt the normal task. The honest fine-tune's held-out
// loss on the definitions task is within 2% of the fine-tune on the same data without the planted
// records (the strip provider), as measured by the provider simulator when it built the fixtures.
func TestFixtureNoHarm(t *testing.T) {
	for _, arch := range []string{"tiny-llama", "tiny-qwen2"} {
		loss := func(b string) float64 {
			var r struct {
				Heldout float64 `json:"heldout_answer_loss"`
			}
			p := filepath.Join(fixturesDir(), arch, b+".json")
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (rebuild with scripts/fixtures.sh %s)", err, arch)
			}
			if err := json.Unmarshal(data, &r); err != nil || r.Heldout <= 0 {
				t.Fatalf("%s: no held-out loss (%v)", p, err)
			}
			return r.Heldout
		}
		honest, clean := loss("honest"), loss("strip")
		t.Logf("%s: held-out answer loss honest %.4f, without planted records %.4f", arch, honest, clean)
		if math.Abs(honest-clean)/clean > 0.02 {
			t.Errorf("%s: honest %.4f vs clean %.4f: more than 2%% apart", arch, honest, clean)
		}
	}
}
