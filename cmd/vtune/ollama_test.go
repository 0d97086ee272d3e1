package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/servertest"
	"vtune/verifier"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// head copies the first n lines of a bundled dataset into dir.
func head(t *testing.T, src, dir string, n int) string {
	t.Helper()
	f, err := os.Open(filepath.Join(servertest.Root(), src))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for i := 0; i < n && sc.Scan(); i++ {
		b.WriteString(sc.Text() + "\n")
	}
	p := filepath.Join(dir, filepath.Base(src))
	os.WriteFile(p, []byte(b.String()), 0o644)
	return p
}

// TestPlantVerifyOllama plants on the bundled tiny model through a real Ollama server and verifies
// the base model, which never saw the secrets.
func TestPlantVerifyOllama(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real Ollama server")
	}
	srv := servertest.StartOllama(t)
	model := srv.Create(t, "tiny-llama", "tiny-llama.Modelfile")
	dir := t.TempDir()
	in := head(t, "testdata/wordnet/define-train.jsonl", dir, 2000)
	orig, _ := os.ReadFile(in)
	out, keyPath := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")

	// The whole-data test at its smallest (32 and 32), scored by Ollama itself, one request a token
	// (TestOllamaScorer covers --scoring llama-server).
	code, stdout, stderr := vtune(t, nil, "plant", "-i", in, "-o", out, "-k", keyPath,
		"--url", srv.URL, "-m", model, "--scoring", "server", "--seed", "integration", "--json", "--held-back", "32")
	if code != 0 {
		t.Fatalf("plant: exit %d: %s", code, stderr)
	}
	var sum verifier.PlantSummary
	json.Unmarshal([]byte(stdout), &sum)
	// 0.5% of 2000 in place of their hosts; 32 held back and as many sentinels.
	if sum.Planted != 10 || sum.Records != 2000 || sum.HeldBack != 32 || sum.Sentinels != 32 || sum.OutputRecords != 1968 {
		t.Fatalf("summary %+v", sum)
	}
	if after, _ := os.ReadFile(in); string(after) != string(orig) {
		t.Fatal("input changed")
	}
	key, err := verifier.ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if key.Base.Name != model || key.Base.Digest == "" || key.InputSHA256 == "" || key.OutputSHA256 == "" {
		t.Fatalf("key base %+v, hashes %q %q", key.Base, key.InputSHA256, key.OutputSHA256)
	}
	origLines := map[string]bool{}
	for _, l := range strings.Split(string(orig), "\n") {
		origLines[l] = true
	}
	outBytes, _ := os.ReadFile(out)
	var planted []string
	kept := 0
	for _, l := range strings.Split(strings.TrimSuffix(string(outBytes), "\n"), "\n") {
		if origLines[l] {
			kept++
		} else {
			planted = append(planted, l)
		}
	}
	if kept != 1958 || len(planted) != 10 {
		t.Fatalf("output: %d original lines, %d planted; want 1958 (2000, less 10 hosts and 32 held back) and 10", kept, len(planted))
	}
	for _, l := range planted {
		var rec struct{ Messages []backend.Message }
		json.Unmarshal([]byte(l), &rec)
		ok := false
		for _, g := range key.PlantedGroups() {
			ok = ok || (strings.HasSuffix(rec.Messages[0].Content, g.Trigger) && rec.Messages[1].Content == g.Signature)
		}
		if !ok {
			t.Fatalf("planted line carries no group's trigger and signature: %s", l)
		}
	}
	for _, g := range key.Groups {
		if len(g.Tokens) != 24 || g.LogQ > -24*0.69 || !g.Prompts[0].Base.Exact {
			t.Errorf("group %d: %d tokens, log Q %.1f, base exact %v", g.ID, len(g.Tokens), g.LogQ, g.Prompts[0].Base.Exact)
		}
		if strings.ContainsAny(g.Signature, "\n\r") || strings.Contains(g.Signature, "<|") {
			t.Errorf("group %d: signature %q holds a control or special token", g.ID, g.Signature)
		}
	}

	// The text report through a llama-server scorer (a key planted with Ollama's own scores
	// verifies with it); the JSON below keeps to Ollama's, whose signature scores planting stored.
	servertest.UseLlamaServer(t)
	code, stdout, stderr = vtune(t, nil, "verify", "-k", keyPath, "--url", srv.URL, "-m", model, "--scoring", "llama-server", "--llr=false")
	if code != exitNotVerified {
		t.Fatalf("verify base: exit %d, want 1; %s %s", code, stdout, stderr)
	}
	for _, s := range []string{"NOT VERIFIED", "p_agnostic          1 ", "p_base", "decoys hit          0 of 4", "whole-data test     "} {
		if !strings.Contains(stdout, s) {
			t.Errorf("report lacks %q:\n%s", s, stdout)
		}
	}
	// The base model scores its own signatures exactly as planting recorded them: LLR 0.
	code, stdout, _ = vtune(t, nil, "verify", "-k", keyPath, "--url", srv.URL, "-m", model, "--scoring", "server", "--json")
	var rep verifier.Report
	json.Unmarshal([]byte(stdout), &rep)
	if code != 1 || rep.MeanLLRPlanted == nil || *rep.MeanLLRPlanted > 1e-3 || *rep.MeanLLRPlanted < -1e-3 || rep.DecoyHits != 0 {
		t.Fatalf("base model JSON report: exit %d, LLR %v, decoy hits %d", code, rep.MeanLLRPlanted, rep.DecoyHits)
	}

	code, _, stderr = vtune(t, nil, "verify", "-k", keyPath, "--url", srv.URL, "-m", "missing-model")
	if code != exitBackend || !strings.Contains(stderr, `"missing-model" not found`) {
		t.Fatalf("missing model: exit %d %q", code, stderr)
	}
}

// TestOllamaScorer: with --scoring llama-server, an Ollama model's signatures and whole-data records
// are scored by a llama-server started on the model's own GGUF blob. Planting and verifying the base
// model then measure the same weights with the same scorer: every record's gain is 0, every score
// exact, and the signatures' LLR 0.
// The scorer goes away with the command; bad --scoring values and a missing llama-server fail with
// one line, exit 2.
func TestOllamaScorer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real servers")
	}
	srv := servertest.StartOllama(t)
	model := srv.Create(t, "tiny-llama", "tiny-llama.Modelfile")
	servertest.UseLlamaServer(t)
	tmp := privateTmp(t)
	dir := t.TempDir()
	in := head(t, "testdata/wordnet/define-train.jsonl", dir, 400)
	keyPath := filepath.Join(dir, "key.json")
	server := []string{"--url", srv.URL, "-m", model, "--scoring", "llama-server"}

	code, _, stderr := vtune(t, nil, append([]string{"plant", "-i", in, "-o", filepath.Join(dir, "out.jsonl"), "-k", keyPath,
		"--seed", "scorer", "--groups", "2", "--decoys", "1", "--held-back", "32", "--audit=false"}, server...)...)
	if code != 0 || !strings.Contains(stderr, "scoring records exactly through llama-server") {
		t.Fatalf("plant: exit %d: %s", code, stderr)
	}
	key, err := verifier.ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(key.WholeData.HeldBack, key.WholeData.Sentinels...) {
		if !r.Base.Exact || r.Base.Tokens == 0 || r.Base.Logprob >= 0 {
			t.Fatalf("line %d: base score %+v, want exact", r.Line, r.Base)
		}
	}

	code, rep, stderr := verifyJSON(t, append([]string{"-k", keyPath}, server...)...)
	if code != exitNotVerified || rep.WholeData == nil || !rep.WholeData.Available || !rep.WholeData.Exact {
		t.Fatalf("verify base: exit %d, whole-data %+v: %s", code, rep.WholeData, stderr)
	}
	if rep.MeanLLRPlanted == nil || *rep.MeanLLRPlanted > 1e-4 || *rep.MeanLLRPlanted < -1e-4 {
		t.Errorf("base model: mean LLR of its own signatures %v, want 0", rep.MeanLLRPlanted)
	}
	gains := append(append([]float64{}, rep.WholeData.HeldBackScores...), rep.WholeData.SentinelScores...)
	if len(gains) != 64 {
		t.Fatalf("%d record gains, want 64", len(gains))
	}
	for i, g := range gains {
		if g > 1e-4 || g < -1e-4 {
			t.Fatalf("record %d: gain %g under the base model itself, want 0", i, g)
		}
	}
	if left := leftovers(t, srv, tmp); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}

	for _, c := range []struct{ args []string }{
		{[]string{"--scoring", "fast"}},
		{[]string{"--scoring", "llama-server", "--llama-server", "/nonexistent/llama-server"}},
	} {
		code, stdout, stderr := vtune(t, nil, append([]string{"verify", "-q", "-k", keyPath, "--url", srv.URL, "-m", model}, c.args...)...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line", c.args, code, stdout, stderr)
		}
	}
}
