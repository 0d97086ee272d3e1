package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
)

// OpenAIMaxTop is the default longest ranked list asked of an OpenAI-compatible server: OpenAI's
// own cap on top_logprobs, and vLLM's default max_logprobs.
const OpenAIMaxTop = 20

// DefaultOpenAIURL is OpenAI's own API, the base URL when OPENAI_BASE_URL is not set.
const DefaultOpenAIURL = "https://api.openai.com/v1"

// OpenAIEnv returns the base URL and API key from OPENAI_BASE_URL and OPENAI_API_KEY, as OpenAI's
// own clients read them.
func OpenAIEnv() (baseURL, apiKey string) {
	baseURL = os.Getenv("OPENAI_BASE_URL")
	if baseURL == "" {
		baseURL = DefaultOpenAIURL
	}
	return baseURL, os.Getenv("OPENAI_API_KEY")
}

// OpenAI is a model behind an OpenAI-compatible API (OpenAI itself, vLLM, llama-server's /v1,
// and the like), reached with plain JSON over net/http.
//
// Rendering decides how everything else talks to the server. When the server can render the
// model's chat template itself (llama-server's /apply-template), Render returns that text and every
// call is a raw completion (/v1/completions) on it, so a target can be continued and scored token by
// token. Otherwise Render does not guess a template (a ChatML guess would feed a model special
// tokens it may not have): the prompt's text is a plain transcript, "role: content" per message,
// for reading only; calls on it go to /v1/chat/completions with the prompt's messages, and the
// server applies its own template. Such a chat-only server answers whole conversations alone: a
// prompt extended by tokens, or text given as it is, is refused with ErrChatOnly rather than sent
// as raw text in a format the model was never trained on.
//
// Scoring is exact where the server echoes the prompt's log-probabilities (/v1/completions with
// echo and logprobs, as vLLM and OpenAI's legacy models do) and the echoed tokens fall on the
// target's pieces; otherwise each token is looked up in the ranked list before it, and a token
// outside the list gets the list's last value as an upper bound (Exact false).
//
// An OpenAI is safe for concurrent use by multiple goroutines, as an http.Client is; its exported
// fields are settings, to be set before the first call and not changed after.
type OpenAI struct {
	// Seed is sent with greedy requests, for servers whose greedy decoding is not deterministic.
	Seed int
	// TopLogprobs is the longest ranked list asked for (MaxTop); 0 means OpenAIMaxTop.
	TopLogprobs int

	api     *client  // the API's base, ending in /v1: endpoints are appended to it, as OpenAI's clients do
	rootURL *url.URL // the base without /v1, where llama-server's own endpoints live; nil without /v1
	model   string

	mu        sync.Mutex // guards what the server has told so far, below
	info      *ModelInfo
	templated *bool // whether the server renders templates; nil until Render asks
	noEcho    bool  // the server gave no prompt log-probabilities once: do not ask again
}

// ErrChatOnly is the error (inside an *Error) for a prompt a chat-only server cannot answer:
// one extended by tokens, or text that is not a whole conversation.
var ErrChatOnly = errors.New("the server applies the chat template itself and answers only whole conversations, " +
	"not a prompt extended by tokens or cut inside a turn; use a server that renders templates " +
	"(llama-server's /v1, or the llamacpp or ollama backend)")

// NewOpenAI returns a backend for model at an OpenAI-compatible server, sending its requests
// through hc (nil: http.DefaultClient; NewHTTPClient gives one with time limits). base is the
// API's base, as in OPENAI_BASE_URL (e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1);
// a URL with no path gets /v1. apiKey may be empty for local servers.
func NewOpenAI(base *url.URL, apiKey, model string, hc *http.Client) (*OpenAI, error) {
	if err := checkURL("OpenAI-compatible API", base, "http://127.0.0.1:8080/v1"); err != nil {
		return nil, err
	}
	if model == "" {
		return nil, errors.New("openai: no model named")
	}
	u := *base
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path == "" {
		u.Path = "/v1"
	}
	var header http.Header
	if apiKey != "" {
		header = http.Header{"Authorization": {"Bearer " + apiKey}}
	}
	o := &OpenAI{api: newClient("openai", &u, hc, header), model: model}
	if strings.HasSuffix(u.Path, "/v1") {
		r := u
		r.Path = strings.TrimSuffix(u.Path, "/v1")
		o.rootURL = &r
	}
	return o, nil
}

// call asks the API endpoint path (below /v1).
func (o *OpenAI) call(ctx context.Context, op, path string, in, out any) error {
	err := o.api.do(ctx, op, o.api.url(path), in, out)
	var be *Error
	if statusOf(err) == http.StatusNotFound && (op == "completions" || op == "chat") && errors.As(err, &be) {
		// OpenAI and vLLM answer 404 for an unknown model; say which one was asked for.
		be.Err = fmt.Errorf("model %q: %w", o.model, be.Err)
	}
	return err
}

// callRoot asks one of llama-server's own endpoints, beside /v1 (errors name the API's base: the
// URL the user gave). ok is false when the base has no /v1 to strip: then there are none.
func (o *OpenAI) callRoot(ctx context.Context, op, path string, in, out any) (ok bool, err error) {
	if o.rootURL == nil {
		return false, nil
	}
	return true, o.api.do(ctx, op, o.rootURL.JoinPath(path), in, out)
}

// Info implements Backend. It checks the model against the server's /models list where the server
// has one. llama-server adds the vocabulary size and its template (from /props).
func (o *OpenAI) Info(ctx context.Context) (ModelInfo, error) {
	o.mu.Lock()
	cached := o.info
	o.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	base := o.api.base.String()
	info := ModelInfo{Backend: "openai", URL: base, Name: o.model, MaxTop: o.maxTop()}
	var models modelList
	err := o.call(ctx, "models", "models", nil, &models)
	switch code := statusOf(err); {
	case err == nil:
		var ids []string
		found := false
		for _, m := range models.Data {
			ids = append(ids, m.ID)
			if m.ID == o.model || slices.Contains(m.Aliases, o.model) {
				found, info.Vocab = true, m.Meta.NVocab
			}
		}
		if !found && len(ids) > 0 {
			return ModelInfo{}, &Error{Op: "openai models", URL: base, Err: fmt.Errorf("model %q is not served here (the server lists %q)", o.model, ids)}
		}
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		// Some compatible servers have no model list; the first real request will tell.
	default:
		return ModelInfo{}, err
	}
	var props struct {
		ChatTemplate string `json:"chat_template"`
	}
	if ok, err := o.callRoot(ctx, "props", "props", nil, &props); ok && err == nil {
		info.Template = props.ChatTemplate
	}
	o.mu.Lock()
	o.info = &info
	o.mu.Unlock()
	return info, nil
}

// Render implements Backend: the server's own rendering where it offers one (llama-server's
// /apply-template), else a plain transcript that stands for the conversation (see OpenAI).
func (o *OpenAI) Render(ctx context.Context, msgs []Message) (Prompt, error) {
	o.mu.Lock()
	templated := o.templated
	o.mu.Unlock()
	if templated == nil || *templated {
		var resp struct {
			Prompt *string `json:"prompt"`
		}
		ok, err := o.callRoot(ctx, "apply-template", "apply-template", map[string]any{"messages": msgs}, &resp)
		switch code := statusOf(err); {
		case ok && err == nil && resp.Prompt != nil:
			o.setTemplated(true)
			return Prompt{Messages: slices.Clone(msgs), Text: *resp.Prompt}, nil
		case !ok || err == nil || code == http.StatusNotFound || code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented:
			// Chat-only, or no API at this URL at all (a wrong path answers 404 to everything):
			// one token of chat tells them apart, so that a wrong URL fails here with the server's
			// own answer, not later with ErrChatOnly.
			if _, err := o.chat(ctx, msgs, o.request(1, 0, o.Seed), 0); err != nil {
				return Prompt{}, err
			}
			o.setTemplated(false)
		default:
			return Prompt{}, err
		}
	}
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "%s: %s\n\n", m.Role, m.Content)
	}
	b.WriteString("assistant: ")
	return Prompt{Messages: slices.Clone(msgs), Text: b.String()}, nil
}

func (o *OpenAI) setTemplated(t bool) {
	o.mu.Lock()
	o.templated = &t
	o.mu.Unlock()
}

// chatOnly reports whether the server answers only whole conversations: it renders no templates.
// Until Render has asked, the server is taken to continue raw text, as every call then has.
func (o *OpenAI) chatOnly() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.templated != nil && !*o.templated
}

// conversation returns p's messages for a chat-only server, or ErrChatOnly inside an *Error.
func (o *OpenAI) conversation(p Prompt) ([]Message, error) {
	if !p.Whole() {
		return nil, &Error{Op: "openai chat", URL: o.api.base.String(), Err: ErrChatOnly}
	}
	return p.Messages, nil
}

func (o *OpenAI) echoRefused() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.noEcho
}

func (o *OpenAI) refuseEcho() {
	o.mu.Lock()
	o.noEcho = true
	o.mu.Unlock()
}

// oaiLogprob is one entry of the chat format's logprobs.content (llama-server uses it on
// /v1/completions too).
type oaiLogprob struct {
	Token   string       `json:"token"`
	Bytes   []int        `json:"bytes"`
	Logprob float64      `json:"logprob"`
	Top     []oaiLogprob `json:"top_logprobs"`
}

func (e oaiLogprob) token() Token {
	return Token{Text: e.Token, Logprob: e.Logprob, Bytes: tokenBytes(e.Bytes)}
}

// oaiLogprobs holds either format: the chat format (content) or the legacy completions format
// (parallel arrays, one map of alternatives per token, as vLLM and OpenAI's legacy models send).
type oaiLogprobs struct {
	Content       []oaiLogprob         `json:"content"`
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

// oaiStep is one decoded position: the token taken and the ranked list the server reported there.
type oaiStep struct {
	Token Token
	Top   []Token
}

// steps returns one step per token in either format.
func (l *oaiLogprobs) steps() []oaiStep {
	if l == nil {
		return nil
	}
	if len(l.Content) > 0 {
		out := make([]oaiStep, len(l.Content))
		for i, e := range l.Content {
			out[i].Token = e.token()
			for _, c := range e.Top {
				out[i].Top = append(out[i].Top, c.token())
			}
		}
		return out
	}
	out := make([]oaiStep, len(l.Tokens))
	for i, t := range l.Tokens {
		out[i].Token = Token{Text: t, Logprob: math.NaN()}
		if i < len(l.TokenLogprobs) && l.TokenLogprobs[i] != nil {
			out[i].Token.Logprob = *l.TokenLogprobs[i]
		}
		if i < len(l.TopLogprobs) {
			for k, v := range l.TopLogprobs[i] {
				out[i].Top = append(out[i].Top, Token{Text: k, Logprob: v})
			}
			// A JSON object has no order; rank it again.
			sort.SliceStable(out[i].Top, func(a, b int) bool {
				ta, tb := out[i].Top[a], out[i].Top[b]
				return ta.Logprob > tb.Logprob || ta.Logprob == tb.Logprob && ta.Text < tb.Text
			})
		}
	}
	return out
}

type oaiChoice struct {
	Text    string `json:"text"`
	Message struct {
		Content string `json:"content"`
	} `json:"message"`
	Logprobs     *oaiLogprobs `json:"logprobs"`
	FinishReason string       `json:"finish_reason"`
}

type oaiResponse struct {
	Choices []oaiChoice `json:"choices"`
}

// request is the body shared by both endpoints; the fields that differ are set by the caller.
func (o *OpenAI) request(maxTokens int, temperature float64, seed int) map[string]any {
	return map[string]any{"model": o.model, "max_tokens": maxTokens, "temperature": temperature, "top_p": 1, "seed": seed, "stream": false}
}

// chat asks the chat endpoint for the given conversation's continuation. top 0 asks for no
// log-probabilities.
func (o *OpenAI) chat(ctx context.Context, msgs []Message, req map[string]any, top int) (*oaiChoice, error) {
	req["messages"] = msgs
	if top > 0 {
		req["logprobs"] = true
		req["top_logprobs"] = top
	}
	var resp oaiResponse
	if err := o.call(ctx, "chat", "chat/completions", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 {
		return nil, &Error{Op: "openai chat", URL: o.api.base.String(), Err: errors.New("answer has no choices")}
	}
	c := resp.Choices[0]
	c.Text = c.Message.Content
	return &c, nil
}

// complete asks the completions endpoint to continue prompt, with up to top alternatives per token.
func (o *OpenAI) complete(ctx context.Context, prompt string, req map[string]any, top int) (*oaiChoice, error) {
	req["prompt"] = prompt
	if top > 0 {
		req["logprobs"] = top
	}
	var resp oaiResponse
	if err := o.call(ctx, "completions", "completions", req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 {
		return nil, &Error{Op: "openai completions", URL: o.api.base.String(), Err: errors.New("answer has no choices")}
	}
	return &resp.Choices[0], nil
}

// run sends p to the endpoint it belongs to (see OpenAI).
func (o *OpenAI) run(ctx context.Context, p Prompt, req map[string]any, top int) (*oaiChoice, error) {
	if o.chatOnly() {
		msgs, err := o.conversation(p)
		if err != nil {
			return nil, err
		}
		return o.chat(ctx, msgs, req, top)
	}
	return o.complete(ctx, p.Text, req, top)
}

// Greedy implements Backend.
func (o *OpenAI) Greedy(ctx context.Context, p Prompt, maxTokens int) (string, error) {
	c, err := o.run(ctx, p, o.request(maxTokens, 0, o.Seed), 0)
	if err != nil {
		return "", err
	}
	return c.Text, nil
}

// maxTop is ModelInfo.MaxTop.
func (o *OpenAI) maxTop() int {
	if o.TopLogprobs > 0 {
		return o.TopLogprobs
	}
	return OpenAIMaxTop
}

// Next implements Backend. The list comes with a generated token; a server that reports nothing for
// that token (llama-server, when it leaves a UTF-8 character unfinished) gives an empty list.
func (o *OpenAI) Next(ctx context.Context, p Prompt, n int) ([]Token, error) {
	c, err := o.run(ctx, p, o.request(1, 0, o.Seed), min(max(n, 1), o.maxTop()))
	if err != nil {
		return nil, err
	}
	steps := c.Logprobs.steps()
	if len(steps) == 0 {
		return nil, nil
	}
	return steps[0].Top, nil
}

// Score implements Backend: exact from echoed prompt log-probabilities where the server gives them,
// else from ranked lists (exact inside them, bounded outside). A chat-only server cannot continue
// after part of a reply, so the target is compared with the greedy reply: its lists serve while
// the reply follows the target, and after the first difference every token is bounded by 0, the
// one bound that holds without a list.
func (o *OpenAI) Score(ctx context.Context, p Prompt, target []Token) (Score, error) {
	var s Score
	if len(target) == 0 {
		s.Exact = true
		return s, nil
	}
	if o.chatOnly() {
		return o.scoreChat(ctx, p, target)
	}
	if !o.echoRefused() {
		s, ok, err := o.scoreEcho(ctx, p.Text, target)
		if err != nil || ok {
			return s, err
		}
	}
	for _, t := range target {
		list, err := o.Next(ctx, p, o.maxTop())
		if err != nil {
			return Score{}, err
		}
		s.Add(lookup(list, t))
		p = p.Extend(t)
	}
	return s, nil
}

// scoreEcho scores target from the log-probabilities the server reports for its own prompt. ok is
// false when the server gives none or splits the target differently.
func (o *OpenAI) scoreEcho(ctx context.Context, prompt string, target []Token) (Score, bool, error) {
	var all strings.Builder
	all.WriteString(prompt)
	for _, t := range target {
		all.Write(t.Raw())
	}
	req := o.request(1, 0, o.Seed)
	req["echo"] = true
	c, err := o.complete(ctx, all.String(), req, 1)
	if err != nil {
		if statusOf(err)/100 == 4 {
			o.refuseEcho() // the server refuses echo; the list method still works
			return Score{}, false, nil
		}
		return Score{}, false, err
	}
	lp := c.Logprobs
	if lp == nil || len(lp.Tokens) == 0 || len(lp.TokenLogprobs) != len(lp.Tokens) {
		o.refuseEcho()
		return Score{}, false, nil
	}
	// The echoed tokens spell the prompt, then the target piece by piece, then the one generated.
	n := 0
	i := 0
	for ; i < len(lp.Tokens) && n < len(prompt); i++ {
		n += len(lp.Tokens[i])
	}
	if n != len(prompt) || i+len(target) > len(lp.Tokens) {
		return Score{}, false, nil
	}
	var s Score
	for j, t := range target {
		v := lp.TokenLogprobs[i+j]
		if lp.Tokens[i+j] != string(t.Raw()) || v == nil {
			return Score{}, false, nil
		}
		s.Add(TokenScore{Text: t.Text, Logprob: *v, Exact: true})
	}
	return s, true, nil
}

func (o *OpenAI) scoreChat(ctx context.Context, p Prompt, target []Token) (Score, error) {
	// A few tokens to spare: a server may fold a token that ends inside a UTF-8 character into the
	// next entry (llama-server does), and a reply cut there would lose the target's last token.
	steps, err := o.reply(ctx, p, len(target)+4)
	if err != nil {
		return Score{}, err
	}
	var s Score
	following := true
	for i, t := range target {
		if !following || i >= len(steps) {
			s.Add(TokenScore{Text: t.Text, Logprob: 0, Exact: false})
			continue
		}
		st := steps[i]
		if !bytes.Equal(st.Token.Raw(), t.Raw()) {
			s.Add(lookup(st.Top, t))
			following = false
			continue
		}
		// A step whose token is not first in its own list is several tokens folded together
		// (llama-server folds those that end inside a UTF-8 character): its value is the last
		// one's alone, an upper bound for them all.
		exact := len(st.Top) > 0 && bytes.Equal(st.Top[0].Raw(), st.Token.Raw())
		s.Add(TokenScore{Text: t.Text, Logprob: st.Token.Logprob, Exact: exact})
	}
	return s, nil
}

// modelList is the answer of /v1/models; llama-server adds each model's vocabulary size.
type modelList struct {
	Data []struct {
		ID      string   `json:"id"`
		Aliases []string `json:"aliases"`
		Meta    struct {
			NVocab int `json:"n_vocab"`
		} `json:"meta"`
	} `json:"data"`
}

// reply returns the steps of the greedy reply of a chat-only server to p, up to n tokens.
func (o *OpenAI) reply(ctx context.Context, p Prompt, n int) ([]oaiStep, error) {
	msgs, err := o.conversation(p)
	if err != nil {
		return nil, err
	}
	c, err := o.chat(ctx, msgs, o.request(n, 0, o.Seed), o.maxTop())
	if err != nil {
		return nil, err
	}
	return c.Logprobs.steps(), nil
}

// ScoreText implements Backend from ranked lists: approximate, see scoreTextByLists. A chat-only
// server gives lists only along its greedy reply: they serve while the reply follows the text (see
// textStep), and after the first difference every piece is bounded by 0, as in Score.
func (o *OpenAI) ScoreText(ctx context.Context, p Prompt, text string) (Score, error) {
	if !o.chatOnly() {
		return scoreTextByLists(ctx, o.Next, o.maxTop(), p, text)
	}
	s := Score{Exact: true}
	if text == "" {
		return s, nil
	}
	// A token covers at least one byte: as many tokens as bytes always reach the text's end.
	steps, err := o.reply(ctx, p, min(len(text), chatTextMax))
	if err != nil {
		return Score{}, err
	}
	following := true
	for done, i := 0, 0; done < len(text); i++ {
		var list []Token
		if following && i < len(steps) {
			list = steps[i].Top
		}
		w, ts := textStep(list, text[done:])
		s.Add(ts)
		following = following && i < len(steps) && string(steps[i].Token.Raw()) == text[done:done+w]
		done += w
	}
	return s, nil
}

// chatTextMax bounds the reply ScoreText asks of a chat-only server; pieces beyond it are bounded.
const chatTextMax = 1024
