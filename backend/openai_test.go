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
	"testing"
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
	if lp := llamaPrompt(t, l); lp != p {
		t.Fatalf("renderings differ:\n%q\n%q", p, lp)
	}
	a, err := o.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	b, err := o.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	if a.Text != b.Text || len(a.Steps) == 0 {
		t.Fatalf("greedy: %q then %q", a.Text, b.Text)
	}
	ref, err := l.Greedy(ctx, p, 24)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(a.Steps[0].Token.Logprob - ref.Steps[0].Token.Logprob); string(a.Steps[0].Token.Raw()) != string(ref.Steps[0].Token.Raw()) || d > 1e-6 {
		t.Errorf("first step: openai %q %v, llama.cpp %q %v", a.Steps[0].Token.Raw(), a.Steps[0].Token.Logprob, ref.Steps[0].Token.Raw(), ref.Steps[0].Token.Logprob)
	}

	list, err := o.Next(ctx, p, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != o.MaxTop() {
		t.Fatalf("Next(50) gave %d, MaxTop is %d", len(list), o.MaxTop())
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
	target := make([]Token, 0, len(ref.Steps))
	for _, s := range ref.Steps {
		if len(s.Token.Bytes) == 0 && s.Token.Text != "" || !IsText(s.Token.Raw()) {
			break // control tokens and broken UTF-8 cannot travel as prompt text
		}
		target = append(target, s.Token)
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
// llama-server applies the same template, so the greedy reply must equal the raw one.
func TestOpenAIChatMode(t *testing.T) {
	u := llamaServer(t)
	upstream, _ := url.Parse(u)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var chats int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/apply-template" || r.URL.Path == "/props":
			http.NotFound(w, r)
			return
		case r.URL.Path == "/v1/chat/completions":
			chats++
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	o := openaiBackend(t, srv.URL+"/v1")
	raw := openaiBackend(t, u+"/v1")
	ctx := llamaCtx(t)
	p := llamaPrompt(t, o)
	if !strings.HasSuffix(p, "assistant: ") || !strings.Contains(p, "user: Define the word: harbor") {
		t.Fatalf("transcript %q", p)
	}
	g, err := o.Greedy(ctx, p, 16)
	if err != nil {
		t.Fatal(err)
	}
	if chats != 1 {
		t.Fatalf("%d chat requests for one Greedy", chats)
	}
	want, err := raw.Greedy(ctx, llamaPrompt(t, raw), 16)
	if err != nil {
		t.Fatal(err)
	}
	if g.Text != want.Text {
		t.Errorf("chat reply %q, raw completion %q", g.Text, want.Text)
	}
	var target []Token
	for _, s := range g.Steps {
		target = append(target, s.Token)
	}
	if len(target) == 0 {
		t.Skip("empty reply")
	}
	// The greedy reply itself: every token exact. Then a changed first token: bounds after it.
	sc, err := o.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sc.Logprob-sumSteps(g.Steps)) > 1e-5 {
		t.Errorf("Score of the reply: %+v, steps sum to %v", sc, sumSteps(g.Steps))
	}
	for i, ts := range sc.Tokens {
		// A step that folds an unfinished UTF-8 character into the next token is only bounded.
		folded := string(g.Steps[i].Top[0].Raw()) != string(g.Steps[i].Token.Raw())
		if ts.Exact == folded {
			t.Errorf("token %d %q: exact %v, folded %v", i, ts.Text, ts.Exact, folded)
		}
	}
	other := append([]Token{g.Steps[0].Top[1]}, target[1:]...)
	sc, err = o.Score(ctx, p, other)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Exact || !sc.Tokens[0].Exact || sc.Tokens[0].Logprob != g.Steps[0].Top[1].Logprob {
		t.Errorf("Score with another first token: %+v", sc)
	}
	for _, ts := range sc.Tokens[1:] {
		if ts.Exact || ts.Logprob != 0 {
			t.Errorf("token %q after the reply left the target: %+v", ts.Text, ts)
		}
	}
	if _, err := o.Sample(ctx, p, 8, 1, 3); err != nil {
		t.Fatal(err)
	}
}

func sumSteps(steps []Step) float64 {
	s := 0.0
	for _, st := range steps {
		s += st.Token.Logprob
	}
	return s
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
	if _, err := o.Greedy(ctx, "hi", 2); !errors.As(err, &be) || !strings.Contains(err.Error(), dead) {
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
		_, err := o.Greedy(ctx, "hi", 2)
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
	g, err := o.Greedy(ctx, "Hi", 1)
	if err != nil || g.Text != " world" || len(g.Steps) != 1 || g.Steps[0].Token.Logprob != -0.5 || g.Steps[0].Top[0].Text != " world" || g.Steps[0].Top[1].Logprob != -1.5 {
		t.Fatalf("Greedy = %+v, %v", g, err)
	}
	sc, err := o.Score(ctx, "Hi", []Token{{Text: " world"}, {Text: "!"}})
	if err != nil || !sc.Exact || sc.Logprob != -2.75 {
		t.Fatalf("Score = %+v, %v", sc, err)
	}
}
