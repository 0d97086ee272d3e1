package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
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

// The fine-tune fixtures (scripts/fixtures.sh): for each bundled architecture, a key planted into
// the WordNet definitions, the provider simulator's honest fine-tune and its cheats. The method's
// promises, checked on real fine-tunes through a real server: the honest one is verified with
// p_agnostic <= 1e-40 from one query per group at <= 0.5% planted; every cheat is not verified at
// alpha 1e-6; no decoy ever hits.
func TestFixtureVerdicts(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real Ollama server")
	}
	srv := servertest.StartOllama(t)
	reports := os.Getenv("VTUNE_REPORTS_DIR") // scripts/e2e.sh tabulates the reports
	for _, arch := range []string{"tiny-llama", "tiny-qwen2"} {
		t.Run(arch, func(t *testing.T) {
			dir := filepath.Join(fixturesDir(), arch)
			keyPath := filepath.Join(dir, "key.json")
			key, err := verifier.ReadKey(keyPath)
			if err != nil {
				t.Fatalf("fixture key: %v (rebuild with scripts/fixtures.sh %s)", err, arch)
			}
			if frac := float64(key.Planted) / float64(key.Records+key.Planted); frac > 0.005 {
				t.Errorf("planted fraction %.4f, want at most 0.5%%", frac)
			}
			cases := []struct {
				provider, model string
				verified        bool
			}{
				{"honest", srv.CreateFrom(t, arch+"-honest", filepath.Join(dir, "honest.Modelfile")), true},
				{"base", srv.Create(t, arch, arch+".Modelfile"), false},
				{"strip", srv.CreateFrom(t, arch+"-strip", filepath.Join(dir, "strip.Modelfile")), false},
				{"half", srv.CreateFrom(t, arch+"-half", filepath.Join(dir, "half.Modelfile")), false},
				{"short", srv.CreateFrom(t, arch+"-short", filepath.Join(dir, "short.Modelfile")), false},
			}
			for _, c := range cases {
				code, stdout, stderr := vtune(t, nil, "verify", "-k", keyPath, "--url", srv.URL, "-m", c.model, "--json", "--llr=false")
				var rep verifier.Report
				if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
					t.Fatalf("%s: exit %d, %v: %s", c.provider, code, err, stderr)
				}
				if reports != "" {
					os.WriteFile(filepath.Join(reports, arch+"-"+c.provider+".json"), []byte(stdout), 0o644)
				}
				t.Logf("%-6s hits %d/%d, log10 p_agnostic %.1f, log10 p_base %.1f, decoy hits %d, verified %v",
					c.provider, rep.Hits, rep.Planted, rep.Log10PAgnostic, rep.Log10PBase, rep.DecoyHits, rep.Verified)
				if rep.DecoyHits != 0 {
					t.Errorf("%s: %d decoy hits", c.provider, rep.DecoyHits)
				}
				if rep.Queries != rep.Planted {
					t.Errorf("%s: %d queries for %d groups, want one each", c.provider, rep.Queries, rep.Planted)
				}
				if c.verified {
					if code != exitVerified || rep.Log10PAgnostic > -40 {
						t.Errorf("%s: exit %d, log10 p_agnostic %.1f; want verified with p <= 1e-40", c.provider, code, rep.Log10PAgnostic)
					}
				} else if code != exitNotVerified || rep.Verified {
					t.Errorf("%s: exit %d, log10 p_agnostic %.1f; want not verified at alpha 1e-6", c.provider, code, rep.Log10PAgnostic)
				}
			}
		})
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
