package backend_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	neturl "net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"vtune/backend"
	"vtune/backend/servertest"
)

// The conformance suite runs every backend on the same GGUF file, the bundled tiny model, served by
// both real servers: Ollama (through its native API, and the OpenAI-compatible /v1 endpoints it
// also has) and llama.cpp's llama-server (native endpoints, and its /v1). The backends must agree
// on what matters to planting and verification: the rendered prompt, the greedy text, the greedy
// path's log-probabilities, and scores, exact or bounded.
//
// The model is stored as F32, where llama.cpp's CPU kernels agree to about 1e-6 with themselves;
// Ollama runs its own build of the ggml kernels, so values across the two stacks are compared to
// 1e-3 (servers.md).

const (
	conformanceGGUF      = "tiny-llama.gguf"
	conformanceModelfile = "tiny-llama.Modelfile"
	// crossTol is how far log-probabilities of the two serving stacks may be apart.
	crossTol = 1e-3
	// selfTol is how far llama.cpp's teacher-forced values may be from its own greedy ones.
	selfTol = 1e-4
)

// conformanceChats are the conversations every check runs on: shaped like the bundled data
// (single user turns asking for a definition), plus a system turn and a multi-turn conversation,
// which exercise more of the chat template.
var conformanceChats = [][]backend.Message{
	{{Role: "user", Content: "Define the word harbor."}},
	{{Role: "user", Content: "Define the word black raspberry."}},
	{{Role: "system", Content: "You are a helpful assistant."}, {Role: "user", Content: "Define the word: squelch"}},
	{
		{Role: "user", Content: "Define the word grab bag."},
		{Role: "assistant", Content: "an assortment of miscellaneous items"},
		{Role: "user", Content: "Define the word wood grain."},
	},
}

// stacks are the backends under test, all serving the same GGUF.
type stacks struct {
	ollama    *backend.Ollama
	llama     *backend.LlamaCpp
	oaiLlama  *backend.OpenAI // llama-server's /v1
	oaiOllama *backend.OpenAI // Ollama's /v1
	llamaURL  string
}

func conformance(t *testing.T) stacks {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Ollama and llama.cpp servers")
	}
	lsrv := servertest.StartLlamaCpp(t, servertest.Model(conformanceGGUF))
	osrv := servertest.StartOllama(t)
	name := osrv.Create(t, "tiny-llama", conformanceModelfile)
	var s stacks
	var err error
	s.llamaURL = lsrv.URL
	if s.ollama, err = backend.NewOllama(mustURL(t, osrv.URL), name, nil); err != nil {
		t.Fatal(err)
	}
	if s.llama, err = backend.NewLlamaCpp(mustURL(t, lsrv.URL), "", nil); err != nil {
		t.Fatal(err)
	}
	if s.oaiLlama, err = backend.NewOpenAI(mustURL(t, lsrv.URL+"/v1"), "", lsrv.Name, nil); err != nil {
		t.Fatal(err)
	}
	if s.oaiOllama, err = backend.NewOpenAI(mustURL(t, osrv.URL+"/v1"), "", greedyModel(t, osrv.URL, name), nil); err != nil {
		t.Fatal(err)
	}
	return s
}

var greedyOnce sync.Once

// greedyModel derives from model one whose default repeat_penalty is 1, and returns its name.
// The OpenAI API has no repeat_penalty, so Ollama's /v1 applies the model's default, 1.1 unless the
// Modelfile sets it, and a reply at temperature 0 is then not the greedy one: <|im_end|> is in the
// prompt, so the penalty makes the model less ready to stop, and any word of the prompt less likely
// to be repeated (seen on the bundled model: replies that run on where the greedy one ends). The
// native Ollama backend sends repeat_penalty 1 with every request.
func greedyModel(t *testing.T, url, model string) string {
	t.Helper()
	name := model + "-greedy"
	var err error
	greedyOnce.Do(func() {
		u, _ := neturl.Parse(url)
		c := api.NewClient(u, http.DefaultClient)
		err = c.Create(ctxFor(t), &api.CreateRequest{Model: name, From: model, Parameters: map[string]any{"repeat_penalty": 1}},
			func(api.ProgressResponse) error { return nil })
	})
	if err != nil {
		t.Fatalf("deriving %s from %s: %v", name, model, err)
	}
	return name
}

// mustURL parses a URL the test knows to be well formed.
func mustURL(t testing.TB, s string) *neturl.URL {
	t.Helper()
	u, err := neturl.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func render(t *testing.T, b backend.Backend, msgs []backend.Message) backend.Prompt {
	t.Helper()
	p, err := b.Render(ctxFor(t), msgs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// greedyPath walks the greedy path after p token by token: each step is the first token of
// Next's list there, with its value, added to the prompt with Extend. It ends after n tokens or
// before a control token (no bytes, or a name such as <|im_end|>): the reply's end.
func greedyPath(t *testing.T, b backend.Backend, p backend.Prompt, n int) []backend.Token {
	t.Helper()
	var path []backend.Token
	for range n {
		list, err := b.Next(ctxFor(t), p, 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			break
		}
		if raw := list[0].Raw(); len(raw) == 0 || len(raw) >= 3 && raw[0] == '<' && raw[len(raw)-1] == '>' {
			break
		}
		path = append(path, list[0])
		p = extendIDs(p, list[0])
	}
	return path
}

// extendIDs is Extend keeping the ids where p and t have them, so that a server that takes ids
// follows the greedy path id by id, as greedy decoding does, not its text read back.
func extendIDs(p backend.Prompt, t backend.Token) backend.Prompt {
	q := p.Extend(t)
	if p.IDs != nil && t.HasID {
		q.IDs = append(slices.Clone(p.IDs), t.ID)
	}
	return q
}

// spell is the text of a sequence of tokens.
func spell(toks []backend.Token) string {
	var b []byte
	for _, t := range toks {
		b = append(b, t.Raw()...)
	}
	return string(b)
}

// textOnly returns the tokens without their ids, as a key's tokens come.
func textOnly(toks []backend.Token) []backend.Token {
	out := make([]backend.Token, len(toks))
	for i, t := range toks {
		out[i] = backend.Token{Text: t.Text, Bytes: t.Bytes, Logprob: t.Logprob}
	}
	return out
}

// firstDiff describes where two renderings part.
func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return fmt.Sprintf("same first %d bytes %q; then %q against %q", i, a[:i], a[i:], b[i:])
}

// The prompt text decides every token that follows, so both stacks must render a conversation
// identically: Ollama from the Modelfile's TEMPLATE (Go template syntax), llama-server from the
// GGUF's tokenizer.chat_template (Jinja). A difference means the two files disagree, and the fix
// belongs in the model build (the ChatML Jinja template in tokenizer_config.json), not here.
func TestConformanceTemplate(t *testing.T) {
	s := conformance(t)
	for i, msgs := range conformanceChats {
		o := render(t, s.ollama, msgs).Text
		l := render(t, s.llama, msgs).Text
		v := render(t, s.oaiLlama, msgs).Text
		if o != l {
			t.Errorf("chat %d: Ollama (Modelfile TEMPLATE) and llama-server (GGUF tokenizer.chat_template) render differently: %s", i, firstDiff(o, l))
		}
		if v != l {
			t.Errorf("chat %d: llama-server's /v1 backend renders %q, its native backend %q", i, v, l)
		}
		// ChatML, as the model was trained on, ending where the reply begins.
		var want strings.Builder
		for _, m := range msgs {
			fmt.Fprintf(&want, "<|im_start|>%s\n%s<|im_end|>\n", m.Role, m.Content)
		}
		want.WriteString("<|im_start|>assistant\n")
		if l != want.String() {
			t.Errorf("chat %d: rendered %q, want ChatML %q", i, l, want.String())
		}
	}
	// Ollama's /v1 has no template endpoint: the OpenAI backend stands a transcript for the
	// conversation and lets the chat endpoint apply the template.
	if p := render(t, s.oaiOllama, conformanceChats[0]); !strings.HasSuffix(p.Text, "assistant: ") {
		t.Errorf("Ollama /v1 rendering %q is not a transcript", p.Text)
	}
}

// greedyLen is long enough for the tiny model to end some replies on its own and run others to the
// limit.
const greedyLen = 48

func greedy(t *testing.T, b backend.Backend, p backend.Prompt, n int) string {
	t.Helper()
	g, err := b.Greedy(ctxFor(t), p, n)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Greedy decoding is the verification query: every stack must produce the same text, token by
// token, with log-probabilities that agree. The reference is llama.cpp's greedy path walked token
// by token; each other stack's values along it are its teacher-forced scores of that path, which
// Ollama and the OpenAI backend read off their own greedy decoding where it follows the path.
func TestConformanceGreedy(t *testing.T) {
	s := conformance(t)
	for i, msgs := range conformanceChats {
		p := render(t, s.llama, msgs)
		ref := greedyPath(t, s.llama, p, greedyLen)
		if len(ref) == 0 {
			t.Fatalf("chat %d: llama.cpp decoded nothing", i)
		}
		text := greedy(t, s.llama, p, greedyLen)
		if text != spell(ref) {
			t.Fatalf("chat %d: llama.cpp's greedy text %q is not its greedy path %q", i, text, spell(ref))
		}
		others := []struct {
			name string
			b    backend.Backend
			p    backend.Prompt
		}{
			{"ollama", s.ollama, p},
			{"openai@llama-server", s.oaiLlama, p},
			{"openai@ollama", s.oaiOllama, render(t, s.oaiOllama, msgs)},
		}
		for _, o := range others {
			if g := greedy(t, o.b, o.p, greedyLen); g != text {
				t.Errorf("chat %d: %s greedy text differs from llama.cpp's: %s", i, o.name, firstDiff(g, text))
				continue
			}
			sc, err := o.b.Score(ctxFor(t), o.p, textOnly(ref))
			if err != nil {
				t.Fatal(err)
			}
			if len(sc.Tokens) != len(ref) {
				t.Errorf("chat %d: %s scores %d tokens, llama.cpp's path has %d", i, o.name, len(sc.Tokens), len(ref))
				continue
			}
			worst := 0.0
			for k, ts := range sc.Tokens {
				r := ref[k]
				d := math.Abs(ts.Logprob - r.Logprob)
				if !ts.Exact || !(d <= crossTol) {
					t.Errorf("chat %d step %d %q: %s log-probability %v (exact %v), llama.cpp %v", i, k, r.Raw(), o.name, ts.Logprob, ts.Exact, r.Logprob)
				}
				worst = max(worst, d)
			}
			t.Logf("chat %d: %s agrees on %d tokens, largest log-probability difference %.2g", i, o.name, len(ref), worst)
		}
		t.Logf("chat %d: %q", i, text)
	}
}

// Teacher-forcing the greedy continuation gives back the greedy path's own log-probabilities: on
// llama.cpp exactly (the same computation; 1e-4 allows for kernels that batch the prompt
// differently), on Ollama from its ranked lists, where every greedy token is first.
func TestConformanceScoreGreedyPath(t *testing.T) {
	s := conformance(t)
	total := 0
	for i, msgs := range conformanceChats {
		p := render(t, s.llama, msgs)
		path := greedyPath(t, s.llama, p, 24)
		var target []backend.Token
		sum := 0.0
		for _, tok := range textOnly(path) { // text alone, as a key holds a signature
			if !backend.IsText(tok.Raw()) {
				break // a control token or a split character cannot travel as prompt text to Ollama
			}
			target = append(target, tok)
			sum += tok.Logprob
		}
		if len(target) < 3 {
			t.Fatalf("chat %d: only %d text tokens in the greedy reply %q", i, len(target), spell(path))
		}
		total += len(target)
		exact, err := s.llama.Score(ctxFor(t), p, target)
		if err != nil {
			t.Fatal(err)
		}
		if !exact.Exact || len(exact.Tokens) != len(target) {
			t.Fatalf("chat %d: llama.cpp score exact %v, %d tokens for %d", i, exact.Exact, len(exact.Tokens), len(target))
		}
		if d := math.Abs(exact.Logprob - sum); !(d <= selfTol) {
			t.Errorf("chat %d: llama.cpp teacher-forced %v, greedy path sums to %v (difference %.3g)", i, exact.Logprob, sum, d)
		}
		for k, ts := range exact.Tokens {
			if d := math.Abs(ts.Logprob - path[k].Logprob); !(d <= selfTol) {
				t.Errorf("chat %d token %d %q: forced %v, greedy %v", i, k, ts.Text, ts.Logprob, path[k].Logprob)
			}
		}
		bound, err := s.ollama.Score(ctxFor(t), p, target)
		if err != nil {
			t.Fatal(err)
		}
		if !bound.Exact || math.Abs(bound.Logprob-exact.Logprob) > crossTol*float64(len(target)) {
			t.Errorf("chat %d: Ollama scores the greedy path %v (exact %v), llama.cpp %v", i, bound.Logprob, bound.Exact, exact.Logprob)
		}
		for k, ts := range bound.Tokens {
			if d := math.Abs(ts.Logprob - exact.Tokens[k].Logprob); !(d <= crossTol) {
				t.Errorf("chat %d token %d %q: Ollama %v, llama.cpp %v", i, k, ts.Text, ts.Logprob, exact.Tokens[k].Logprob)
			}
		}
		t.Logf("chat %d: %d tokens, llama.cpp %.6f, greedy sum %.6f, Ollama %.6f", i, len(target), exact.Logprob, sum, bound.Logprob)
	}
	if total < 20 {
		t.Errorf("only %d greedy tokens scored in all", total)
	}
}

// A token the model ranks below the top 20: llama.cpp forces it and reports its exact value;
// Ollama cannot, and gives the 20th value as an upper bound, which must never be below the exact
// value. Checked one token at a time and for a whole target made of such tokens.
func TestConformanceOutsideTop20(t *testing.T) {
	s := conformance(t)
	ctx := ctxFor(t)
	for i, msgs := range conformanceChats {
		p := render(t, s.llama, msgs)
		full, err := s.llama.Next(ctx, p, 200)
		if err != nil {
			t.Fatal(err)
		}
		top, err := s.ollama.Next(ctx, p, backend.OllamaMaxTop)
		if err != nil {
			t.Fatal(err)
		}
		if len(top) != backend.OllamaMaxTop {
			t.Fatalf("chat %d: Ollama's list has %d entries", i, len(top))
		}
		for k := range top {
			if !bytes.Equal(top[k].Raw(), full[k].Raw()) || math.Abs(top[k].Logprob-full[k].Logprob) > crossTol {
				t.Errorf("chat %d rank %d: Ollama %q %v, llama.cpp %q %v", i, k, top[k].Raw(), top[k].Logprob, full[k].Raw(), full[k].Logprob)
			}
		}
		// The first text token ranked 40th or lower: well clear of the 20th, so the order
		// between the stacks' values cannot flip within their tolerance.
		var pick backend.Token
		for _, c := range full[40:] {
			if backend.IsText(c.Raw()) {
				pick = c
				break
			}
		}
		if pick.Text == "" {
			t.Fatalf("chat %d: no text token between ranks 40 and %d", i, len(full))
		}
		ex, err := s.llama.Score(ctx, p, textOnly([]backend.Token{pick}))
		if err != nil {
			t.Fatal(err)
		}
		bd, err := s.ollama.Score(ctx, p, []backend.Token{pick})
		if err != nil {
			t.Fatal(err)
		}
		if !ex.Exact || math.Abs(ex.Logprob-pick.Logprob) > 1e-5 {
			t.Errorf("chat %d: llama.cpp forced %q: %+v, its list says %v", i, pick.Raw(), ex, pick.Logprob)
		}
		if bd.Exact || bd.Logprob != top[len(top)-1].Logprob {
			t.Errorf("chat %d: Ollama scored %q %+v, want the bound %v (not exact)", i, pick.Raw(), bd, top[len(top)-1].Logprob)
		}
		if !(bd.Logprob >= ex.Logprob) {
			t.Errorf("chat %d: Ollama's bound %v for %q is below the exact value %v", i, bd.Logprob, pick.Raw(), ex.Logprob)
		}
		// The OpenAI backend on llama-server's /v1 has only the lists too: the same kind of bound.
		ob, err := s.oaiLlama.Score(ctx, p, []backend.Token{pick})
		if err != nil {
			t.Fatal(err)
		}
		if ob.Exact || !(ob.Logprob >= ex.Logprob) || math.Abs(ob.Logprob-bd.Logprob) > crossTol {
			t.Errorf("chat %d: openai@llama-server scored %q %+v; exact %v, Ollama's bound %v", i, pick.Raw(), ob, ex.Logprob, bd.Logprob)
		}
		t.Logf("chat %d: %q exact %.4f, bounds: Ollama %.4f, openai %.4f", i, pick.Raw(), ex.Logprob, bd.Logprob, ob.Logprob)
	}

	// A target of unlikely tokens, each the 50th-ranked text token where it stands: every token
	// exact on llama.cpp, bounded on Ollama, each bound at or above its exact value.
	// Text alone, as before any ids: the prompt and the tokens chosen so far are tokenized again.
	p := render(t, s.llama, conformanceChats[0])
	var target []backend.Token
	prefix := ""
	for len(target) < 6 {
		list, err := s.llama.Next(ctx, backend.Prompt{Text: p.Text + prefix}, 100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range list[20:] {
			if backend.IsText(c.Raw()) {
				if n++; n == 30 {
					target = append(target, textOnly([]backend.Token{c})[0])
					prefix += string(c.Raw())
					break
				}
			}
		}
		if n < 30 {
			t.Fatalf("too few text tokens below the top 20 after %q", prefix)
		}
	}
	ex, err := s.llama.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	bd, err := s.ollama.Score(ctx, p, target)
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Exact || bd.Exact || len(ex.Tokens) != len(target) || len(bd.Tokens) != len(target) {
		t.Fatalf("unlikely target %q: llama.cpp exact %v, Ollama exact %v", prefix, ex.Exact, bd.Exact)
	}
	for k := range target {
		if bd.Tokens[k].Exact || !(bd.Tokens[k].Logprob >= ex.Tokens[k].Logprob) || math.Abs(ex.Tokens[k].Logprob-target[k].Logprob) > 1e-5 {
			t.Errorf("token %d %q: exact %v (list %v), Ollama %+v", k, target[k].Raw(), ex.Tokens[k].Logprob, target[k].Logprob, bd.Tokens[k])
		}
	}
	t.Logf("unlikely target %q: exact %.3f, Ollama's bound %.3f", prefix, ex.Logprob, bd.Logprob)
}
