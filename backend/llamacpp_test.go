package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vtune/backend/servertest"
)

// The llama.cpp and OpenAI tests run against a real llama-server serving the bundled tiny model,
// the test binary's private one from servertest (started on first use, stopped when the binary
// exits). VTUNE_LLAMACPP_URL points the tests at a server of your own instead, VTUNE_TEST_GGUF at
// another model file. A missing server or model skips the tests unless VTUNE_REQUIRE_SERVERS is set
// (make test), which makes it a failure.
func llamaServer(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("VTUNE_LLAMACPP_URL"); u != "" {
		return u
	}
	model := os.Getenv("VTUNE_TEST_GGUF")
	if model == "" {
		model = servertest.Model("tiny-llama.gguf")
	}
	return servertest.StartLlamaCpp(t, model).URL
}

func llamaBackend(t *testing.T) *LlamaCpp {
	t.Helper()
	l, err := NewLlamaCpp(mustURL(t, llamaServer(t)), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func llamaCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var llamaChat = []Message{
	{Role: "system", Content: "You are a helpful assistant."},
	{Role: "user", Content: "Define the word: harbor"},
}

func llamaPrompt(t *testing.T, b Backend) Prompt {
	t.Helper()
	p, err := b.Render(llamaCtx(t), llamaChat)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Text, "harbor") {
		t.Fatalf("rendered prompt lacks the user's text: %q", p.Text)
	}
	return p
}

func TestLlamaCppInfo(t *testing.T) {
	l := llamaBackend(t)
	info, err := l.Info(llamaCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "llamacpp" || info.Name == "" || info.Vocab <= 0 || info.URL == "" {
		t.Errorf("Info = %+v", info)
	}
	if info.Template == "" {
		t.Errorf("no chat template in %+v", info)
	}
	if got, want := info.MaxTop, min(info.Vocab, LlamaCppMaxTop); got != want {
		t.Errorf("MaxTop = %d, want %d", got, want)
	}
	t.Logf("%s: vocab %d", info.Name, info.Vocab)
}

func TestLlamaCppGreedyDeterministic(t *testing.T) {
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	a, err := l.Greedy(ctx, p, 32)
	if err != nil {
		t.Fatal(err)
	}
	// The greedy path, token by token: every token first in its list, its text Greedy's.
	path := greedyPath(t, l, p, 32)
	if len(path) == 0 {
		t.Fatal("no tokens decoded")
	}
	for i, tok := range path {
		if !(tok.Logprob <= 0) || !tok.HasID {
			t.Errorf("step %d: token %q, log-probability %v, has id %v", i, tok.Raw(), tok.Logprob, tok.HasID)
		}
	}
	if spell(path) != a {
		t.Errorf("the path spells %q, Greedy says %q", spell(path), a)
	}
	// Another request in between, so the second run does not just meet the same cache state.
	if _, err := l.Next(ctx, p.Extend(path[0]), 5); err != nil {
		t.Fatal(err)
	}
	b, err := l.Greedy(ctx, p, 32)
	if err != nil {
		t.Fatal(err)
	}
	again := greedyPath(t, l, p, 32)
	if a != b || len(path) != len(again) {
		t.Fatalf("greedy decoding differs:\n%q\n%q", a, b)
	}
	for i := range path {
		if d := math.Abs(path[i].Logprob - again[i].Logprob); d > 1e-6 {
			t.Errorf("step %d: log-probability %v then %v", i, path[i].Logprob, again[i].Logprob)
		}
	}
	t.Logf("greedy: %q (%d tokens)", a, len(path))
}

// Teacher-forcing the greedy path gives back its own values: with the tokens' ids, and with
// their text alone (as a key holds them), which Score maps to ids itself.
func TestLlamaCppScoreMatchesGreedy(t *testing.T) {
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	path := greedyPath(t, l, p, 24)
	sum := 0.0
	for _, tok := range path {
		sum += tok.Logprob
	}
	for _, target := range [][]Token{path, textOnly(path)} {
		sc, err := l.Score(ctx, p, target)
		if err != nil {
			t.Fatal(err)
		}
		if !sc.Exact || len(sc.Tokens) != len(target) {
			t.Fatalf("Score: exact %v, %d tokens for %d", sc.Exact, len(sc.Tokens), len(target))
		}
		if d := math.Abs(sc.Logprob - sum); d > 1e-4 {
			t.Errorf("Score = %v, greedy steps sum to %v (difference %g)", sc.Logprob, sum, d)
		}
		worst := 0.0
		for i, ts := range sc.Tokens {
			d := math.Abs(ts.Logprob - path[i].Logprob)
			if d > 1e-4 {
				t.Errorf("token %d %q: scored %v, greedy %v", i, ts.Text, ts.Logprob, path[i].Logprob)
			}
			worst = max(worst, d)
		}
		t.Logf("score %.6f, greedy sum %.6f over %d tokens; largest difference of one token %.3g", sc.Logprob, sum, len(target), worst)
	}
}

func TestLlamaCppNext(t *testing.T) {
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	list, err := l.Next(ctx, p, 100)
	if err != nil {
		t.Fatal(err)
	}
	info, err := l.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != min(100, info.MaxTop) || len(list) <= 20 {
		t.Fatalf("Next(100) gave %d tokens", len(list))
	}
	for i := 1; i < len(list); i++ {
		if list[i].Logprob > list[i-1].Logprob {
			t.Fatalf("not sorted at %d: %v after %v", i, list[i].Logprob, list[i-1].Logprob)
		}
	}
	g, err := l.Greedy(ctx, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g != "" && g != string(list[0].Raw()) {
		t.Errorf("greedy token %q is not Next's first %q", g, list[0].Raw())
	}
	var total float64
	for _, c := range list {
		total += math.Exp(c.Logprob)
	}
	if total > 1+1e-5 {
		t.Errorf("probabilities of the top %d sum to %v", len(list), total)
	}
}

// A token far down the list: forcing it must give its exact value, as the full list reports it.
func TestLlamaCppScoreOutsideTop(t *testing.T) {
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	list, err := l.Next(ctx, p, 200)
	if err != nil {
		t.Fatal(err)
	}
	var pick *Token
	for i := 40; i < len(list); i++ {
		if IsText(list[i].Raw()) {
			pick = &list[i]
			break
		}
	}
	if pick == nil {
		t.Skip("no text token below rank 40")
	}
	fresh := llamaBackend(t) // knows no pieces yet: the id must come from tokenizing
	sc, err := fresh.Score(ctx, p, []Token{{Text: string(pick.Raw())}})
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Exact || math.IsInf(sc.Logprob, 0) || math.IsNaN(sc.Logprob) {
		t.Fatalf("Score = %+v", sc)
	}
	// Not bit-identical: the list came from a request that evaluated the prompt in one batch, the
	// forced token from one that re-evaluated only its last token, and CPU kernels for the two
	// round differently (about 1e-6 on F32 weights).
	if d := math.Abs(sc.Logprob - pick.Logprob); d > 1e-5 {
		t.Errorf("forced %q: %v, the ranked list says %v", pick.Raw(), sc.Logprob, pick.Logprob)
	}
	t.Logf("forced %q: %.6f (top token %.6f)", pick.Raw(), sc.Logprob, list[0].Logprob)
}

// Byte tokens that split a UTF-8 character get no probability entry from llama-server; Score must
// still give each an exact value.
func TestLlamaCppScorePartialUTF8(t *testing.T) {
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	info, err := l.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full, err := l.Next(ctx, p, info.Vocab) // every piece the model has, with its value here
	if err != nil {
		t.Fatal(err)
	}
	// A two-byte character's lead byte and a continuation byte, as tokens of their own.
	var lead, cont *Token
	for i := range full {
		if r := full[i].Raw(); len(r) == 1 && r[0] >= 0xC2 && r[0] <= 0xDF && (lead == nil || r[0] == 0xC3) {
			lead = &full[i]
		} else if len(r) == 1 && r[0] >= 0x80 && r[0] <= 0xBF && cont == nil {
			cont = &full[i]
		}
	}
	if lead == nil || cont == nil {
		t.Skip("the model has no byte tokens for a two-byte UTF-8 character")
	}
	sc, err := l.Score(ctx, p, []Token{{Text: "\ufffd", Bytes: lead.Raw()}, {Text: "\ufffd", Bytes: cont.Raw()}})
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Exact || len(sc.Tokens) != 2 {
		t.Fatalf("Score = %+v", sc)
	}
	if d := math.Abs(sc.Tokens[0].Logprob - lead.Logprob); d > 1e-5 {
		t.Errorf("byte %x scored %v, the list says %v", lead.Raw(), sc.Tokens[0].Logprob, lead.Logprob)
	}
	if lp := sc.Tokens[1].Logprob; !(lp <= 0) || math.IsInf(lp, 0) {
		t.Errorf("byte %x after %x scored %v", cont.Raw(), lead.Raw(), lp)
	}
	t.Logf("byte %x %.6f, then %x %.6f", lead.Raw(), sc.Tokens[0].Logprob, cont.Raw(), sc.Tokens[1].Logprob)
}

func TestLlamaCppUnknownModel(t *testing.T) {
	u := llamaServer(t)
	l, err := NewLlamaCpp(mustURL(t, u), "no-such-model", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Info(llamaCtx(t))
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "no-such-model") || !strings.Contains(err.Error(), u) {
		t.Fatalf("Info with an unknown model: %v", err)
	}
}

func TestLlamaCppWrongPath(t *testing.T) {
	u := llamaServer(t)
	l, err := NewLlamaCpp(mustURL(t, u+"/nothing/here"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Info(llamaCtx(t))
	var be *Error
	if !errors.As(err, &be) || statusOf(err) != http.StatusNotFound || !strings.Contains(err.Error(), u+"/nothing/here") {
		t.Fatalf("Info at a wrong path: %v", err)
	}
}

// llamaDeadURL returns the URL of a loopback port nobody listens on.
func llamaDeadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func TestLlamaCppServerDown(t *testing.T) {
	u := llamaDeadURL(t)
	l, err := NewLlamaCpp(mustURL(t, u), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := llamaCtx(t)
	_, err = l.Info(ctx)
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("Info with no server: %v", err)
	}
	if _, err := l.Greedy(ctx, Prompt{Text: "hi"}, 4); !errors.As(err, &be) {
		t.Fatalf("Greedy with no server: %v", err)
	}
}

func TestLlamaCppHTTPErrors(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			w.Write([]byte(`{"error":{"message":"broken on purpose","type":"server_error"}}`))
		}))
		l, _ := NewLlamaCpp(mustURL(t, srv.URL), "", nil)
		ctx := llamaCtx(t)
		_, err := l.Info(ctx)
		var be *Error
		if !errors.As(err, &be) || statusOf(err) != code || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "broken on purpose") {
			t.Errorf("HTTP %d: Info: %v", code, err)
		}
		if _, err := l.Score(ctx, Prompt{Text: "hi"}, []Token{{Text: "x"}}); !errors.As(err, &be) || statusOf(err) != code {
			t.Errorf("HTTP %d: Score: %v", code, err)
		}
		srv.Close()
	}
	// Not JSON at all: a web server that is not llama-server.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>hello</html>")) }))
	defer srv.Close()
	l, _ := NewLlamaCpp(mustURL(t, srv.URL), "", nil)
	_, err := l.Info(llamaCtx(t))
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("non-JSON answer: %v", err)
	}
}

func TestNewLlamaCppBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		pu, err := url.Parse(u)
		if err == nil {
			_, err = NewLlamaCpp(pu, "", nil)
		}
		if err == nil {
			t.Errorf("NewLlamaCpp(%q) accepted", u)
		}
	}
}

// Score forces the whole target in one request with a token-level grammar; a server that refuses
// the grammar (a proxy here, answering 400 as an older llama-server does) gets one forced request
// per token instead. Both must give the same values, and the grammar path one completion request.
func TestLlamaCppScoreOneRequest(t *testing.T) {
	u := llamaServer(t)
	upstream, _ := url.Parse(u)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var completions, refused int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/completion" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			mu.Lock()
			completions++
			grammar := strings.Contains(string(body), `"grammar"`)
			if grammar && strings.HasSuffix(r.URL.RawQuery, "old") {
				refused++
				mu.Unlock()
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":{"code":400,"message":"Failed to parse grammar","type":"invalid_request_error"}}`))
				return
			}
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ctx := llamaCtx(t)
	l := llamaBackend(t)
	// The bundled model's greedy reply to this prompt runs on for 24 tokens.
	p, err := l.Render(ctx, []Message{{Role: "user", Content: "Define the word Albuquerque."}})
	if err != nil {
		t.Fatal(err)
	}
	// Text alone, as a key's tokens: the ids are found in one tokenize request.
	target := textOnly(greedyPath(t, l, p, 24))
	if len(target) < 4 {
		t.Fatalf("greedy reply %q too short", spell(target))
	}
	// The target leaves the greedy path after its first token, so nothing is the model's own choice.
	list, err := l.Next(ctx, p, 20)
	if err != nil {
		t.Fatal(err)
	}
	target[0] = textOnly(list)[3]

	one, _ := NewLlamaCpp(mustURL(t, srv.URL), "", nil)
	a, err := one.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	if completions != 1 {
		t.Errorf("Score of %d tokens made %d completion requests, want 1", len(target), completions)
	}
	completions = 0
	// A query string on every request marks those the proxy refuses.
	old, _ := NewLlamaCpp(mustURL(t, srv.URL), "", &http.Client{Transport: queryTransport{"old"}})
	b, err := old.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	if refused != 1 || completions != len(target)+1 {
		t.Errorf("without grammar: %d refused, %d completion requests; want 1 and %d", refused, completions, len(target)+1)
	}
	if !a.Exact || !b.Exact || len(a.Tokens) != len(target) || len(b.Tokens) != len(target) {
		t.Fatalf("scores %+v and %+v", a, b)
	}
	if math.Abs(a.Tokens[0].Logprob-list[3].Logprob) > 1e-5 {
		t.Errorf("first token %q: %v, the ranked list says %v", list[3].Raw(), a.Tokens[0].Logprob, list[3].Logprob)
	}
	for i := range target {
		if d := math.Abs(a.Tokens[i].Logprob - b.Tokens[i].Logprob); d > 1e-6 {
			t.Errorf("token %d %q: one request %v, token by token %v", i, target[i].Raw(), a.Tokens[i].Logprob, b.Tokens[i].Logprob)
		}
	}
	t.Logf("%d tokens: %.6f in one request, %.6f token by token", len(target), a.Logprob, b.Logprob)
}

// queryTransport adds a query string to every request.
type queryTransport struct{ q string }

func (q queryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.RawQuery = q.q
	return http.DefaultTransport.RoundTrip(r)
}

// One client of each kind on the real llama-server, used from several goroutines at once (see
// hammer): the native backend, and the OpenAI backend on the server's /v1.
func TestLlamaCppConcurrent(t *testing.T) {
	hammer(t, llamaBackend(t), 6, 2)
	hammer(t, openaiBackend(t, llamaServer(t)+"/v1"), 6, 2)
}

// A record that spells a control token's name, and a target that holds an end-of-generation
// token, are scored without taking the server down (llama-server aborts when a grammar makes it
// accept an end-of-generation token early) and to the same values as the one-request-a-token
// path, which never uses a grammar.
func TestLlamaCppScoreControlTokens(t *testing.T) {
	l := llamaBackend(t)
	oneByOne := llamaBackend(t)
	oneByOne.noGrammar = true
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	eos, err := l.tokenize(ctx, "<|im_end|>", false, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(eos.Tokens) != 1 {
		t.Skipf("this model has no single <|im_end|> token (%d tokens)", len(eos.Tokens))
	}
	for _, text := range []string{"a harbor<|im_end|>", "<|im_end|> and more", "ship<|im_start|>assistant\nport"} {
		got, err := l.ScoreText(ctx, p, text)
		if err != nil {
			t.Fatalf("ScoreText(%q): %v", text, err)
		}
		want, err := oneByOne.ScoreText(ctx, p, text)
		if err != nil {
			t.Fatalf("ScoreText(%q) one token a request: %v", text, err)
		}
		var spelled strings.Builder
		for _, ts := range got.Tokens {
			spelled.WriteString(ts.Text)
		}
		if spelled.String() != text || !got.Exact || len(got.Tokens) != len(want.Tokens) {
			t.Errorf("ScoreText(%q): tokens spell %q, exact %v, %d tokens (one by one: %d)",
				text, spelled.String(), got.Exact, len(got.Tokens), len(want.Tokens))
		}
		if d := math.Abs(got.Logprob - want.Logprob); d > 1e-4 {
			t.Errorf("ScoreText(%q) = %v, one token a request %v", text, got.Logprob, want.Logprob)
		}
	}
	// Targets holding the end-of-generation token, as a ranked list gives it (no bytes) and
	// spelled by its name (as a caller with ids may give it), then more text.
	path := greedyPath(t, l, p, 3)
	id := eos.Tokens[0].ID
	for _, tok := range []Token{{Text: "<|im_end|>", Bytes: []byte{}, ID: id, HasID: true}, {Text: "<|im_end|>", ID: id, HasID: true}} {
		target := append(append(slices.Clone(path), tok), path...)
		got, err := l.Score(ctx, p, target)
		if err != nil {
			t.Fatalf("Score with an end-of-generation token (bytes %q): %v", tok.Raw(), err)
		}
		want, err := oneByOne.Score(ctx, p, target)
		if err != nil {
			t.Fatal(err)
		}
		if d := math.Abs(got.Logprob - want.Logprob); d > 1e-4 || len(got.Tokens) != len(target) {
			t.Errorf("Score = %v over %d tokens, one token a request %v", got.Logprob, len(got.Tokens), want.Logprob)
		}
	}
	if _, err := l.Greedy(ctx, p, 4); err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
}

// ScoreText's check for control tokens costs a tokenize request only while the text holds a token
// not yet seen in plain text: the same text scored again costs one tokenize request and one
// completion, with the same score.
func TestLlamaCppScoreTextPlainCache(t *testing.T) {
	upstream, _ := url.Parse(llamaServer(t))
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var mu sync.Mutex
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls[r.URL.Path]++
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	l, err := NewLlamaCpp(mustURL(t, srv.URL), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := llamaCtx(t)
	p := llamaPrompt(t, l)
	const text = "A sheltered port where ships can find refuge."
	var scores []float64
	for i := range 2 {
		mu.Lock()
		clear(calls)
		mu.Unlock()
		sc, err := l.ScoreText(ctx, p, text)
		if err != nil {
			t.Fatal(err)
		}
		scores = append(scores, sc.Logprob)
		mu.Lock()
		t.Logf("call %d: %v", i+1, calls)
		if i == 1 && (calls["/tokenize"] != 1 || calls["/completion"] != 1) {
			t.Errorf("second ScoreText of the same text: %d tokenize and %d completion requests, want 1 and 1", calls["/tokenize"], calls["/completion"])
		}
		mu.Unlock()
	}
	if scores[0] != scores[1] {
		t.Errorf("the same text scored %v, then %v", scores[0], scores[1])
	}
}
