package backend_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/servertest"
)

func TestMain(m *testing.M) { servertest.Main(m) }

// tinyOllama serves the bundled tiny Llama model on the test binary's private Ollama server.
func tinyOllama(t *testing.T) *backend.Ollama {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Ollama server")
	}
	srv := servertest.StartOllama(t)
	name := srv.Create(t, "tiny-llama", "tiny-llama.Modelfile")
	o, err := backend.NewOllama(mustURL(t, srv.URL), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var chat = []backend.Message{{Role: "user", Content: "Define the word harbor."}}

func TestOllamaInfoAndRender(t *testing.T) {
	o := tinyOllama(t)
	ctx := context.Background()
	info, err := o.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Backend != "ollama" || info.Template == "" || info.Digest == "" || info.Vocab < 256 {
		t.Fatalf("info %+v", info)
	}
	p, err := o.Render(ctx, chat)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|im_start|>user\nDefine the word harbor.<|im_end|>\n<|im_start|>assistant\n"; p.Text != want || !p.Whole() || p.IDs != nil {
		t.Fatalf("rendered %+v, want %q", p, want)
	}
}

func TestOllamaGreedyIsDeterministicAndScoresAgree(t *testing.T) {
	o := tinyOllama(t)
	ctx := context.Background()
	p, _ := o.Render(ctx, chat)
	g1, err := o.Greedy(ctx, p, 12)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := o.Greedy(ctx, p, 12)
	if g1 == "" || g1 != g2 {
		t.Fatalf("greedy %q then %q", g1, g2)
	}
	// The greedy path token by token, twice: the same values.
	path1, path2 := greedyPath(t, o, p, 12), greedyPath(t, o, p, 12)
	if len(path1) == 0 || len(path1) != len(path2) {
		t.Fatalf("greedy paths %q then %q", spell(path1), spell(path2))
	}
	var target []backend.Token
	sum := 0.0
	for i, tok := range path1 {
		if tok.Logprob != path2[i].Logprob {
			t.Fatalf("step %d logprob %v then %v", i, tok.Logprob, path2[i].Logprob)
		}
		target = append(target, tok)
		sum += tok.Logprob
	}
	// Teacher-forcing the greedy continuation: every token is the top one, so exact, and the
	// scores are the greedy path's own log-probabilities.
	sc, err := o.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Exact || math.Abs(sc.Logprob-sum) > 1e-4 {
		t.Fatalf("score %v (exact %v), greedy path sum %v", sc.Logprob, sc.Exact, sum)
	}
	// The top of the ranked list is the greedy token.
	next, err := o.Next(ctx, p, 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 20 || !strings.HasPrefix(g1, string(next[0].Raw())) {
		t.Fatalf("next: %d entries, first %q, greedy %q", len(next), next[0].Text, g1)
	}
	for i := 1; i < len(next); i++ {
		if next[i].Logprob > next[i-1].Logprob {
			t.Fatalf("ranked list not sorted at %d: %v > %v", i, next[i].Logprob, next[i-1].Logprob)
		}
	}
}

func TestOllamaScoreBoundsUnlistedTokens(t *testing.T) {
	o := tinyOllama(t)
	ctx := context.Background()
	p, _ := o.Render(ctx, chat)
	next, _ := o.Next(ctx, p, 20)
	// A token the model ranks far down: some piece that is not among its top 20.
	listed := map[string]bool{}
	for _, n := range next {
		listed[string(n.Raw())] = true
	}
	odd := ""
	for _, c := range []string{"zq", " xylophone", "Q", "qz", "}"} {
		if !listed[c] {
			odd = c
			break
		}
	}
	sc, err := o.Score(ctx, p, []backend.Token{{Text: odd}})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Exact || sc.Logprob != next[len(next)-1].Logprob {
		t.Fatalf("unlisted token %q: score %v exact %v; want the bound %v, not exact", odd, sc.Logprob, sc.Exact, next[len(next)-1].Logprob)
	}
}

func TestOllamaErrors(t *testing.T) {
	srv := servertest.StartOllama(t)
	ctx := context.Background()
	o, _ := backend.NewOllama(mustURL(t, srv.URL), "no-such-model", nil)
	_, err := o.Info(ctx)
	var be *backend.Error
	if !errors.As(err, &be) || !strings.Contains(err.Error(), `"no-such-model" not found`) {
		t.Fatalf("missing model: %v", err)
	}
	o, _ = backend.NewOllama(mustURL(t, "http://127.0.0.1:9"), "tiny", nil)
	_, err = o.Info(ctx)
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "http://127.0.0.1:9") || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Fatalf("server down: %v", err)
	}
	if _, err := backend.NewOllama(mustURL(t, "not a url"), "m", nil); err == nil {
		t.Fatal("bad URL accepted")
	}
}
