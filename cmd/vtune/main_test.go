package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"vtune/backend"
	"vtune/backend/fake"
	"vtune/verifier"
)

// vtune runs the command line in-process with the given models by name and returns exit code,
// stdout and stderr.
func vtune(t *testing.T, models map[string]backend.Backend, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	open := func(c *cli.Context, key *verifier.Key, tg target) (backend.Backend, error) {
		if m, ok := models[tg.Model]; ok {
			return m, nil
		}
		return openBackend(c, key, tg)
	}
	code := run(context.Background(), append([]string{"vtune"}, args...), &stdout, &stderr, open)
	return code, stdout.String(), stderr.String()
}

func writeDataset(t *testing.T, dir string, n int) string {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"instruction":"Define the word w%d.","input":"","output":"a sense %d"}`+"\n", i, i)
	}
	p := filepath.Join(dir, "data.jsonl")
	os.WriteFile(p, b.Bytes(), 0o644)
	return p
}

// TestPlantVerifyFake runs the whole loop through the command line with in-process models: a base
// model that never saw the secrets, and a "fine-tune" that learned every planted pair.
func TestPlantVerifyFake(t *testing.T) {
	dir := t.TempDir()
	in := writeDataset(t, dir, 1000)
	out, key := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")
	base := fake.New("base")
	code, stdout, stderr := vtune(t, map[string]backend.Backend{"base": base},
		"plant", "-i", in, "-o", out, "-k", key, "-m", "base", "--seed", "demo", "--sig-len", "16", "--json")
	if code != 0 {
		t.Fatalf("plant: exit %d: %s", code, stderr)
	}
	var sum verifier.PlantSummary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("plant --json: %v: %s", err, stdout)
	}
	// 0.5% of 1000 records is 5, raised to one per group: 8.
	if sum.Planted != 8 || sum.Records != 1000 || sum.Groups != 8 || sum.Decoys != 4 {
		t.Fatalf("summary %+v", sum)
	}

	k, err := verifier.ReadKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tuned := fake.New("tuned")
	for _, g := range k.PlantedGroups() {
		tuned.Learn(g.Prompts[0].Messages, g.Signature)
	}
	models := map[string]backend.Backend{"base": fake.New("base"), "tuned": tuned}

	// 1000 records are too few to hold records back: the data share cannot be shown, so the
	// verdict rests on the secrets only when asked to (--min-share 0).
	code, stdout, _ = vtune(t, models, "verify", "-k", key, "-m", "tuned")
	if code != exitNotVerified || !strings.Contains(stdout, "reason: "+verifier.ReasonNoData) || !strings.Contains(stdout, "too small") {
		t.Fatalf("verify tuned without a whole-data test: exit %d:\n%s", code, stdout)
	}
	code, stdout, stderr = vtune(t, models, "verify", "-k", key, "-m", "tuned", "--json", "--min-share", "0")
	if code != exitVerified {
		t.Fatalf("verify tuned: exit %d, stderr %s", code, stderr)
	}
	var rep verifier.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	want := math.Log10(255)
	for _, g := range k.PlantedGroups() {
		want += g.LogQ / math.Ln10
	}
	if rep.Hits != 8 || rep.DecoyHits != 0 || math.Abs(rep.Log10PAgnostic-want) > 1e-9 {
		t.Fatalf("tuned: hits %d decoys %d log10 p %v (want %v)", rep.Hits, rep.DecoyHits, rep.Log10PAgnostic, want)
	}

	code, stdout, _ = vtune(t, models, "verify", "-k", key, "-m", "base")
	if code != exitNotVerified {
		t.Fatalf("verify base: exit %d, want 1", code)
	}
	for _, s := range []string{"NOT VERIFIED", "p_agnostic          1", "p_base", "decoys hit          0 of 4"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("base report lacks %q:\n%s", s, stdout)
		}
	}

	code, stdout, _ = vtune(t, nil, "inspect", "-k", key)
	if code != 0 || strings.Contains(stdout, k.Groups[0].Signature) || !strings.Contains(stdout, "hidden") {
		t.Fatalf("inspect revealed or failed (exit %d):\n%s", code, stdout)
	}
	code, stdout, _ = vtune(t, nil, "inspect", "-k", key, "--reveal")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("%q", k.Groups[0].Signature)) {
		t.Fatalf("inspect --reveal (exit %d):\n%s", code, stdout)
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := writeDataset(t, dir, 300)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"instruction":"a","output":"b"}`+"\n"+`{"instruction":`+"\n"), 0o644)
	base := fake.New("base")
	models := map[string]backend.Backend{"base": base}
	key := filepath.Join(dir, "key.json")
	out := filepath.Join(dir, "out.jsonl")
	const v1Key = "../../testdata/keys/v1.json"

	cases := []struct {
		name  string
		args  []string
		code  int
		msg   string
		early bool // refused before the model is asked anything
	}{
		{"malformed", []string{"plant", "-i", bad, "-o", out, "-k", key, "-m", "base"}, exitUsage, "bad.jsonl:2: malformed JSON", false},
		{"output is input", []string{"plant", "-i", good, "-o", good, "-k", key, "-m", "base"}, exitUsage, "is the input", false},
		{"bad mode", []string{"plant", "-i", good, "-o", out, "-k", key, "-m", "base", "--mode", "x"}, exitUsage, "--mode must be", false},
		{"missing flag", []string{"plant", "-i", good, "-k", key, "-m", "base"}, exitUsage, `"output"`, false},
		{"missing key", []string{"verify", "-k", filepath.Join(dir, "nokey.json"), "-m", "base"}, exitUsage, "nokey.json: key file not found", false},
		{"unknown backend", []string{"verify", "-k", key, "-m", "x", "--backend", "nope"}, exitUsage, "", false},
		{"server down", []string{"plant", "-i", good, "-o", out, "-k", key, "-m", "tiny", "--url", "http://127.0.0.1:9"}, exitBackend, "http://127.0.0.1:9", false},
		{"heldout is output", []string{"plant", "-i", good, "-o", out, "-k", key, "-m", "base", "--heldout", out}, exitUsage, "held-out file " + out + " is the input, the output or the key", true},
		{"NaN rate", []string{"plant", "-i", good, "-o", out, "-k", key, "-m", "base", "--rate", "NaN"}, exitUsage, "--rate must be between 0 and 1", true},
		{"empty seed", []string{"plant", "-i", good, "-o", out, "-k", key, "-m", "base", "--seed", ""}, exitUsage, "--seed is empty", true},
		{"NaN alpha", []string{"verify", "-k", v1Key, "-m", "base", "--alpha", "NaN"}, exitUsage, "--alpha must be between 0 and 1", true},
		{"infinite alpha", []string{"verify", "-k", v1Key, "-m", "base", "--alpha", "+Inf"}, exitUsage, "--alpha must be between 0 and 1", true},
		{"NaN alpha-data", []string{"verify", "-k", v1Key, "-m", "base", "--alpha-data", "NaN"}, exitUsage, "--alpha-data must be between 0 and 1", true},
		{"min share 1", []string{"verify", "-k", v1Key, "-m", "base", "--min-share", "1"}, exitUsage, "--min-share must be in [0, 1)", true},
	}
	for _, c := range cases {
		clear(base.Calls)
		code, _, stderr := vtune(t, models, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", c.name, code, stderr, c.code, c.msg)
		}
		if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && c.code != exitUsage {
			t.Errorf("%s: error is more than one line: %q", c.name, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: left %s behind", c.name, out)
		}
		// Bad flags are refused before any work: the model was never asked anything.
		if c.early && len(base.Calls) > 0 {
			t.Errorf("%s: the model was called (%v) before the flags were checked", c.name, base.Calls)
		}
	}
	// An unreadable key: the process runs as root in CI, so make it a directory instead.
	os.Mkdir(filepath.Join(dir, "dirkey"), 0o755)
	if code, _, stderr := vtune(t, models, "verify", "-k", filepath.Join(dir, "dirkey"), "-m", "base"); code != exitUsage || !strings.Contains(stderr, "dirkey: cannot read key") {
		t.Errorf("key is a directory: exit %d %q", code, stderr)
	}
	// A key is never overwritten without --force.
	os.WriteFile(key, []byte("{}"), 0o600)
	if code, _, stderr := vtune(t, models, "plant", "-i", good, "-o", out, "-k", key, "-m", "base"); code != exitUsage || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("existing key: exit %d %q", code, stderr)
	}
	if b, _ := os.ReadFile(key); string(b) != "{}" {
		t.Error("existing key was changed")
	}
	// Nor is a key at the output path replaced by a dataset.
	if code, _, stderr := vtune(t, models, "plant", "-i", good, "-o", v1Key, "-k", filepath.Join(dir, "new.json"), "-m", "base"); code != exitUsage || !strings.Contains(stderr, "is a vtune key") {
		t.Errorf("output over a key: exit %d %q", code, stderr)
	}
}

// A version 1 key (before the whole-data test) still verifies the secrets, and the report says the
// whole-data test is missing; --heldout in another format than the dataset is refused naming the
// file, exit 2, with nothing written.
func TestOldKeyAndHeldoutFormat(t *testing.T) {
	models := map[string]backend.Backend{"base": fake.New("base")}
	code, stdout, stderr := vtune(t, models, "verify", "-k", "../../testdata/keys/v1.json", "-m", "base")
	if code != exitNotVerified || !strings.Contains(stdout, "version 1 key has no held-back records") {
		t.Fatalf("v1 key: exit %d:\n%s%s", code, stdout, stderr)
	}

	dir := t.TempDir()
	in := writeDataset(t, dir, 3000) // Alpaca
	heldout := filepath.Join(dir, "heldout.jsonl")
	os.WriteFile(heldout, []byte(`{"prompt":"a","completion":"b"}`+"\n"), 0o644)
	out, key := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")
	code, stdout, stderr = vtune(t, models, "plant", "-i", in, "-o", out, "-k", key, "-m", "base", "--heldout", heldout)
	if code != exitUsage || !strings.HasPrefix(stderr, "vtune: "+heldout+": held-out records are prompt-completion, the dataset's are alpaca") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("heldout in another format: exit %d: %q", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written despite the error")
	}
	if _, err := os.Stat(key); err == nil {
		t.Error("key written despite the error")
	}

	// The same format: held-back records come from that file, the output keeps every record,
	// and the report will call the test not guaranteed.
	var b bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&b, `{"instruction":"Define the word h%d.","input":"","output":"a held sense %d"}`+"\n", i, i)
	}
	os.WriteFile(heldout, b.Bytes(), 0o644)
	code, stdout, stderr = vtune(t, models, "plant", "-i", in, "-o", out, "-k", key, "-m", "base", "--heldout", heldout, "--json")
	var sum verifier.PlantSummary
	if code != 0 || json.Unmarshal([]byte(stdout), &sum) != nil {
		t.Fatalf("plant --heldout: exit %d: %s", code, stderr)
	}
	k, err := verifier.ReadKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if sum.OutputRecords != 3000 || sum.HeldBack != 60 || k.WholeData.Guaranteed() || !strings.Contains(k.WholeData.HeldBack[0].Answer, "held sense") {
		t.Fatalf("plant --heldout: summary %+v", sum)
	}
	if !strings.HasPrefix(sum.Audit, "audit: ") {
		t.Errorf("plant summary has no audit line: %q", sum.Audit)
	}
}

// A usage error is one line on stderr and nothing on stdout, where --json output goes.
func TestUsageErrorOnStderrOnly(t *testing.T) {
	for _, args := range [][]string{{"verify", "--nope"}, {"plant", "--json", "--rate"}, {"--nope"}} {
		code, stdout, stderr := vtune(t, nil, args...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--help)") {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q", args, code, len(stdout), stderr)
		}
	}
}

// A chat dataset whose records cannot carry a secret (no assistant turn) is refused naming the file
// and the reason, exit 2.
func TestNoAssistantTurn(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "chat.jsonl")
	var b bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"question %d"}]}`+"\n", i)
	}
	os.WriteFile(in, b.Bytes(), 0o644)
	code, _, stderr := vtune(t, map[string]backend.Backend{"base": fake.New("base")},
		"plant", "-i", in, "-o", filepath.Join(dir, "out.jsonl"), "-k", filepath.Join(dir, "key.json"), "-m", "base")
	if code != exitUsage || !strings.HasPrefix(stderr, "vtune: "+in+": ") || !strings.Contains(stderr, "must end with an assistant turn") {
		t.Fatalf("exit %d: %q", code, stderr)
	}
}

// A server that accepts the connection and never answers ends the run within --timeout, exit 3,
// with one line naming the server.
func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 64)
	defer func() {
		ln.Close()
		close(conns)
		for c := range conns {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c // accepted, never answered
		}
	}()
	url := "http://" + ln.Addr().String()
	for _, b := range []string{"ollama", "llamacpp", "openai"} {
		start := time.Now()
		code, _, stderr := vtune(t, nil, "verify", "-k", "../../testdata/keys/v1.json", "--backend", b, "--url", url, "-m", "m", "--timeout", "300ms")
		if code != exitBackend || !strings.Contains(stderr, url) || !strings.Contains(stderr, "no answer in time") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d after %v: %q", b, code, time.Since(start), stderr)
		}
		if d := time.Since(start); d > time.Minute {
			t.Errorf("%s: took %v", b, d)
		}
	}
}

// A server answering with an HTML error page gives one line, not the page, exit 3.
func TestHTMLErrorPageOneLine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n</body>\n</html>\n")
	}))
	defer srv.Close()
	for _, b := range []string{"ollama", "llamacpp", "openai"} {
		code, _, stderr := vtune(t, nil, "verify", "-k", "../../testdata/keys/v1.json", "--backend", b, "--url", srv.URL, "-m", "m")
		if code != exitBackend || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "502") || strings.Contains(stderr, "<") {
			t.Errorf("%s: exit %d: %q", b, code, stderr)
		}
	}
}

// inspect prints the key file's SHA-256, the commitment SECURITY.md says to publish.
func TestInspectCommitment(t *testing.T) {
	const path = "../../testdata/keys/v1.json"
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	code, stdout, stderr := vtune(t, nil, "inspect", "-k", path)
	if code != 0 || !strings.Contains(stdout, "commitment  sha256 "+hex.EncodeToString(sum[:])) {
		t.Fatalf("exit %d:\n%s%s", code, stdout, stderr)
	}
}

// A record the planting skips (no assistant turn) must not turn a finished plant into a failure
// at the audit: the dataset and key are written, exit 0, the summary says what the audit did.
func TestPlantWithAnUnusableRecord(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "chat.jsonl")
	var b bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"Define w%d."},{"role":"assistant","content":"sense %d"}]}`+"\n", i, i)
	}
	b.WriteString(`{"messages":[{"role":"user","content":"Define nothing."}]}` + "\n")
	os.WriteFile(in, b.Bytes(), 0o644)
	out, key := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")
	code, stdout, stderr := vtune(t, map[string]backend.Backend{"base": fake.New("base")}, "plant", "-i", in, "-o", out, "-k", key, "-m", "base", "--json")
	var sum verifier.PlantSummary
	if code != 0 || json.Unmarshal([]byte(stdout), &sum) != nil || !strings.HasPrefix(sum.Audit, "audit: the strongest") {
		t.Fatalf("exit %d, summary %+v: %s", code, sum, stderr)
	}
	t.Log(sum.Audit)
}
