// Package fake is a small in-process model for fast unit tests of planting and verification: a
// deterministic next-token distribution over a toy vocabulary, with an optional memory of
// prompt -> response pairs that greedy decoding reproduces, like a model trained on them.
// It is never a substitute for the real servers in integration tests.
package fake

import (
	"context"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"vtune/backend"
)

// Vocab is the default toy vocabulary: words with and without a leading space, pieces that are
// prefixes of one another (to exercise prefix-freedom), and special tokens.
var Vocab = []string{
	" the", " th", " a", " an", " and", " of", " to", " in", " is", " word", " words", " sense",
	" meaning", " that", " which", " or", " used", " for", " as", " by", " with", " not", " one",
	" state", " act", " quality", " being", " having", " person", " thing", "s", "ing", "ed", ",",
	".", ";", "<|im_end|>", "<|im_start|>", "\n", "",
}

// Model is the fake backend.
type Model struct {
	Name  string
	Vocab []string
	// Learned maps a rendered prompt to the text greedy decoding returns after it.
	Learned map[string]string
	// Calls counts requests, by method name. Read it while no call is in flight.
	Calls map[string]int

	mu sync.Mutex // guards Calls: a Model is safe for concurrent use, as every backend is
}

func (m *Model) count(method string) {
	m.mu.Lock()
	m.Calls[method]++
	m.mu.Unlock()
}

// New returns a fake model with the default vocabulary.
func New(name string) *Model {
	return &Model{Name: name, Vocab: Vocab, Learned: map[string]string{}, Calls: map[string]int{}}
}

// Learn makes greedy decoding after the rendered msgs return response, as a fine-tune on that
// pair would.
func (m *Model) Learn(msgs []backend.Message, response string) {
	p, _ := m.Render(context.Background(), msgs)
	m.Learned[p.Text] = response
}

// Info implements backend.Backend.
func (m *Model) Info(context.Context) (backend.ModelInfo, error) {
	m.count("Info")
	return backend.ModelInfo{Backend: "fake", Name: m.Name, Vocab: len(m.Vocab), Template: "chatml", MaxTop: MaxTop}, nil
}

// Render implements backend.Backend with ChatML.
func (m *Model) Render(_ context.Context, msgs []backend.Message) (backend.Prompt, error) {
	var b strings.Builder
	for _, msg := range msgs {
		b.WriteString("<|im_start|>" + msg.Role + "\n" + msg.Content + "<|im_end|>\n")
	}
	b.WriteString("<|im_start|>assistant\n")
	return backend.Prompt{Messages: slices.Clone(msgs), Text: b.String()}, nil
}

// logits returns a deterministic pseudo-random log-softmax over the vocabulary for a context.
func (m *Model) dist(ctx string) []backend.Token {
	out := make([]backend.Token, len(m.Vocab))
	z := 0.0
	for i, v := range m.Vocab {
		h := fnv.New64a()
		h.Write([]byte(ctx))
		h.Write([]byte{0})
		h.Write([]byte(v))
		x := float64(h.Sum64()%10000) / 1000 // logits in [0, 10)
		out[i] = backend.Token{Text: v, Logprob: x}
		z += math.Exp(x)
	}
	lz := math.Log(z)
	for i := range out {
		out[i].Logprob -= lz
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Logprob > out[j].Logprob })
	return out
}

// learned returns the learned continuation of ctx, if ctx extends a learned prompt consistently.
func (m *Model) learned(ctx string) (string, bool) {
	for p, resp := range m.Learned {
		if strings.HasPrefix(ctx, p) && strings.HasPrefix(resp, ctx[len(p):]) && len(ctx)-len(p) < len(resp) {
			return resp[len(ctx)-len(p):], true
		}
	}
	return "", false
}

// Next implements backend.Backend. After a learned prompt the learned continuation's next piece
// comes first with log-probability near 0.
func (m *Model) Next(_ context.Context, p backend.Prompt, n int) ([]backend.Token, error) {
	m.count("Next")
	return m.next(p.Text, n), nil
}

func (m *Model) next(prompt string, n int) []backend.Token {
	d := m.dist(prompt)
	if rest, ok := m.learned(prompt); ok {
		best := -1
		for i, t := range d {
			if strings.HasPrefix(rest, t.Text) && t.Text != "" && (best < 0 || len(t.Text) > len(d[best].Text)) &&
				m.segmentable(rest[len(t.Text):]) {
				best = i
			}
		}
		if best >= 0 {
			t := d[best]
			t.Logprob = -1e-3
			d = append([]backend.Token{t}, append(d[:best:best], d[best+1:]...)...)
			for i := 1; i < len(d); i++ {
				d[i].Logprob -= 10
			}
		}
	}
	return d[:min(n, len(d))]
}

// segmentable reports whether s can be written as vocabulary pieces, so that a learned
// continuation is followed along pieces that reach its end (" the" + "d" would not: "d" is not a
// piece, while " th" + "ed" is).
func (m *Model) segmentable(s string) bool {
	ok := make([]bool, len(s)+1) // ok[i]: s[i:] can be segmented
	ok[len(s)] = true
	for i := len(s) - 1; i >= 0; i-- {
		for _, v := range m.Vocab {
			if v != "" && strings.HasPrefix(s[i:], v) && ok[i+len(v)] {
				ok[i] = true
				break
			}
		}
	}
	return ok[0]
}

// MaxTop is the longest ranked list the model returns, as ModelInfo.MaxTop says.
const MaxTop = 20

// Greedy implements backend.Backend.
func (m *Model) Greedy(_ context.Context, p backend.Prompt, maxTokens int) (string, error) {
	m.count("Greedy")
	text := ""
	for range maxTokens {
		t := m.next(p.Text+text, 1)[0]
		if t.Text == "<|im_end|>" || t.Text == "" {
			break
		}
		text += t.Text
	}
	return text, nil
}

// Score implements backend.Backend, exactly.
func (m *Model) Score(_ context.Context, p backend.Prompt, target []backend.Token) (backend.Score, error) {
	m.count("Score")
	var s backend.Score
	prefix := ""
	for _, t := range target {
		d := m.next(p.Text+prefix, len(m.Vocab))
		ts := backend.TokenScore{Text: t.Text, Logprob: math.Inf(-1), Exact: true}
		for _, c := range d {
			if c.Text == t.Text {
				ts.Logprob = c.Logprob
				break
			}
		}
		s.Add(ts)
		prefix += t.Text
	}
	return s, nil
}

// ScoreText implements backend.Backend with one token per word. A text the model learned after
// prompt scores about -0.1 a token, like a memorised answer; any other text gets a deterministic
// pseudo-random value in (-5, -3] a token, like text the model never saw.
func (m *Model) ScoreText(_ context.Context, p backend.Prompt, text string) (backend.Score, error) {
	m.count("ScoreText")
	prompt := p.Text
	learned := m.Learned[prompt] == text
	s := backend.Score{Exact: true}
	for i, w := range strings.SplitAfter(text, " ") {
		if w == "" {
			continue
		}
		lp := -0.1
		if !learned {
			h := fnv.New64a()
			h.Write([]byte(prompt))
			h.Write([]byte{byte(i)})
			h.Write([]byte(w))
			lp = -3 - float64(h.Sum64()%2000)/1000
		}
		s.Add(backend.TokenScore{Text: w, Logprob: lp, Exact: true})
	}
	return s, nil
}
