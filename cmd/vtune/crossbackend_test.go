package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/fake"
	"vtune/backend/servertest"
	"vtune/verifier"
)

// The same bundled GGUF served by both real servers: a key planted through one must verify the same
// way through the other, since the two compute the same greedy text and the same log-probabilities.

type crossServers struct {
	llamaURL, ollamaURL, ollamaModel, llamaModel string
}

func startBoth(t *testing.T) crossServers {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Ollama and llama.cpp servers")
	}
	l := servertest.StartLlamaCpp(t, servertest.Model("tiny-llama.gguf"))
	o := servertest.StartOllama(t)
	return crossServers{llamaURL: l.URL, llamaModel: l.Name, ollamaURL: o.URL, ollamaModel: o.Create(t, "tiny-llama", "tiny-llama.Modelfile")}
}

func (s crossServers) args(be string) []string {
	if be == "llamacpp" {
		return []string{"--backend", "llamacpp", "--url", s.llamaURL}
	}
	return []string{"--backend", "ollama", "--url", s.ollamaURL, "-m", s.ollamaModel}
}

func crossVerify(t *testing.T, s crossServers, be, key string) verifier.Report {
	t.Helper()
	code, stdout, stderr := vtune(t, nil, append(append([]string{"verify", "-k", key}, s.args(be)...), "--json", "--reveal")...)
	if code != exitNotVerified {
		t.Fatalf("verify the base model through %s: exit %d, want %d (not verified): %s", be, code, exitNotVerified, stderr)
	}
	var rep verifier.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("verify --json through %s: %v: %s", be, err, stdout)
	}
	return rep
}

// TestCrossBackendPlantVerify plants through llama.cpp and verifies through Ollama, and the
// reverse, each time also verifying through the planting stack itself. The model under test is the
// base model, which never saw the secrets: not verified, p_agnostic 1, no decoy hit, on both
// stacks alike; and the base model's scores of its own signatures, recorded at planting, cancel
// when the same stack computes them again (log-likelihood ratio about 0).
func TestCrossBackendPlantVerify(t *testing.T) {
	s := startBoth(t)
	for _, c := range []struct{ plant, other string }{{"llamacpp", "ollama"}, {"ollama", "llamacpp"}} {
		t.Run(c.plant+"-then-"+c.other, func(t *testing.T) {
			dir := t.TempDir()
			in := head(t, "testdata/wordnet/define-train.jsonl", dir, 1000)
			out, key := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")
			code, _, stderr := vtune(t, nil, append([]string{"plant", "-i", in, "-o", out, "-k", key, "--seed", "cross-" + c.plant, "-q"}, s.args(c.plant)...)...)
			if code != 0 {
				t.Fatalf("plant through %s: exit %d: %s", c.plant, code, stderr)
			}
			k, err := verifier.ReadKey(key)
			if err != nil {
				t.Fatal(err)
			}
			if k.Base.Backend != c.plant {
				t.Errorf("key names base backend %q, want %q", k.Base.Backend, c.plant)
			}
			same := crossVerify(t, s, c.plant, key)
			other := crossVerify(t, s, c.other, key)
			for _, r := range []struct {
				be  string
				rep verifier.Report
			}{{c.plant, same}, {c.other, other}} {
				if r.rep.Verified || r.rep.Hits != 0 || r.rep.DecoyHits != 0 || r.rep.Log10PAgnostic != 0 || r.rep.Planted != 8 || r.rep.Decoys != 4 {
					t.Errorf("through %s: verified %v, hits %d of %d, decoy hits %d of %d, log10 p_agnostic %v; want not verified, 0 of 8, 0 of 4, 0",
						r.be, r.rep.Verified, r.rep.Hits, r.rep.Planted, r.rep.DecoyHits, r.rep.Decoys, r.rep.Log10PAgnostic)
				}
			}
			if same.Verified != other.Verified || same.Hits != other.Hits || same.DecoyHits != other.DecoyHits ||
				same.Log10PAgnostic != other.Log10PAgnostic || len(same.Groups) != len(other.Groups) {
				t.Fatalf("verdicts differ: %s %+v, %s %+v", c.plant, same, c.other, other)
			}
			if math.Abs(same.Log10PBase-other.Log10PBase) > 1e-9 {
				t.Errorf("p_base: %s %v, %s %v (both come from the key)", c.plant, same.Log10PBase, c.other, other.Log10PBase)
			}
			for i, g := range same.Groups {
				h := other.Groups[i]
				if g.ID != h.ID || g.Hit != h.Hit || len(g.Prompts) != len(h.Prompts) {
					t.Fatalf("group %d: %s %+v, %s %+v", g.ID, c.plant, g, c.other, h)
				}
				for j := range g.Prompts {
					if *g.Prompts[j].Output != *h.Prompts[j].Output {
						t.Errorf("group %d prompt %d: greedy output through %s %q, through %s %q", g.ID, j, c.plant, *g.Prompts[j].Output, c.other, *h.Prompts[j].Output)
					}
				}
				// The planting stack scores exactly what it recorded. The other stack's LLR is not
				// held to 0: llama.cpp forces the signature's own tokens, while Ollama, which cannot
				// force a token, reads each one after the text so far, and where two pieces merge
				// into one token when read back ("end" + "ed" as "ended") the contexts differ.
				if g.LLR == nil || h.LLR == nil {
					t.Fatalf("group %d: no log-likelihood ratio", g.ID)
				}
				if math.Abs(*g.LLR) > 1e-3 {
					t.Errorf("group %d: LLR through the planting stack %s: %v, want 0", g.ID, c.plant, *g.LLR)
				}
			}
			t.Logf("planted through %s; both stacks: not verified, 0 hits, log10 p_agnostic %v, log10 p_base %.3g; mean LLR %s %.2g, %s %.2g",
				c.plant, same.Log10PAgnostic, same.Log10PBase, c.plant, *same.MeanLLRPlanted, c.other, *other.MeanLLRPlanted)
		})
	}
}

// A server that fails, through the command line, for each backend: exit 3 and one line that names
// the URL, and the model where the model is at fault.
func TestBackendErrorsCLI(t *testing.T) {
	s := startBoth(t)
	dir := t.TempDir()
	in := writeDataset(t, dir, 200)
	out, key := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "key.json")
	// A key for the verify runs, planted on an in-process model.
	if code, _, stderr := vtune(t, map[string]backend.Backend{"base": fake.New("base")}, "plant", "-i", in, "-o", filepath.Join(dir, "fake.jsonl"), "-k", key, "-m", "base", "-q"); code != 0 {
		t.Fatalf("plant on the fake model: exit %d: %s", code, stderr)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	type tc struct {
		name string
		args []string
		want []string // in the message
	}
	cases := []tc{
		{"ollama not running", []string{"--backend", "ollama", "--url", dead, "-m", "tiny"}, []string{dead, "cannot reach"}},
		{"llamacpp not running", []string{"--backend", "llamacpp", "--url", dead}, []string{dead, "cannot reach"}},
		{"openai not running", []string{"--backend", "openai", "--url", dead + "/v1", "-m", "tiny"}, []string{dead + "/v1", "cannot reach"}},
		{"ollama wrong model", []string{"--backend", "ollama", "--url", s.ollamaURL, "-m", "no-such-model"}, []string{s.ollamaURL, `"no-such-model"`}},
		{"llamacpp wrong model", []string{"--backend", "llamacpp", "--url", s.llamaURL, "-m", "no-such-model"}, []string{s.llamaURL, `"no-such-model"`}},
		{"openai wrong model", []string{"--backend", "openai", "--url", s.llamaURL + "/v1", "-m", "no-such-model"}, []string{s.llamaURL + "/v1", `"no-such-model"`}},
		// A URL that reaches a live server but not its API: a wrong path, or another stack's port.
		{"llamacpp wrong path", []string{"--backend", "llamacpp", "--url", s.llamaURL + "/nothing/here"}, []string{s.llamaURL + "/nothing/here", "404"}},
		{"openai wrong path", []string{"--backend", "openai", "--url", s.llamaURL + "/nothing/v1", "-m", s.llamaModel}, []string{s.llamaURL + "/nothing/v1", "404"}},
		{"llamacpp at the Ollama server", []string{"--backend", "llamacpp", "--url", s.ollamaURL}, []string{s.ollamaURL}},
		{"ollama at the llama.cpp server", []string{"--backend", "ollama", "--url", s.llamaURL, "-m", s.ollamaModel}, []string{s.llamaURL}},
	}
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			w.Write([]byte(`{"error":{"message":"broken on purpose","type":"server_error"}}`))
		}))
		defer srv.Close()
		st, http := http.StatusText(code), fmt.Sprintf("HTTP %d", code)
		// Ollama's own client reports neither the status nor, for 401, the server's message
		// (see the report of this suite): only the URL is asked of it.
		cases = append(cases,
			tc{"ollama " + st, []string{"--backend", "ollama", "--url", srv.URL, "-m", "tiny"}, []string{srv.URL}},
			tc{"llamacpp " + st, []string{"--backend", "llamacpp", "--url", srv.URL}, []string{srv.URL, http, "broken on purpose"}},
			tc{"openai " + st, []string{"--backend", "openai", "--url", srv.URL + "/v1", "-m", "tiny", "--api-key", "k"}, []string{srv.URL + "/v1", http, "broken on purpose"}},
		)
	}
	for _, c := range cases {
		for _, cmd := range [][]string{
			{"plant", "-i", in, "-o", out, "-k", filepath.Join(dir, "new.json"), "--seed", "x", "-q"},
			{"verify", "-k", key, "-q"},
		} {
			code, _, stderr := vtune(t, nil, append(cmd, c.args...)...)
			msg := strings.TrimSpace(stderr)
			if code != exitBackend {
				t.Errorf("%s: %s: exit %d, want %d: %q", c.name, cmd[0], code, exitBackend, msg)
				continue
			}
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "vtune: ") {
				t.Errorf("%s: %s: message is not one line: %q", c.name, cmd[0], msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s: %s: message %q does not say %q", c.name, cmd[0], msg, w)
				}
			}
			if cmd[0] == "verify" {
				t.Logf("%s: %s", c.name, msg)
			}
		}
	}

	// A URL that is not one at all is bad usage (exit 2), not a server failure: nothing was asked.
	for _, c := range [][]string{
		{"--backend", "ollama", "--url", "127.0.0.1:11434", "-m", "tiny"},
		{"--backend", "llamacpp", "--url", "localhost:8080"},
		{"--backend", "openai", "--url", "ftp://127.0.0.1/v1", "-m", "tiny"},
	} {
		code, _, stderr := vtune(t, nil, append([]string{"verify", "-k", key, "-q"}, c...)...)
		msg := strings.TrimSpace(stderr)
		if code != exitUsage || strings.Contains(msg, "\n") || !strings.Contains(msg, c[3]) || !strings.Contains(msg, "URL") {
			t.Errorf("%s --url %s: exit %d %q; want exit %d and one line naming the URL", c[1], c[3], code, msg, exitUsage)
		}
	}
}
