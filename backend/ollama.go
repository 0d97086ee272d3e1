package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/auth"
	"github.com/ollama/ollama/envconfig"
	"github.com/ollama/ollama/template"
)

// OllamaMaxTop is the longest ranked list Ollama returns (top_logprobs is capped at 20).
const OllamaMaxTop = 20

// DefaultOllamaURL is where Ollama listens unless OLLAMA_HOST says otherwise.
const DefaultOllamaURL = "http://127.0.0.1:11434"

// OllamaURL returns the server URL from OLLAMA_HOST, read by the ollama module's own envconfig so
// that vtune and the ollama command agree ("127.0.0.1" means port 11434, not 80), or the default.
func OllamaURL() string {
	return envconfig.Host().String()
}

// Ollama is a model served by an Ollama server, reached through this package's JSON client with
// Ollama's own request and answer types, and its authentication for hosted servers. Ollama's Go
// client is not used for requests: it reads every generate answer, streamed or not, through a
// scanner that allocates an 8 MB buffer per request, which made planting's heap churn.
//
// Every request is a raw generate on text rendered with the model's own chat template (the one the
// server reports, executed by Ollama's template package, exactly as its chat endpoint would), so the
// same prompt can be decoded, continued token by token, or scored.
//
// An Ollama is safe for concurrent use by multiple goroutines, as an http.Client is; its exported
// fields are settings, to be set before the first call and not changed after.
type Ollama struct {
	// KeepAlive is how long the server keeps the model loaded after a request; nil leaves the
	// server's default.
	KeepAlive *time.Duration

	url   string
	model string
	c     *client

	mu   sync.Mutex // guards the model's description, read once by Info
	info *ModelInfo
	tmpl *template.Template
}

// NewOllama returns a backend for model on the Ollama server at base, sending its requests
// through hc (nil: http.DefaultClient; NewHTTPClient gives one with time limits). It does not
// contact the server: Info does.
func NewOllama(base *url.URL, model string, hc *http.Client) (*Ollama, error) {
	if err := checkURL("Ollama", base, DefaultOllamaURL); err != nil {
		return nil, err
	}
	if model == "" {
		return nil, errors.New("ollama: no model named")
	}
	// The API's own path is a common paste ("http://host:11434/api"); the client adds it itself.
	u := *base
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/api")
	c := newClient("ollama", &u, hc, nil)
	c.sign = signOllama(u.Path)
	return &Ollama{url: u.String(), model: model, c: c}, nil
}

// do sends in to Ollama's endpoint at path ("api/show") and decodes the answer into out, as the
// shared client does; a missing model is said as such.
func (o *Ollama) do(ctx context.Context, op, path string, in, out any) error {
	err := o.c.do(ctx, op, o.c.url(path), in, out)
	var he *HTTPError
	if errors.As(err, &he) && he.StatusCode == http.StatusNotFound && strings.Contains(he.Message, "not found") {
		return &Error{Op: "ollama " + op, URL: o.url, Err: fmt.Errorf("model %q not found (create or pull it first)", o.model)}
	}
	return err
}

// signOllama returns the signing that Ollama's own client does (api.Client.do): a request to
// ollama.com, or any request when OLLAMA_AUTH is set, carries a token signed with the user's Ollama
// key over the method, the API path and the time, which also goes in the query. base is the
// server URL's own path, which the signed API path leaves out.
func signOllama(base string) func(*http.Request) error {
	return func(req *http.Request) error {
		if !envconfig.UseAuth() && req.URL.Hostname() != "ollama.com" {
			return nil
		}
		now := strconv.FormatInt(time.Now().Unix(), 10)
		path := "/" + strings.TrimLeft(strings.TrimPrefix(req.URL.Path, base), "/")
		token, err := auth.Sign(req.Context(), fmt.Appendf(nil, "%s,%s?ts=%s", req.Method, path, now))
		if err != nil {
			return fmt.Errorf("signing the request with the Ollama key: %w", err)
		}
		q := req.URL.Query()
		q.Set("ts", now)
		req.URL.RawQuery = q.Encode()
		req.Header.Set("Authorization", token)
		return nil
	}
}

// Info implements Backend.
func (o *Ollama) Info(ctx context.Context) (ModelInfo, error) {
	o.mu.Lock()
	cached := o.info
	o.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	var show api.ShowResponse
	if err := o.do(ctx, "show", "api/show", &api.ShowRequest{Model: o.model}, &show); err != nil {
		return ModelInfo{}, err
	}
	if show.Template == "" {
		return ModelInfo{}, &Error{Op: "ollama show", URL: o.url, Err: fmt.Errorf("model %q has no chat template (renderer %q): vtune needs the template to build prompts", o.model, show.Renderer)}
	}
	tmpl, err := template.Parse(show.Template)
	if err != nil {
		return ModelInfo{}, &Error{Op: "ollama show", URL: o.url, Err: fmt.Errorf("model %q: chat template: %v", o.model, err)}
	}
	info := ModelInfo{Backend: "ollama", URL: o.url, Name: o.model, Template: show.Template, MaxTop: OllamaMaxTop}
	if arch, ok := show.ModelInfo["general.architecture"].(string); ok {
		if v, ok := show.ModelInfo[arch+".vocab_size"].(float64); ok {
			info.Vocab = int(v)
		}
	}
	var list api.ListResponse
	if o.do(ctx, "list", "api/tags", nil, &list) == nil {
		for _, m := range list.Models {
			if m.Name == o.model || m.Model == o.model || m.Name == o.model+":latest" {
				info.Digest = m.Digest
			}
		}
	}
	o.mu.Lock()
	o.info, o.tmpl = &info, tmpl
	o.mu.Unlock()
	return info, nil
}

// Render implements Backend with the model's template, as Ollama's chat endpoint renders it.
func (o *Ollama) Render(ctx context.Context, msgs []Message) (Prompt, error) {
	tmpl, err := o.template(ctx)
	if err != nil {
		return Prompt{}, err
	}
	am := make([]api.Message, len(msgs))
	for i, m := range msgs {
		am[i] = api.Message{Role: m.Role, Content: m.Content}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, template.Values{Messages: am}); err != nil {
		return Prompt{}, fmt.Errorf("rendering chat template of %q: %w", o.model, err)
	}
	return Prompt{Messages: slices.Clone(msgs), Text: b.String()}, nil
}

// template returns the model's chat template, asking Info the first time.
func (o *Ollama) template(ctx context.Context) (*template.Template, error) {
	o.mu.Lock()
	tmpl := o.tmpl
	o.mu.Unlock()
	if tmpl != nil {
		return tmpl, nil
	}
	if _, err := o.Info(ctx); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tmpl, nil
}

// generate runs one raw, non-streaming generate request: one JSON answer.
func (o *Ollama) generate(ctx context.Context, prompt string, opts map[string]any, top int) (*api.GenerateResponse, error) {
	stream := false
	req := &api.GenerateRequest{
		Model: o.model, Prompt: prompt, Raw: true, Stream: &stream, Options: opts,
		Logprobs: true, TopLogprobs: top,
	}
	if o.KeepAlive != nil {
		req.KeepAlive = &api.Duration{Duration: *o.KeepAlive}
	}
	var out api.GenerateResponse
	if err := o.do(ctx, "generate", "api/generate", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// greedyOptions really are greedy: without repeat_penalty 1 the llama.cpp runner applies 1.1 and the
// greedy text changes.
func greedyOptions(n int) map[string]any {
	return map[string]any{"temperature": 0, "top_k": 1, "top_p": 1, "min_p": 0, "repeat_penalty": 1, "seed": 0, "num_predict": n}
}

func token(t api.TokenLogprob) Token {
	return Token{Text: t.Token, Logprob: t.Logprob, Bytes: tokenBytes(t.Bytes)}
}

// Greedy implements Backend.
func (o *Ollama) Greedy(ctx context.Context, p Prompt, maxTokens int) (string, error) {
	r, err := o.generate(ctx, p.Text, greedyOptions(maxTokens), 0)
	if err != nil {
		return "", err
	}
	return r.Response, nil
}

// nextTries is how many draws Next makes before it concludes the model insists on stopping.
const nextTries = 8

// Next implements Backend. Ollama reports the ranked list only alongside a generated token, and a
// step whose token is a stop token comes back without one. The list is a log-softmax of the raw
// logits, independent of the sampler, so Next samples its one token at a high temperature, where
// a stop token is rarely drawn even when it is the likeliest, and draws again with other seeds when
// it is; if every draw stops, the model all but insists on stopping there and Next returns an
// empty list.
func (o *Ollama) Next(ctx context.Context, p Prompt, n int) ([]Token, error) {
	n = min(max(n, 1), OllamaMaxTop)
	for seed := 1; seed <= nextTries; seed++ {
		opts := map[string]any{"temperature": 1.5, "top_k": 0, "top_p": 1, "min_p": 0, "repeat_penalty": 1, "seed": seed, "num_predict": 1}
		r, err := o.generate(ctx, p.Text, opts, n)
		if err != nil {
			return nil, err
		}
		if len(r.Logprobs) > 0 {
			top := r.Logprobs[0].TopLogprobs
			out := make([]Token, len(top))
			for i, t := range top {
				out[i] = token(t)
			}
			return out, nil
		}
	}
	return nil, nil
}

// Score implements Backend. Ollama cannot force a token, so each target token is looked up in the
// ranked list after the prompt and the target's earlier tokens: exact when it is among the top 20,
// else bounded by the 20th value (every token outside the list is no likelier than it). The lists
// are read off greedy decoding while it follows the target (see walk).
func (o *Ollama) Score(ctx context.Context, p Prompt, target []Token) (Score, error) {
	i := 0
	return o.walk(ctx, p, func() bool { return i == len(target) }, func(list []Token) (string, TokenScore) {
		t := target[i]
		i++
		return string(t.Raw()), lookup(list, t)
	})
}

// ScoreText implements Backend from ranked lists (Ollama has no tokenize endpoint), step by step as
// textStep says: approximate, read off greedy decoding as walk says.
func (o *Ollama) ScoreText(ctx context.Context, p Prompt, text string) (Score, error) {
	done := 0
	return o.walk(ctx, p, func() bool { return done == len(text) }, func(list []Token) (string, TokenScore) {
		w, ts := textStep(list, text[done:])
		done += w
		return text[done-w : done], ts
	})
}

// walk scores a sequence after p, one piece a step until finished says so: step is given the
// ranked list at the current position and returns the next piece and its score.
// Greedy decoding reports the list at every step it takes, so one request serves every step for as
// long as the greedy path follows the sequence; a new request starts where it leaves it. A model
// that learned the sequence follows it to the end in one or two requests; one that did not costs
// about a request a token, as asking for the list at every step would.
func (o *Ollama) walk(ctx context.Context, p Prompt, finished func() bool, step func(list []Token) (string, TokenScore)) (Score, error) {
	s := Score{Exact: true}
	ahead := followMin
	for !finished() {
		r, err := o.generate(ctx, p.Text, greedyOptions(ahead), OllamaMaxTop)
		if err != nil {
			return Score{}, err
		}
		if len(r.Logprobs) == 0 {
			// The greedy token was a stop token, which comes back without its list: ask for
			// the list alone.
			list, err := o.Next(ctx, p, OllamaMaxTop)
			if err != nil {
				return Score{}, err
			}
			piece, ts := step(list)
			s.Add(ts)
			p = p.Extend(Token{Text: piece})
			ahead = followMin
			continue
		}
		followed := 0
		for _, lp := range r.Logprobs {
			list := make([]Token, len(lp.TopLogprobs))
			for i, t := range lp.TopLogprobs {
				list[i] = token(t)
			}
			piece, ts := step(list)
			s.Add(ts)
			p = p.Extend(Token{Text: piece})
			if finished() || string(token(lp.TokenLogprob).Raw()) != piece {
				break // the sequence is scored, or the greedy path left it
			}
			followed++
		}
		// Look further ahead while the path follows, less far once it strays.
		if followed == len(r.Logprobs) && followed == ahead {
			ahead = min(2*ahead, followMax)
		} else {
			ahead = followMin
		}
	}
	return s, nil
}

// followMin and followMax bound how many tokens ScoreText decodes in one request.
const (
	followMin = 4
	followMax = 64
)
