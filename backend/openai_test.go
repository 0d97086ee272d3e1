package backend

import (
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// The OpenAI backend is tested against llama-server's own /v1 endpoints, with the llama.cpp backend
// on the same server as the reference for the values.

func openaiBackend(t *testing.T, base string) *OpenAI {
	t.Helper()
	info, err := llamaBackend(t).Info(llamaCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpenAI(mustURL(t, base), "", info.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOpenAIInfo(t *testing.T) {
	u := llamaServer(t)
	o := openaiBackend(t, u+"/v1")
	info, err := o.Info(llamaCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "openai" || info.URL != u+"/v1" || info.Vocab <= 0 || info.Template == "" {
		t.Errorf("Info = %+v", info)
	}
	// A URL without a path means the usual /v1.
	if o2, _ := NewOpenAI(mustURL(t, u), "", info.Name, nil); o2.api.base.String() != u+"/v1" {
		t.Errorf("base %q", o2.api.base)
	}
	bad, _ := NewOpenAI(mustURL(t, u+"/v1"), "", "no-such-model", nil)
	_, err = bad.Info(llamaCtx(t))
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "no-such-model") || !strings.Contains(err.Error(), u) {
		t.Fatalf("Info with an unknown model: %v", err)
	}
}

func TestOpenAIRawMatchesLlamaCpp(t *testing.T) {
	u := llamaServer(t)
	l := llamaBackend(t)
	o := openaiBackend(t, u+"/v1")
	ctx := llamaCtx(t)
	p := llamaPrompt(t, o)
	if lp := llamaPrompt(t, l); lp.Text != p.Text {
		t.Fatalf("renderings differ:\n%q\n%q", p.Text, lp.Text)
	}
	a, err := o.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a == "" {
		t.Fatalf("greedy: %q then %q", a, b)
	}
	ref := greedyPath(t, l, p, 24)
	if want, err := l.Greedy(ctx, p, 24); err != nil || a != want {
		t.Fatalf("greedy: openai %q, llama.cpp %q (%v)", a, want, err)
	}
	first := greedyPath(t, o, p, 1)
	if d := math.Abs(first[0].Logprob - ref[0].Logprob); string(first[0].Raw()) != string(ref[0].Raw()) || d > 1e-6 {
		t.Errorf("first step: openai %q %v, llama.cpp %q %v", first[0].Raw(), first[0].Logprob, ref[0].Raw(), ref[0].Logprob)
	}

	list, err := o.Next(ctx, p, 50)
	if err != nil {
		t.Fatal(err)
	}
	info, err := o.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != info.MaxTop {
		t.Fatalf("Next(50) gave %d, MaxTop is %d", len(list), info.MaxTop)
	}
	refList, err := l.Next(ctx, p, len(list))
	if err != nil {
		t.Fatal(err)
	}
	for i := range list {
		if i > 0 && list[i].Logprob > list[i-1].Logprob {
			t.Fatalf("not sorted at %d", i)
		}
		if d := math.Abs(list[i].Logprob - refList[i].Logprob); d > 1e-6 {
			t.Errorf("rank %d: openai %v, llama.cpp %v", i, list[i].Logprob, refList[i].Logprob)
		}
	}

	// llama-server does not echo prompt log-probabilities, so Score falls back to the lists:
	// exact inside them, an upper bound outside.
	target := make([]Token, 0, len(ref))
	for _, tok := range textOnly(ref) {
		if !IsText(tok.Raw()) {
			break // control tokens and broken UTF-8 cannot travel as prompt text
		}
		target = append(target, tok)
	}
	if far := refList[len(refList)-1]; len(target) > 0 {
		// Also one token beyond the list, for a bound.
		full, err := l.Next(ctx, p, 200)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range full[len(list):] {
			if IsText(c.Raw()) {
				sc, err := o.Score(ctx, p, []Token{c})
				if err != nil {
					t.Fatal(err)
				}
				if sc.Exact || sc.Logprob != far.Logprob || sc.Logprob < c.Logprob {
					t.Errorf("token outside the top %d: %+v, want bound %v >= %v", len(list), sc, far.Logprob, c.Logprob)
				}
				break
			}
		}
	}
	if len(target) == 0 {
		t.Skip("greedy output starts with no text token")
	}
	sc, err := o.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	exact, err := l.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	for i, ts := range sc.Tokens {
		if ts.Exact && math.Abs(ts.Logprob-exact.Tokens[i].Logprob) > 1e-5 || !ts.Exact && ts.Logprob < exact.Tokens[i].Logprob {
			t.Errorf("token %d %q: openai %+v, exact %v", i, ts.Text, ts, exact.Tokens[i].Logprob)
		}
	}
	t.Logf("%d tokens: openai %.6f (exact %v), llama.cpp %.6f", len(target), sc.Logprob, sc.Exact, exact.Logprob)
}

// A server that cannot render templates: a proxy in front of llama-server that hides
// /apply-template. Render then makes a transcript and the calls on it go to the chat endpoint, where
// llama-server applies the same template, so the greedy reply must equal the raw one. A prompt that
// is not a whole conversation is refused, never sent as raw text.
func TestOpenAIChatMode(t *testing.T) {
	u := llamaServer(t)
	upstream, _ := url.Parse(u)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var chats, raws int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		switch {
		case r.URL.Path == "/apply-template" || r.URL.Path == "/props":
			mu.Unlock()
			http.NotFound(w, r)
			return
		case r.URL.Path == "/v1/chat/completions":
			chats++
		case r.URL.Path == "/v1/completions":
			raws++
		}
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	o := openaiBackend(t, srv.URL+"/v1")
	raw := openaiBackend(t, u+"/v1")
	l := llamaBackend(t)
	ctx := llamaCtx(t)
	p := llamaPrompt(t, o)
	if !strings.HasSuffix(p.Text, "assistant: ") || !strings.Contains(p.Text, "user: Define the word: harbor") {
		t.Fatalf("transcript %q", p.Text)
	}
	// Render asked one token of chat, once, to tell a chat-only server from no server.
	if chats != 1 {
		t.Fatalf("%d chat requests for the first Render", chats)
	}
	llamaPrompt(t, o)
	g, err := o.Greedy(ctx, p, 16)
	if err != nil {
		t.Fatal(err)
	}
	if chats != 2 {
		t.Fatalf("%d chat requests for another Render and one Greedy", chats-1)
	}
	want, err := raw.Greedy(ctx, llamaPrompt(t, raw), 16)
	if err != nil {
		t.Fatal(err)
	}
	if g != want {
		t.Errorf("chat reply %q, raw completion %q", g, want)
	}
	// The reference: the greedy path on llama.cpp, token by token.
	lp := llamaPrompt(t, l)
	target := textOnly(greedyPath(t, l, lp, 16))
	if len(target) == 0 {
		t.Skip("empty reply")
	}
	// The greedy reply itself: every token exact. Then a changed first token: bounds after it.
	sc, err := o.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	sum, whole := 0.0, true
	for _, tok := range target {
		sum += tok.Logprob
		whole = whole && utf8.Valid(tok.Raw())
	}
	if math.Abs(sc.Logprob-sum) > 1e-5 {
		t.Errorf("Score of the reply: %+v, the path sums to %v", sc, sum)
	}
	// A token that leaves a UTF-8 character unfinished is folded into the next one, which is
	// then only bounded.
	if whole && !sc.Exact {
		t.Errorf("Score of the reply: %+v, want exact", sc)
	}
	list, err := l.Next(ctx, lp, 2)
	if err != nil {
		t.Fatal(err)
	}
	other := append(textOnly(list[1:2]), target[1:]...)
	sc, err = o.Score(ctx, p, other)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Exact || !sc.Tokens[0].Exact || math.Abs(sc.Tokens[0].Logprob-list[1].Logprob) > 1e-6 {
		t.Errorf("Score with another first token: %+v, want first %v", sc, list[1].Logprob)
	}
	for _, ts := range sc.Tokens[1:] {
		if ts.Exact || ts.Logprob != 0 {
			t.Errorf("token %q after the reply left the target: %+v", ts.Text, ts)
		}
	}
	// The reply's own text, scored as free text: exact along the reply.
	st, err := o.ScoreText(ctx, p, g)
	if err != nil || !st.Exact && whole || math.Abs(st.Logprob-sum) > 1e-5 && g == spell(target) {
		t.Errorf("ScoreText of the reply %q: %+v, %v; the path sums to %v", g, st, err, sum)
	}
	// Not a whole conversation: refused, and nothing is sent as raw text.
	var be *Error
	for name, q := range map[string]Prompt{"extended": p.Extend(target[0]), "text": {Text: p.Text}} {
		if _, err := o.Next(ctx, q, 5); !errors.Is(err, ErrChatOnly) || !errors.As(err, &be) {
			t.Errorf("Next on a prompt %s: %v, want ErrChatOnly", name, err)
		}
		if _, err := o.Greedy(ctx, q, 5); !errors.Is(err, ErrChatOnly) {
			t.Errorf("Greedy on a prompt %s: %v, want ErrChatOnly", name, err)
		}
	}
	if raws != 0 {
		t.Errorf("%d raw completion requests to a chat-only server", raws)
	}
}

func TestOpenAIErrors(t *testing.T) {
	dead := llamaDeadURL(t) + "/v1"
	o, err := NewOpenAI(mustURL(t, dead), "k", "m", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := llamaCtx(t)
	var be *Error
	if _, err := o.Info(ctx); !errors.As(err, &be) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("Info with no server: %v", err)
	}
	if _, err := o.Greedy(ctx, Prompt{Text: "hi"}, 2); !errors.As(err, &be) || !strings.Contains(err.Error(), dead) {
		t.Fatalf("Greedy with no server: %v", err)
	}

	var auth []string
	for _, code := range []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth = append(auth, r.Header.Get("Authorization"))
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(code)
			w.Write([]byte(`{"error":{"message":"The model ` + "`m`" + ` does not exist","type":"invalid_request_error"}}`))
		}))
		o, _ := NewOpenAI(mustURL(t, srv.URL+"/v1"), "sk-test", "m", nil)
		_, err := o.Greedy(ctx, Prompt{Text: "hi"}, 2)
		if !errors.As(err, &be) || statusOf(err) != code || !strings.Contains(err.Error(), srv.URL) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("HTTP %d: %v", code, err)
		}
		if code == http.StatusNotFound && !strings.Contains(err.Error(), `model "m"`) {
			t.Errorf("HTTP 404 does not name the model: %v", err)
		}
		srv.Close()
	}
	for _, a := range auth {
		if a != "Bearer sk-test" {
			t.Errorf("Authorization header %q", a)
		}
	}
	for _, u := range []string{"", "127.0.0.1:8080", "http://"} {
		pu, err := url.Parse(u)
		if err == nil {
			_, err = NewOpenAI(pu, "", "m", nil)
		}
		if err == nil {
			t.Errorf("NewOpenAI(%q) accepted", u)
		}
	}
	if _, err := NewOpenAI(mustURL(t, "http://127.0.0.1:1/v1"), "", "", nil); err == nil {
		t.Error("NewOpenAI accepted no model")
	}
}

// The legacy completions format (vLLM, OpenAI's legacy models): parallel arrays, echo for exact
// prompt scores. No such server runs here, so a fake one answers in that shape.
func TestOpenAILegacyEcho(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apply-template" || r.URL.Path == "/props" || r.URL.Path == "/v1/models" {
			http.NotFound(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"echo":true`) {
			w.Write([]byte(`{"choices":[{"text":" world","logprobs":{"tokens":[" world"],"token_logprobs":[-0.5],"top_logprobs":[{" there":-1.5," world":-0.5}]}}]}`))
			return
		}
		w.Write([]byte(`{"choices":[{"text":"Hi world!!","logprobs":{"tokens":["Hi"," world","!","!"],"token_logprobs":[null,-0.5,-2.25,-3],"top_logprobs":[null,{" world":-0.5},{"!":-2.25},{"!":-3}]}}]}`))
	}))
	defer srv.Close()
	o, _ := NewOpenAI(mustURL(t, srv.URL), "", "m", nil)
	ctx := llamaCtx(t)
	g, err := o.Greedy(ctx, Prompt{Text: "Hi"}, 1)
	if err != nil || g != " world" {
		t.Fatalf("Greedy = %q, %v", g, err)
	}
	list, err := o.Next(ctx, Prompt{Text: "Hi"}, 2)
	if err != nil || len(list) != 2 || list[0].Text != " world" || list[0].Logprob != -0.5 || list[1].Logprob != -1.5 {
		t.Fatalf("Next = %+v, %v", list, err)
	}
	sc, err := o.Score(ctx, Prompt{Text: "Hi"}, []Token{{Text: " world"}, {Text: "!"}})
	if err != nil || !sc.Exact || sc.Logprob != -2.75 {
		t.Fatalf("Score = %+v, %v", sc, err)
	}
}
