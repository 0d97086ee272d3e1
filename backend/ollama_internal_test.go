package backend

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vtune/backend/servertest"
)

// Ollama's ScoreText reads the ranked lists off greedy decoding while the greedy path follows the
// text; it must give exactly what asking for the list at every step gives (the lists are computed
// from the raw logits, whatever the sampler), in fewer requests for a text the model would say.
func TestOllamaScoreTextFollowsGreedy(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real Ollama server")
	}
	o := tinyOllamaHere(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := o.Render(ctx, []Message{{Role: "user", Content: "Define the word harbor."}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := o.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{
		g, // the model's own answer: the greedy path follows it throughout
		"a sheltered port where ships can take on or discharge cargo",
		"zqxj unlisted, wörds\tand 日本",
	} {
		fast, err := o.ScoreText(ctx, p, text)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := scoreTextByLists(ctx, o.Next, OllamaMaxTop, p, text)
		if err != nil {
			t.Fatal(err)
		}
		if len(fast.Tokens) != len(slow.Tokens) || fast.Exact != slow.Exact || math.Abs(fast.Logprob-slow.Logprob) > 1e-6 {
			t.Fatalf("%q: greedy-following %v (%d tokens, exact %v), step by step %v (%d, %v)",
				text, fast.Logprob, len(fast.Tokens), fast.Exact, slow.Logprob, len(slow.Tokens), slow.Exact)
		}
		for i := range fast.Tokens {
			if fast.Tokens[i].Text != slow.Tokens[i].Text || math.Abs(fast.Tokens[i].Logprob-slow.Tokens[i].Logprob) > 1e-6 {
				t.Fatalf("%q token %d: %+v vs %+v", text, i, fast.Tokens[i], slow.Tokens[i])
			}
		}
		t.Logf("%q: %d tokens, log P %.4f, exact %v", text, len(fast.Tokens), fast.Logprob, fast.Exact)
	}
	// Score walks the same way: the greedy reply's own tokens, and the same tokens shifted by
	// one (a target the greedy path leaves at once).
	target := greedyPath(t, o, p, 24)
	if len(target) == 0 {
		t.Fatal("empty greedy path")
	}
	for _, tg := range [][]Token{target, append(target[1:len(target):len(target)], target[0])} {
		fast, err := o.Score(ctx, p, tg)
		if err != nil {
			t.Fatal(err)
		}
		slow := Score{}
		q := p
		for _, tok := range tg {
			list, err := o.Next(ctx, q, OllamaMaxTop)
			if err != nil {
				t.Fatal(err)
			}
			slow.Add(lookup(list, tok))
			q = q.Extend(tok)
		}
		if len(fast.Tokens) != len(tg) || fast.Exact != slow.Exact || math.Abs(fast.Logprob-slow.Logprob) > 1e-6 {
			t.Fatalf("Score: greedy-following %v (%d tokens, exact %v), step by step %v (exact %v)", fast.Logprob, len(fast.Tokens), fast.Exact, slow.Logprob, slow.Exact)
		}
	}
}

// tinyOllamaHere serves the bundled tiny Llama model on the test binary's private Ollama server.
func tinyOllamaHere(t *testing.T) *Ollama {
	t.Helper()
	srv := servertest.StartOllama(t)
	o, err := NewOllama(mustURL(t, srv.URL), srv.Create(t, "tiny-llama", "tiny-llama.Modelfile"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// OLLAMA_HOST is read as the ollama command reads it (issue: "127.0.0.1" dialled port 80), and a
// URL pasted with the API's path still reaches the server's root.
func TestOllamaURLs(t *testing.T) {
	for env, want := range map[string]string{
		"":                         "http://127.0.0.1:11434",
		"127.0.0.1":                "http://127.0.0.1:11434",
		"0.0.0.0:8080":             "http://0.0.0.0:8080",
		"http://example.com:11435": "http://example.com:11435",
		"https://example.com":      "https://example.com:443",
	} {
		t.Setenv("OLLAMA_HOST", env)
		if got := OllamaURL(); got != want {
			t.Errorf("OLLAMA_HOST=%q: %s, want %s", env, got, want)
		}
	}
	for _, in := range []string{"http://127.0.0.1:11434/api", "http://127.0.0.1:11434/api/", "http://127.0.0.1:11434/"} {
		o, err := NewOllama(mustURL(t, in), "m", nil)
		if err != nil {
			t.Fatalf("NewOllama(%q): %v", in, err)
		}
		if o.url != "http://127.0.0.1:11434" {
			t.Errorf("NewOllama(%q): url %q", in, o.url)
		}
	}
}

// One client on the real Ollama server, used from several goroutines at once (see hammer).
func TestOllamaConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real Ollama server")
	}
	o := tinyOllamaHere(t)
	// Ollama is slow on a busy machine (a request can take a second): fewer at once.
	hammer(t, o, 3, 1)
}

// With OLLAMA_AUTH set, every request carries the token Ollama's own client would send: the user's
// key's signature over the method, the API path (without the base URL's own path) and the time
// in the query.
func TestOllamaSigns(t *testing.T) {
	home := t.TempDir()
	pub, priv, _ := ed25519.GenerateKey(nil)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(home, ".ollama"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".ollama", "id_ed25519"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	var mu sync.Mutex
	signed := map[string]bool{}
	inner := standIn()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/proxy")
		_, sig, _ := strings.Cut(r.Header.Get("Authorization"), ":")
		blob, _ := base64.StdEncoding.DecodeString(sig)
		mu.Lock()
		signed[path] = ed25519.Verify(pub, fmt.Appendf(nil, "%s,%s?ts=%s", r.Method, path, r.URL.Query().Get("ts")), blob)
		mu.Unlock()
		r.URL.Path = path
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()

	for _, auth := range []string{"", "1"} {
		t.Setenv("OLLAMA_AUTH", auth)
		clear(signed)
		o, _ := NewOllama(mustURL(t, srv.URL+"/proxy"), "m", nil)
		p, err := o.Render(context.Background(), []Message{{Role: "user", Content: "hi"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.Greedy(context.Background(), p, 2); err != nil {
			t.Fatal(err)
		}
		want := auth != ""
		for _, path := range []string{"/api/show", "/api/tags", "/api/generate"} {
			if ok, asked := signed[path]; !asked || ok != want {
				t.Errorf("OLLAMA_AUTH=%q: %s asked %v, signed %v", auth, path, asked, ok)
			}
		}
	}
	// No key: a request that must be signed fails, saying why.
	t.Setenv("HOME", t.TempDir())
	o, _ := NewOllama(mustURL(t, srv.URL), "m", nil)
	if _, err := o.Info(context.Background()); err == nil || !strings.Contains(err.Error(), "Ollama key") {
		t.Errorf("no key: %v", err)
	}
}
