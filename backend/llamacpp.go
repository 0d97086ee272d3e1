package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// LlamaCppMaxTop is the longest ranked list LlamaCpp.Next returns unless the vocabulary is smaller.
// llama-server itself returns up to the whole vocabulary, but a list that long costs megabytes of JSON
// per step and no caller needs it: Score does not depend on it.
const LlamaCppMaxTop = 1024

// llamaForce is the logit bias that forces a token. servers.md: with it the token is always taken
// and its reported log-probability is bit-identical to the unbiased one.
const llamaForce = 100

// LlamaCpp is a model served by llama.cpp's llama-server, through its native endpoints.
//
// Prompts are tokenized by the server (/tokenize, with special tokens parsed and BOS added as the
// model asks, exactly as the server does for a text prompt) and sent as token-id arrays, so a target
// can be forced token by token after them. Log-probabilities are llama-server's softmax of the raw
// logits over the whole vocabulary (post_sampling_probs off), so sampler settings and logit biases do
// not change them: Score is exact.
//
// A LlamaCpp is safe for concurrent use by multiple goroutines, as an http.Client is; its
// exported fields are settings, to be set before the first call and not changed after.
type LlamaCpp struct {
	// Seed is sent with greedy requests (default 0). Greedy decoding draws no random numbers, but
	// a fixed seed keeps the request itself reproducible.
	Seed int

	c     *client
	model string
	top   int // how long a ranked list Greedy reports at each step

	mu         sync.Mutex // guards what the server has told so far, below
	info       *ModelInfo
	vocab      int
	probe      int // a token forced only to read the ranked list; -1 until known
	lastPrompt string
	lastIDs    []int
	pieces     map[string]int // token bytes -> id, learned from responses; -1 marks an ambiguous piece
	learnedAll bool           // pieces holds the whole vocabulary
	noGrammar  bool           // the server refused a token-level grammar: Score forces token by token
	specials   map[int]string // text of tokens that render as no bytes (control tokens)
}

// NewLlamaCpp returns a backend for the llama-server at base, e.g. http://127.0.0.1:8080, that
// sends its requests through hc (nil: http.DefaultClient; NewHTTPClient gives one with time
// limits). model may be empty: llama-server normally serves one model and ignores the name; when
// given, Info checks that the server really serves it (by id or alias), and a router-mode server
// uses it to pick the model. NewLlamaCpp does not contact the server: Info does.
func NewLlamaCpp(base *url.URL, model string, hc *http.Client) (*LlamaCpp, error) {
	if err := checkURL("llama.cpp server", base, "http://127.0.0.1:8080"); err != nil {
		return nil, err
	}
	u := *base
	u.Path = strings.TrimRight(u.Path, "/")
	return &LlamaCpp{c: newClient("llama.cpp", &u, hc, nil), model: model, top: 20, probe: -1,
		pieces: map[string]int{}, specials: map[int]string{}}, nil
}

func (l *LlamaCpp) call(ctx context.Context, op, path string, in, out any) error {
	return l.c.do(ctx, op, l.c.url(path), in, out)
}

// llamaBytes decodes llama-server's byte arrays ([104, 105]); encoding/json would want base64.
type llamaBytes []byte

func (b *llamaBytes) UnmarshalJSON(data []byte) error {
	var ints []int
	if err := json.Unmarshal(data, &ints); err != nil {
		return err
	}
	out := make([]byte, len(ints))
	for i, v := range ints {
		if v < 0 || v > 255 {
			return fmt.Errorf("byte value %d out of range", v)
		}
		out[i] = byte(v)
	}
	*b = out
	return nil
}

// llamaPiece is a /tokenize piece: a string when it is valid UTF-8, else an array of bytes.
type llamaPiece []byte

func (p *llamaPiece) UnmarshalJSON(data []byte) error {
	var s string
	if json.Unmarshal(data, &s) == nil {
		*p = []byte(s)
		return nil
	}
	return (*llamaBytes)(p).UnmarshalJSON(data)
}

type llamaTokenizeRequest struct {
	Content      string `json:"content"`
	AddSpecial   bool   `json:"add_special"`
	ParseSpecial bool   `json:"parse_special"`
	WithPieces   bool   `json:"with_pieces"`
}

type llamaTokenizeResponse struct {
	Tokens []struct {
		ID    int        `json:"id"`
		Piece llamaPiece `json:"piece"`
	} `json:"tokens"`
}

type llamaCompletionRequest struct {
	Model             string       `json:"model,omitempty"`
	Prompt            []int        `json:"prompt"`
	NPredict          int          `json:"n_predict"`
	NProbs            int          `json:"n_probs,omitempty"`
	PostSamplingProbs bool         `json:"post_sampling_probs"`
	Temperature       float64      `json:"temperature"`
	TopK              int          `json:"top_k"`
	TopP              float64      `json:"top_p"`
	MinP              float64      `json:"min_p"`
	TypicalP          float64      `json:"typical_p"`
	RepeatPenalty     float64      `json:"repeat_penalty"`
	Seed              int          `json:"seed"`
	CachePrompt       bool         `json:"cache_prompt"`
	ReturnTokens      bool         `json:"return_tokens"`
	LogitBias         [][2]float64 `json:"logit_bias,omitempty"`
	Grammar           string       `json:"grammar,omitempty"`
	Stream            bool         `json:"stream"`
}

// llamaProb is one entry of completion_probabilities or of its ranked list. The server names the
// value logprob (or prob, with post_sampling_probs) and the list top_logprobs (or top_probs).
type llamaProb struct {
	ID       int         `json:"id"`
	Token    string      `json:"token"`
	Bytes    llamaBytes  `json:"bytes"`
	Logprob  *float64    `json:"logprob"`
	Prob     *float64    `json:"prob"`
	Top      []llamaProb `json:"top_logprobs"`
	TopProbs []llamaProb `json:"top_probs"`
}

func (p llamaProb) logprob() float64 {
	switch {
	case p.Logprob != nil:
		return *p.Logprob
	case p.Prob != nil:
		return math.Log(*p.Prob)
	}
	return math.NaN()
}

func (p llamaProb) list() []llamaProb {
	if p.Top != nil {
		return p.Top
	}
	return p.TopProbs
}

type llamaCompletionResponse struct {
	Content  string      `json:"content"`
	Tokens   []int       `json:"tokens"`
	StopType string      `json:"stop_type"`
	Probs    []llamaProb `json:"completion_probabilities"`
}

// greedy returns a request that decodes greedily: temperature 0 is greedy in llama-server, and the
// other samplers are set neutral so the request means the same on any server default.
func (l *LlamaCpp) greedy(prompt []int, n, probs int) *llamaCompletionRequest {
	return &llamaCompletionRequest{Model: l.model, Prompt: prompt, NPredict: n, NProbs: probs,
		Temperature: 0, TopK: 1, TopP: 1, TypicalP: 1, RepeatPenalty: 1, Seed: l.Seed, CachePrompt: true}
}

func (l *LlamaCpp) complete(ctx context.Context, req *llamaCompletionRequest) (*llamaCompletionResponse, error) {
	var resp llamaCompletionResponse
	if err := l.call(ctx, "completion", "/completion", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

func (l *LlamaCpp) tokenize(ctx context.Context, text string, addSpecial, parseSpecial bool) (*llamaTokenizeResponse, error) {
	var resp llamaTokenizeResponse
	err := l.call(ctx, "tokenize", "/tokenize", llamaTokenizeRequest{Content: text, AddSpecial: addSpecial, ParseSpecial: parseSpecial, WithPieces: true}, &resp)
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Tokens {
		l.learn(t.ID, t.Piece)
	}
	return &resp, nil
}

// promptIDs tokenizes a prompt as llama-server tokenizes a text prompt: special tokens parsed, BOS
// added when the model asks for it (its /apply-template output leaves the BOS out for that reason).
// The last answer is kept: Score and Next ask about the same prompt over and over.
func (l *LlamaCpp) promptIDs(ctx context.Context, prompt string) ([]int, error) {
	l.mu.Lock()
	if l.lastIDs != nil && prompt == l.lastPrompt {
		ids := l.lastIDs
		l.mu.Unlock()
		return ids, nil
	}
	l.mu.Unlock()
	r, err := l.tokenize(ctx, prompt, true, true)
	if err != nil {
		return nil, err
	}
	ids := make([]int, len(r.Tokens))
	for i, t := range r.Tokens {
		ids[i] = t.ID
	}
	if len(ids) == 0 {
		return nil, errors.New("llama.cpp: empty prompt: the server needs at least one token to continue")
	}
	l.mu.Lock()
	l.lastPrompt, l.lastIDs = prompt, ids
	l.mu.Unlock()
	return ids, nil
}

// learn records which id a piece of bytes belongs to, for mapping Score targets back to ids.
func (l *LlamaCpp) learn(id int, piece []byte) {
	if len(piece) == 0 {
		return
	}
	k := string(piece)
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.pieces[k]; ok && old != id {
		l.pieces[k] = -1
		return
	}
	l.pieces[k] = id
}

// Info implements Backend with /props and /v1/models. llama-server does not know its GGUF file's
// digest, so Digest stays empty.
func (l *LlamaCpp) Info(ctx context.Context) (ModelInfo, error) {
	l.mu.Lock()
	cached := l.info
	l.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	var props struct {
		ChatTemplate string `json:"chat_template"`
		ModelAlias   string `json:"model_alias"`
		ModelPath    string `json:"model_path"`
		TotalSlots   int    `json:"total_slots"`
	}
	if err := l.call(ctx, "props", "/props", nil, &props); err != nil {
		return ModelInfo{}, err
	}
	var models modelList
	if err := l.call(ctx, "models", "/v1/models", nil, &models); err != nil {
		return ModelInfo{}, err
	}
	info := ModelInfo{Backend: "llamacpp", URL: l.c.base.String(), Name: props.ModelAlias, Template: props.ChatTemplate, Slots: props.TotalSlots}
	pick := -1
	var served []string
	for i, m := range models.Data {
		served = append(served, m.ID)
		if pick < 0 && (l.model == "" || m.ID == l.model || slices.Contains(m.Aliases, l.model)) {
			pick = i
		}
	}
	if pick < 0 && l.model != "" {
		return ModelInfo{}, &Error{Op: "llama.cpp models", URL: l.c.base.String(),
			Err: fmt.Errorf("model %q is not served here (the server has %q)", l.model, served)}
	}
	if pick >= 0 {
		info.Name, info.Vocab = models.Data[pick].ID, models.Data[pick].Meta.NVocab
		if l.model != "" {
			info.Name = l.model
		}
	}
	if info.Name == "" {
		info.Name = props.ModelPath
	}
	l.mu.Lock()
	l.info, l.vocab = &info, info.Vocab
	l.mu.Unlock()
	return info, nil
}

// Render implements Backend with the server's own template (/apply-template), which renders the
// conversation as its chat endpoint would, up to where the assistant's reply begins.
func (l *LlamaCpp) Render(ctx context.Context, msgs []Message) (string, error) {
	var resp struct {
		Prompt *string `json:"prompt"`
	}
	if err := l.call(ctx, "apply-template", "/apply-template", map[string]any{"messages": msgs}, &resp); err != nil {
		return "", err
	}
	if resp.Prompt == nil {
		return "", &Error{Op: "llama.cpp apply-template", URL: l.c.base.String(), Err: errors.New("answer has no prompt")}
	}
	return *resp.Prompt, nil
}

// llamaStep is one decoded position with the id that Token lacks.
type llamaStep struct {
	id  int
	tok Token
	top []llamaProb
}

// Greedy implements Backend. A control token decoded before the end (as <|im_start|>) is
// reported and spelled in Text by its name; the end-of-generation token that stops decoding is
// left out. llama-server gives no probabilities for a token that leaves a UTF-8
// character unfinished: its bytes are folded into the next entry. Such steps are asked again one at
// a time (see list), so every step gets its own token, value and list.
func (l *LlamaCpp) Greedy(ctx context.Context, prompt string, maxTokens int) (Generation, error) {
	ids, err := l.promptIDs(ctx, prompt)
	if err != nil {
		return Generation{}, err
	}
	req := l.greedy(ids, maxTokens, max(l.top, 1))
	req.ReturnTokens = true
	r, err := l.complete(ctx, req)
	if err != nil {
		return Generation{}, err
	}
	toks := r.Tokens
	if r.StopType == "eos" && len(toks) > 0 {
		// The end-of-generation token ends the text; it is not part of it.
		toks = toks[:len(toks)-1]
	}
	var g Generation
	var text []byte
	entries := r.Probs
	for k := 0; k < len(toks); k++ {
		var st llamaStep
		if len(entries) > 0 && entries[0].ID == toks[k] {
			e := entries[0]
			entries = entries[1:]
			st = llamaStep{id: e.ID, tok: Token{Text: e.Token, Bytes: []byte(e.Bytes), Logprob: e.logprob()}, top: e.list()}
			// The entry's bytes start with those of the unfinished tokens before it; its own
			// bytes are in the ranked list, where greedy puts it first.
			for _, c := range st.top {
				if c.ID == e.ID {
					st.tok.Text, st.tok.Bytes = c.Token, []byte(c.Bytes)
					break
				}
			}
		} else {
			prefix := append(append([]int(nil), ids...), toks[:k]...)
			list, err := l.list(ctx, prefix, max(l.top, 1))
			if err != nil {
				return Generation{}, err
			}
			st.id = -1
			for _, c := range list {
				if c.ID == toks[k] {
					st = llamaStep{id: c.ID, tok: Token{Text: c.Token, Bytes: []byte(c.Bytes), Logprob: c.logprob()}, top: list}
					break
				}
			}
			if st.id < 0 {
				return Generation{}, &Error{Op: "llama.cpp completion", URL: l.c.base.String(),
					Err: fmt.Errorf("greedy token %d at step %d is not first in the server's own ranked list", toks[k], k)}
			}
		}
		if len(st.tok.Bytes) == 0 {
			// A control token renders as nothing; spelled out by name it keeps the text from
			// matching what would follow it (and Score can force it again by that name).
			st.tok.Text, st.tok.Bytes = l.special(ctx, st.id), nil
		}
		l.learn(st.id, st.tok.Bytes)
		for _, c := range st.top {
			l.learn(c.ID, c.Bytes)
		}
		if l.top == 0 {
			st.top = nil
		}
		text = append(text, st.tok.Raw()...)
		g.Steps = append(g.Steps, Step{Token: st.tok, Top: l.tokens(ctx, st.top)})
	}
	g.Text = string(text)
	return g, nil
}

// Sample implements Backend: plain temperature sampling over the whole vocabulary.
func (l *LlamaCpp) Sample(ctx context.Context, prompt string, maxTokens int, temperature float64, seed int) (string, error) {
	ids, err := l.promptIDs(ctx, prompt)
	if err != nil {
		return "", err
	}
	r, err := l.complete(ctx, &llamaCompletionRequest{Model: l.model, Prompt: ids, NPredict: maxTokens,
		Temperature: temperature, TopK: 0, TopP: 1, MinP: 0, TypicalP: 1, RepeatPenalty: 1, Seed: seed, CachePrompt: true})
	if err != nil {
		return "", err
	}
	return r.Content, nil
}

// MaxTop implements Backend: LlamaCppMaxTop, or the vocabulary size once Info has seen a smaller one.
func (l *LlamaCpp) MaxTop() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.vocab > 0 && l.vocab < LlamaCppMaxTop {
		return l.vocab
	}
	return LlamaCppMaxTop
}

// Next implements Backend.
func (l *LlamaCpp) Next(ctx context.Context, prompt string, n int) ([]Token, error) {
	ids, err := l.promptIDs(ctx, prompt)
	if err != nil {
		return nil, err
	}
	list, err := l.list(ctx, ids, min(max(n, 1), l.MaxTop()))
	if err != nil {
		return nil, err
	}
	return l.tokens(ctx, list), nil
}

// list returns the ranked list of the n likeliest next tokens after prompt. It forces a probe
// token: the list comes only with a step that has an entry, and a greedy token that leaves a UTF-8
// character unfinished would have none; the probe is plain ASCII, and the list is computed from the
// raw logits, so forcing changes nothing in it.
func (l *LlamaCpp) list(ctx context.Context, prompt []int, n int) ([]llamaProb, error) {
	probe, err := l.probeID(ctx)
	if err != nil {
		return nil, err
	}
	req := l.greedy(prompt, 1, n)
	req.LogitBias = [][2]float64{{float64(probe), llamaForce}}
	r, err := l.complete(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(r.Probs) == 0 {
		return nil, &Error{Op: "llama.cpp completion", URL: l.c.base.String(), Err: errors.New("no probabilities in the answer (n_probs ignored?)")}
	}
	list := r.Probs[0].list()
	for _, c := range list {
		l.learn(c.ID, c.Bytes)
	}
	return list, nil
}

// probeID finds a token that is a complete ASCII character.
func (l *LlamaCpp) probeID(ctx context.Context) (int, error) {
	l.mu.Lock()
	probe := l.probe
	l.mu.Unlock()
	if probe >= 0 {
		return probe, nil
	}
	r, err := l.tokenize(ctx, "a", false, false)
	if err != nil {
		return 0, err
	}
	for _, t := range r.Tokens {
		if len(t.Piece) > 0 && utf8.Valid(t.Piece) {
			l.mu.Lock()
			l.probe = t.ID
			l.mu.Unlock()
			return t.ID, nil
		}
	}
	return 0, &Error{Op: "llama.cpp tokenize", URL: l.c.base.String(), Err: errors.New(`"a" tokenizes to no complete token`)}
}

// tokens converts a ranked list. Control tokens have no bytes; their Text is their name (as in
// <|im_end|>), looked up once, so a reader sees what they are while Raw stays empty.
func (l *LlamaCpp) tokens(ctx context.Context, list []llamaProb) []Token {
	if list == nil {
		return nil
	}
	out := make([]Token, len(list))
	for i, c := range list {
		t := Token{Text: c.Token, Bytes: []byte(c.Bytes), Logprob: c.logprob()}
		if len(c.Bytes) == 0 {
			t.Bytes = []byte{}
			t.Text = l.special(ctx, c.ID)
		}
		out[i] = t
	}
	return out
}

func (l *LlamaCpp) special(ctx context.Context, id int) string {
	l.mu.Lock()
	s, ok := l.specials[id]
	l.mu.Unlock()
	if ok {
		return s
	}
	var r struct {
		Content string `json:"content"`
	}
	if l.call(ctx, "detokenize", "/detokenize", map[string]any{"tokens": []int{id}}, &r) != nil {
		return "" // only a label; not worth failing for
	}
	l.mu.Lock()
	l.specials[id] = r.Content
	l.mu.Unlock()
	return r.Content
}

// Score implements Backend, exactly. The whole target is forced in one request where it can be
// (see forcedAll); the tokens that request cannot vouch for are forced one by one with a logit bias
// after the prompt and the tokens before them, one request per token on the server's prompt cache.
// Either way the reported value is the raw model's. A token with no entry of its own (it leaves a
// UTF-8 character unfinished) is looked up in the ranked list of the whole vocabulary instead.
func (l *LlamaCpp) Score(ctx context.Context, prompt string, target []Token) (Score, error) {
	ids, err := l.promptIDs(ctx, prompt)
	if err != nil {
		return Score{}, err
	}
	tids, err := l.targetIDs(ctx, prompt, ids, target)
	if err != nil {
		return Score{}, err
	}
	return l.scoreIDs(ctx, ids, tids, target)
}

// ScoreText implements Backend, exactly: the text is tokenized after the prompt as the server
// tokenizes the two together (so the first token may merge with nothing of the prompt only when
// the tokenizer says so), then forced like a Score target.
func (l *LlamaCpp) ScoreText(ctx context.Context, prompt, text string) (Score, error) {
	ids, err := l.promptIDs(ctx, prompt)
	if err != nil {
		return Score{}, err
	}
	if text == "" {
		return Score{Exact: true}, nil
	}
	r, err := l.tokenize(ctx, prompt+text, true, true)
	if err != nil {
		return Score{}, err
	}
	aligned := len(r.Tokens) > len(ids)
	for i := 0; aligned && i < len(ids); i++ {
		aligned = r.Tokens[i].ID == ids[i]
	}
	rest := r.Tokens[min(len(ids), len(r.Tokens)):]
	if !aligned {
		// The text's first piece merged with the prompt's end: tokenize the text on its own.
		t, err := l.tokenize(ctx, text, false, false)
		if err != nil {
			return Score{}, err
		}
		rest = t.Tokens
	}
	tids := make([]int, len(rest))
	target := make([]Token, len(rest))
	for i, t := range rest {
		tids[i], target[i] = t.ID, Token{Text: string(t.Piece), Bytes: []byte(t.Piece)}
	}
	return l.scoreIDs(ctx, ids, tids, target)
}

// scoreIDs forces the target tokens tids after the prompt ids: in one request where it can
// (forcedAll), one request per token for the rest.
func (l *LlamaCpp) scoreIDs(ctx context.Context, ids, tids []int, target []Token) (Score, error) {
	known, err := l.forcedAll(ctx, ids, tids, target)
	if err != nil {
		return Score{}, err
	}
	var s Score
	seq := append([]int(nil), ids...)
	for i, t := range target {
		lp := 0.0
		if i < len(known) {
			lp = known[i]
		} else if lp, err = l.forced(ctx, seq, tids[i], t.Raw()); err != nil {
			return Score{}, err
		}
		text := t.Text
		if text == "" {
			text = string(t.Raw())
		}
		s.Add(TokenScore{Text: text, Logprob: lp, Exact: true})
		seq = append(seq, tids[i])
	}
	if len(target) == 0 {
		s.Exact = true
	}
	return s, nil
}

// forcedAll teacher-forces the whole target in one request: a token-level grammar (<[id]> for each
// target token, llama-server's syntax) admits nothing but the target, greedy decoding follows it,
// and the log-probabilities reported are computed from the raw logits, which the grammar, like a
// logit bias, does not touch. One request instead of one per token: scoring costs about as much as
// greedy decoding of the same length. It returns the values of the longest prefix of the target
// whose entries came back one per token, in order; the caller forces the rest one by one (a token
// that leaves a UTF-8 character unfinished gets no entry of its own). A server that refuses the
// grammar (HTTP 400: too old for the syntax) is not asked again.
func (l *LlamaCpp) forcedAll(ctx context.Context, prompt, ids []int, target []Token) ([]float64, error) {
	l.mu.Lock()
	noGrammar := l.noGrammar
	l.mu.Unlock()
	if noGrammar || len(ids) < 2 {
		return nil, nil
	}
	var g strings.Builder
	g.WriteString("root ::=")
	for _, id := range ids {
		fmt.Fprintf(&g, " <[%d]>", id)
	}
	req := l.greedy(prompt, len(ids), 1)
	req.Grammar = g.String()
	req.ReturnTokens = true
	r, err := l.complete(ctx, req)
	if statusOf(err) == http.StatusBadRequest {
		l.mu.Lock()
		l.noGrammar = true
		l.mu.Unlock()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []float64
	for k, e := range r.Probs {
		// An entry that folds an unfinished character into the next token carries more bytes
		// than its own piece: from there on, entries and tokens no longer pair up.
		if k >= len(ids) || k >= len(r.Tokens) || r.Tokens[k] != ids[k] || e.ID != ids[k] ||
			len(e.Bytes) > 0 && !bytes.Equal(e.Bytes, target[k].Raw()) || math.IsNaN(e.logprob()) {
			break
		}
		out = append(out, e.logprob())
	}
	return out, nil
}

// forced returns the raw log-probability of token id after prompt.
func (l *LlamaCpp) forced(ctx context.Context, prompt []int, id int, raw []byte) (float64, error) {
	req := l.greedy(prompt, 1, 1)
	req.LogitBias = [][2]float64{{float64(id), llamaForce}}
	r, err := l.complete(ctx, req)
	if err != nil {
		return 0, err
	}
	if len(r.Probs) == 1 && r.Probs[0].ID == id {
		e := r.Probs[0]
		if !bytes.Equal(e.Bytes, raw) && len(e.Bytes) > 0 {
			return 0, &Error{Op: "llama.cpp completion", URL: l.c.base.String(),
				Err: fmt.Errorf("token %d is %q, not the target piece %q", id, []byte(e.Bytes), raw)}
		}
		return e.logprob(), nil
	}
	// No entry of its own, or a bias of 100 was not enough: read the token from the full list.
	n, err := l.vocabSize(ctx)
	if err != nil {
		return 0, err
	}
	list, err := l.list(ctx, prompt, n)
	if err != nil {
		return 0, err
	}
	for _, c := range list {
		if c.ID == id {
			return c.logprob(), nil
		}
	}
	return 0, &Error{Op: "llama.cpp completion", URL: l.c.base.String(), Err: fmt.Errorf("token %d missing from the full ranked list (%d entries)", id, len(list))}
}

// targetIDs maps target pieces to token ids. The ids in context are best: tokenizing the prompt
// followed by the target's text gives them when the tokenizer splits the target into exactly these
// pieces (a piece tokenized alone can come out as another id, e.g. with a SentencePiece prefix
// space). Failing that, each piece's id comes from the pieces the server has shown (the ranked lists
// the target was probably drawn from), or from tokenizing the piece alone.
func (l *LlamaCpp) targetIDs(ctx context.Context, prompt string, pids []int, target []Token) ([]int, error) {
	var all []byte
	for _, t := range target {
		all = append(all, t.Raw()...)
	}
	if len(target) > 0 && utf8.Valid(all) {
		r, err := l.tokenize(ctx, prompt+string(all), true, true)
		if err != nil {
			return nil, err
		}
		if ids, ok := llamaAlign(r, pids, target); ok {
			return ids, nil
		}
	}
	out := make([]int, len(target))
	for i, t := range target {
		raw := t.Raw()
		if len(raw) == 0 {
			return nil, fmt.Errorf("score: target token %d is empty (a control token?): cannot force it", i)
		}
		if id, ok := l.piece(raw); ok && id >= 0 {
			out[i] = id
			continue
		}
		found := false
		if utf8.Valid(raw) {
			// Special tokens parsed: a generated control token comes back from Greedy as its name.
			r, err := l.tokenize(ctx, string(raw), false, true)
			if err != nil {
				return nil, err
			}
			if len(r.Tokens) == 1 && bytes.Equal(r.Tokens[0].Piece, raw) {
				out[i], found = r.Tokens[0].ID, true
			}
		}
		if !found && !l.knowsAll() {
			// Some tokens never come out of tokenizing text (the pre-tokenizer splits " 2" before
			// BPE sees it) yet the model can generate them. The ranked list over the whole vocabulary
			// names every piece once; one such request teaches them all.
			n, err := l.vocabSize(ctx)
			if err != nil {
				return nil, err
			}
			if _, err := l.list(ctx, pids, n); err != nil {
				return nil, err
			}
			l.mu.Lock()
			l.learnedAll = true
			l.mu.Unlock()
			if id, ok := l.piece(raw); ok && id >= 0 {
				out[i], found = id, true
			}
		}
		if !found {
			if id, ok := l.piece(raw); ok && id < 0 {
				return nil, fmt.Errorf("score: several tokens of this model are the piece %q (target token %d): cannot tell which to force", raw, i)
			}
			return nil, fmt.Errorf("score: no token of this model is the piece %q (target token %d)", raw, i)
		}
	}
	return out, nil
}

// piece returns the id learned for a piece of bytes: -1 when several tokens are that piece.
func (l *LlamaCpp) piece(raw []byte) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id, ok := l.pieces[string(raw)]
	return id, ok
}

func (l *LlamaCpp) knowsAll() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.learnedAll
}

// vocabSize returns the vocabulary size, asking Info the first time.
func (l *LlamaCpp) vocabSize(ctx context.Context) (int, error) {
	l.mu.Lock()
	n := l.vocab
	l.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	info, err := l.Info(ctx)
	return info.Vocab, err
}

// llamaAlign returns the target's ids when r is the prompt's tokens followed by one token per
// target piece.
func llamaAlign(r *llamaTokenizeResponse, pids []int, target []Token) ([]int, bool) {
	if len(r.Tokens) != len(pids)+len(target) {
		return nil, false
	}
	for i, id := range pids {
		if r.Tokens[i].ID != id {
			return nil, false
		}
	}
	ids := make([]int, len(target))
	for i, t := range target {
		tok := r.Tokens[len(pids)+i]
		if !bytes.Equal(tok.Piece, t.Raw()) {
			return nil, false
		}
		ids[i] = tok.ID
	}
	return ids, true
}
