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

	mu        sync.Mutex // guards what the server has told so far, below
	info      *ModelInfo
	vocab     int
	probe     int            // a token forced only to read the ranked list; -1 until known
	pieces    map[string]int // the vocabulary: token bytes -> id, -1 for a piece several share; nil until needed
	noGrammar bool           // the server refused a token-level grammar: Score forces token by token
	specials  map[int]string // text of tokens that render as no bytes (control tokens)
	eos       int            // the end-of-sequence token's id, -1 when unknown; set by Info
	plain     map[int]bool   // ids seen in text tokenized without special tokens: never control tokens
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
	return &LlamaCpp{c: newClient("llama.cpp", &u, hc, nil), model: model, probe: -1, specials: map[int]string{}}, nil
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
	Tokens []llamaToken `json:"tokens"`
}

type llamaToken struct {
	ID    int        `json:"id"`
	Piece llamaPiece `json:"piece"`
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
	return &resp, nil
}

// textIDs tokenizes a prompt as llama-server tokenizes a text prompt: special tokens parsed, BOS
// added when the model asks for it (its /apply-template output leaves the BOS out for that reason).
func (l *LlamaCpp) textIDs(ctx context.Context, text string) ([]int, error) {
	r, err := l.tokenize(ctx, text, true, true)
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
	return ids, nil
}

// ids returns p's token ids: those it carries, else its text tokenized.
func (l *LlamaCpp) ids(ctx context.Context, p Prompt) ([]int, error) {
	if p.IDs != nil {
		return p.IDs, nil
	}
	return l.textIDs(ctx, p.Text)
}

// Info implements Backend with /props, /v1/models and one /tokenize (the end-of-sequence token's
// id, see forcedAll). llama-server does not know its GGUF file's digest, so Digest stays empty.
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
		EOSToken     string `json:"eos_token"`
	}
	if err := l.call(ctx, "props", "/props", nil, &props); err != nil {
		return ModelInfo{}, err
	}
	var models modelList
	if err := l.call(ctx, "models", "/v1/models", nil, &models); err != nil {
		return ModelInfo{}, err
	}
	info := ModelInfo{Backend: "llamacpp", URL: l.c.base.String(), Name: props.ModelAlias, Template: props.ChatTemplate,
		MaxTop: LlamaCppMaxTop, Slots: props.TotalSlots}
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
	if info.Vocab > 0 && info.Vocab < LlamaCppMaxTop {
		info.MaxTop = info.Vocab
	}
	// The end-of-sequence token's id, which a score's grammar must never hold (forcedAll).
	eos := -1
	if props.EOSToken != "" {
		r, err := l.tokenize(ctx, props.EOSToken, false, true)
		if err != nil {
			return ModelInfo{}, err
		}
		if len(r.Tokens) == 1 {
			eos = r.Tokens[0].ID
		}
	}
	l.mu.Lock()
	l.info, l.vocab, l.eos = &info, info.Vocab, eos
	l.mu.Unlock()
	return info, nil
}

// eosID returns the id of the model's end-of-sequence token, as /props names its text, or -1
// where the server does not say or the text is not one token. Info finds it.
func (l *LlamaCpp) eosID(ctx context.Context) (int, error) {
	if _, err := l.Info(ctx); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.eos, nil
}

// Render implements Backend with the server's own template (/apply-template), which renders the
// conversation as its chat endpoint would, up to where the assistant's reply begins, and the
// server's tokenizer, so that the prompt carries its token ids.
func (l *LlamaCpp) Render(ctx context.Context, msgs []Message) (Prompt, error) {
	var resp struct {
		Prompt *string `json:"prompt"`
	}
	if err := l.call(ctx, "apply-template", "/apply-template", map[string]any{"messages": msgs}, &resp); err != nil {
		return Prompt{}, err
	}
	if resp.Prompt == nil {
		return Prompt{}, &Error{Op: "llama.cpp apply-template", URL: l.c.base.String(), Err: errors.New("answer has no prompt")}
	}
	ids, err := l.textIDs(ctx, *resp.Prompt)
	if err != nil {
		return Prompt{}, err
	}
	return Prompt{Messages: slices.Clone(msgs), Text: *resp.Prompt, IDs: ids}, nil
}

// Greedy implements Backend. The end-of-generation token that stops decoding is left out of the
// text; a control token decoded before it (as <|im_start|>) is spelled by its name.
func (l *LlamaCpp) Greedy(ctx context.Context, p Prompt, maxTokens int) (string, error) {
	ids, err := l.ids(ctx, p)
	if err != nil {
		return "", err
	}
	req := l.greedy(ids, maxTokens, 1)
	req.ReturnTokens = true
	r, err := l.complete(ctx, req)
	if err != nil {
		return "", err
	}
	toks := r.Tokens
	if r.StopType == "eos" && len(toks) > 0 {
		toks = toks[:len(toks)-1]
	}
	var text []byte
	entries := r.Probs
	unfinished := 0 // tokens since the last entry: they leave a UTF-8 character unfinished
	for _, id := range toks {
		if len(entries) == 0 || entries[0].ID != id {
			// llama-server gives no entry to a token that leaves a character unfinished; its
			// bytes come at the front of the next entry's.
			unfinished++
			continue
		}
		e := entries[0]
		entries = entries[1:]
		unfinished = 0
		if len(e.Bytes) == 0 {
			text = append(text, l.special(ctx, e.ID)...)
			continue
		}
		text = append(text, e.Bytes...)
	}
	// Decoding stopped inside a character: read the last tokens' bytes off the ranked lists at
	// their places, where greedy decoding put them first.
	seq := append(slices.Clip(ids), toks[:len(toks)-unfinished]...)
	for _, id := range toks[len(toks)-unfinished:] {
		list, err := l.list(ctx, seq, 1)
		if err != nil {
			return "", err
		}
		if list[0].ID != id {
			return "", &Error{Op: "llama.cpp completion", URL: l.c.base.String(),
				Err: fmt.Errorf("greedy token %d is not first in the server's own ranked list", id)}
		}
		text = append(text, list[0].Bytes...)
		seq = append(seq, id)
	}
	return string(text), nil
}

// maxTop is ModelInfo.MaxTop: LlamaCppMaxTop, or the vocabulary size once Info has seen a
// smaller one.
func (l *LlamaCpp) maxTop() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.vocab > 0 && l.vocab < LlamaCppMaxTop {
		return l.vocab
	}
	return LlamaCppMaxTop
}

// Next implements Backend. The tokens carry their ids.
func (l *LlamaCpp) Next(ctx context.Context, p Prompt, n int) ([]Token, error) {
	ids, err := l.ids(ctx, p)
	if err != nil {
		return nil, err
	}
	list, err := l.list(ctx, ids, min(max(n, 1), l.maxTop()))
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
	return r.Probs[0].list(), nil
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
		t := Token{Text: c.Token, Bytes: []byte(c.Bytes), Logprob: c.logprob(), ID: c.ID, HasID: true}
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
// Target tokens without ids (made from text, as a key's) are first mapped to ids (targetIDs).
func (l *LlamaCpp) Score(ctx context.Context, p Prompt, target []Token) (Score, error) {
	ids, err := l.ids(ctx, p)
	if err != nil {
		return Score{}, err
	}
	tids, err := l.targetIDs(ctx, p.Text, ids, target)
	if err != nil {
		return Score{}, err
	}
	return l.scoreIDs(ctx, ids, tids, target)
}

// ScoreText implements Backend, exactly: the text is tokenized after the prompt as the server
// tokenizes the two together (so the first token may merge with nothing of the prompt only when
// the tokenizer says so), then forced like a Score target. Special tokens are parsed in the
// prompt only: a text that spells a control token's name is scored as plain text, tokenized on
// its own. That check costs one more tokenize request (two where the text tokenizes otherwise in
// context than alone), saved once every token of the text has been seen in plain text before.
func (l *LlamaCpp) ScoreText(ctx context.Context, p Prompt, text string) (Score, error) {
	ids, err := l.ids(ctx, p)
	if err != nil {
		return Score{}, err
	}
	if text == "" {
		return Score{Exact: true}, nil
	}
	r, err := l.tokenize(ctx, p.Text+text, true, true)
	if err != nil {
		return Score{}, err
	}
	aligned := len(r.Tokens) > len(ids)
	for i := 0; aligned && i < len(ids); i++ {
		aligned = r.Tokens[i].ID == ids[i]
	}
	rest := r.Tokens[min(len(ids), len(r.Tokens)):]
	if aligned && l.allPlain(rest) {
		// Every token has come out of plain text before, so none is a parsed control token:
		// the check below would keep these tokens, and its request is saved.
		return l.scoreTokens(ctx, ids, rest)
	}
	plain, err := l.tokenize(ctx, text, false, false)
	if err != nil {
		return Score{}, err
	}
	l.notePlain(plain.Tokens)
	switch {
	case !aligned:
		// The text's first piece merged with the prompt's end: tokenize the text on its own.
		rest = plain.Tokens
	case !sameIDs(rest, plain.Tokens):
		// In context the text tokenizes otherwise than alone: a boundary effect, or the text
		// spells a control token's name (as "<|im_end|>"), which tokenizing with special tokens
		// parsed turned into that token. A record is scored as the characters it is made of, so
		// then the plain tokens are scored. A control token must never reach forcedAll's
		// grammar: llama-server aborts, the whole process, when a grammar makes it accept an
		// end-of-generation token before the grammar's end.
		special, err := l.tokenize(ctx, text, false, true)
		if err != nil {
			return Score{}, err
		}
		if !sameIDs(special.Tokens, plain.Tokens) {
			rest = plain.Tokens
		}
	}
	return l.scoreTokens(ctx, ids, rest)
}

// scoreTokens forces tokenized text after the prompt ids.
func (l *LlamaCpp) scoreTokens(ctx context.Context, ids []int, toks []llamaToken) (Score, error) {
	tids := make([]int, len(toks))
	target := make([]Token, len(toks))
	for i, t := range toks {
		tids[i], target[i] = t.ID, Token{Text: string(t.Piece), Bytes: []byte(t.Piece)}
	}
	return l.scoreIDs(ctx, ids, tids, target)
}

// notePlain records ids that tokenizing text without special tokens gave: llama.cpp's tokenizer
// matches control tokens only when asked to parse special tokens, so none of these is one.
func (l *LlamaCpp) notePlain(toks []llamaToken) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.plain == nil {
		l.plain = make(map[int]bool)
	}
	for _, t := range toks {
		l.plain[t.ID] = true
	}
}

// allPlain reports whether every token is one notePlain has seen.
func (l *LlamaCpp) allPlain(toks []llamaToken) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range toks {
		if !l.plain[t.ID] {
			return false
		}
	}
	return true
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
	// A control token (no bytes of its own: an end-of-generation token from a ranked list, say),
	// and the end-of-sequence token however it is spelled, stay out of the grammar: llama-server
	// aborts when a grammar makes it accept an end-of-generation token before the grammar's end.
	// It and what follows go one by one.
	eos, err := l.eosID(ctx)
	if err != nil {
		return nil, err
	}
	for k, t := range target {
		if len(t.Raw()) == 0 || ids[k] == eos {
			ids = ids[:k]
			break
		}
	}
	if len(ids) < 2 {
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
	// The same bias on every token of the target: the sampler's first pick is then the target's
	// token with the highest raw logit, often the one the grammar wants, so llama-server need not
	// run the grammar over the whole vocabulary again (its resampling, about 0.1 ms a token for a
	// vocabulary of 2,048 and growing with it). The reported values stay the raw model's.
	seen := make(map[int]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			req.LogitBias = append(req.LogitBias, [2]float64{float64(id), llamaForce})
		}
	}
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

// targetIDs returns the target's token ids: the ones the tokens carry when every one does.
// Otherwise the ids in context are best: tokenizing the prompt followed by the target's text
// gives them when the tokenizer splits the target into exactly these pieces (a piece tokenized
// alone can come out as another id, e.g. with a SentencePiece prefix space). Failing that, each
// piece's id is found alone (pieceID).
func (l *LlamaCpp) targetIDs(ctx context.Context, prompt string, pids []int, target []Token) ([]int, error) {
	out := make([]int, len(target))
	all := true
	for i, t := range target {
		out[i], all = t.ID, all && t.HasID
	}
	if all {
		return out, nil
	}
	var text []byte
	for _, t := range target {
		text = append(text, t.Raw()...)
	}
	if len(target) > 0 && utf8.Valid(text) {
		r, err := l.tokenize(ctx, prompt+string(text), true, true)
		if err != nil {
			return nil, err
		}
		if ids, ok := llamaAlign(r, pids, target); ok {
			return ids, nil
		}
	}
	for i, t := range target {
		id, err := l.pieceID(ctx, pids, t.Raw())
		if err != nil {
			return nil, fmt.Errorf("score: target token %d: %w", i, err)
		}
		out[i] = id
	}
	return out, nil
}

// pieceID returns the id of the one token whose bytes are raw: as the tokenizer gives it for raw
// alone (special tokens parsed: a control token in Greedy's text is spelled by its name), else
// from the vocabulary's pieces. Some tokens never come out of tokenizing text (the pre-tokenizer
// splits " 2" before BPE sees it) yet the model can generate them.
func (l *LlamaCpp) pieceID(ctx context.Context, prompt []int, raw []byte) (int, error) {
	if len(raw) == 0 {
		return 0, errors.New("empty (a control token?): cannot force it")
	}
	if utf8.Valid(raw) {
		r, err := l.tokenize(ctx, string(raw), false, true)
		if err != nil {
			return 0, err
		}
		if len(r.Tokens) == 1 && bytes.Equal(r.Tokens[0].Piece, raw) {
			return r.Tokens[0].ID, nil
		}
	}
	pieces, err := l.vocabulary(ctx, prompt)
	if err != nil {
		return 0, err
	}
	switch id, ok := pieces[string(raw)]; {
	case !ok:
		return 0, fmt.Errorf("no token of this model is the piece %q", raw)
	case id < 0:
		return 0, fmt.Errorf("several tokens of this model are the piece %q: cannot tell which to force", raw)
	default:
		return id, nil
	}
}

// vocabulary maps every piece of the model's vocabulary to its id (-1 for a piece several tokens
// share), read once from the ranked list over the whole vocabulary after prompt, which names every
// token once.
func (l *LlamaCpp) vocabulary(ctx context.Context, prompt []int) (map[string]int, error) {
	l.mu.Lock()
	pieces := l.pieces
	l.mu.Unlock()
	if pieces != nil {
		return pieces, nil
	}
	n, err := l.vocabSize(ctx)
	if err != nil {
		return nil, err
	}
	list, err := l.list(ctx, prompt, n)
	if err != nil {
		return nil, err
	}
	pieces = make(map[string]int, len(list))
	for _, c := range list {
		if len(c.Bytes) == 0 {
			continue
		}
		if old, ok := pieces[string(c.Bytes)]; ok && old != c.ID {
			pieces[string(c.Bytes)] = -1
		} else {
			pieces[string(c.Bytes)] = c.ID
		}
	}
	l.mu.Lock()
	l.pieces = pieces
	l.mu.Unlock()
	return pieces, nil
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

// sameIDs reports whether two tokenizations are the same token for token.
func sameIDs(a, b []llamaToken) bool {
	return slices.EqualFunc(a, b, func(x, y llamaToken) bool { return x.ID == y.ID })
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
