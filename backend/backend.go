// Package backend talks to the servers that run a model: one client per serving stack (Ollama,
// llama.cpp's llama-server, OpenAI-compatible servers) behind the small Backend interface, which is
// all that planting and verification need from a model.
//
// A Prompt is a conversation rendered with the model's chat template (see Backend.Render), so every
// call sees exactly the tokens a chat request would, and a signature can be continued or scored
// token by token after it (Prompt.Extend). It keeps the conversation, for servers that answer
// only whole conversations, and the token ids where the server gives them.
package backend

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Message is one turn of a conversation, as in the OpenAI fine-tuning format.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Token is one vocabulary entry as the server reports it, with its log-probability (natural log)
// at the position where it was seen.
type Token struct {
	// Text is the token's text as the server shows it. For tokens that end inside a UTF-8
	// character it may hold a replacement character; Bytes is authoritative.
	Text string `json:"text"`
	// Bytes are the token's raw bytes where the server gives them, else the bytes of Text.
	Bytes   []byte  `json:"-"`
	Logprob float64 `json:"logprob"`
	// ID is the token's id in the model's vocabulary where the server gives ids (llama.cpp);
	// HasID says whether it did. A token made from text alone has none.
	ID    int  `json:"-"`
	HasID bool `json:"-"`
}

// Raw returns the token's bytes: Bytes when the server gave them, else Text.
func (t Token) Raw() []byte {
	if t.Bytes != nil {
		return t.Bytes
	}
	return []byte(t.Text)
}

// Prompt is what a model is asked to continue: a conversation rendered by Backend.Render, perhaps
// extended token by token with Extend, or text given as it is (Prompt{Text: ...}: the start of a
// rendering cut inside a turn, say). A Prompt is a value: Extend returns a new one and shares no
// memory with the old, so one prompt can be extended along several paths.
type Prompt struct {
	// Messages is the conversation the prompt was rendered from; nil for text given as it is.
	Messages []Message
	// Text is what the model reads: the rendered conversation, then the tokens in Reply.
	Text string
	// IDs, where set, are the tokens a server that takes token ids (llama.cpp) is sent instead of
	// Text tokenized: Render sets them to that tokenization, so it is asked for once; a caller
	// may set any sequence it means (a greedy path, id by id). Nil: the server tokenizes Text.
	IDs []int
	// Reply holds the tokens Extend added after the rendered conversation.
	Reply []Token
}

// Extend returns p followed by token t. The prompt is its text: IDs are cleared, and a server that
// takes ids tokenizes the new text, which may merge t with what precedes it (" f" + "all" read
// back as " fall"). That is what the method needs: the training data is text, a server without
// ids (Ollama) can only be sent text, and signatures drawn on the text are the same on every
// serving stack.
func (p Prompt) Extend(t Token) Prompt {
	q := p
	q.Text = p.Text + string(t.Raw())
	q.Reply = append(slices.Clip(p.Reply), t)
	q.IDs = nil
	return q
}

// Whole reports whether p is a rendered conversation with nothing added: the only prompt a server
// that applies the chat template itself can answer.
func (p Prompt) Whole() bool { return p.Messages != nil && len(p.Reply) == 0 }

// TokenScore is the teacher-forced log-probability of one target token. When Exact is false the
// server could not give the token's own probability (it was outside the ranked list it returns) and
// Logprob is an upper bound: the lowest log-probability in that list.
type TokenScore struct {
	Text    string  `json:"text"`
	Logprob float64 `json:"logprob"`
	Exact   bool    `json:"exact"`
}

// Score is the teacher-forced log-probability of a whole target: the sum of its tokens' scores.
type Score struct {
	Logprob float64      `json:"logprob"`
	Exact   bool         `json:"exact"` // every token exact
	Tokens  []TokenScore `json:"tokens,omitempty"`
}

// Add appends one token's score.
func (s *Score) Add(t TokenScore) {
	if len(s.Tokens) == 0 {
		s.Exact = true
	}
	s.Tokens = append(s.Tokens, t)
	s.Logprob += t.Logprob
	s.Exact = s.Exact && t.Exact
}

// ModelInfo identifies the model a backend serves.
type ModelInfo struct {
	Backend string `json:"backend"`          // "ollama", "llamacpp", "openai"
	URL     string `json:"url"`              // the server's base URL
	Name    string `json:"name"`             // the model's name on that server
	Digest  string `json:"digest,omitempty"` // content digest, where the server gives one
	Vocab   int    `json:"vocab,omitempty"`  // vocabulary size, where known
	// Template is the chat template the server applies, as the server reports it.
	Template string `json:"template,omitempty"`
	// MaxTop is the longest ranked list Next can return. It describes this server, not the
	// model, so keys and reports leave it out.
	MaxTop int `json:"-"`
	// Slots is how many requests the server says it runs at once (llama-server's -np); 0 when
	// it does not say. It too describes the server, not the model.
	Slots int `json:"-"`
}

// Backend is a model served by one serving stack. Implementations are safe for concurrent use by
// multiple goroutines.
type Backend interface {
	// Info identifies the served model and says how far Next can rank (ModelInfo.MaxTop). It
	// also checks that the server answers and that the model exists, so callers use it first to
	// fail early with a clear error.
	Info(ctx context.Context) (ModelInfo, error)

	// Render turns a conversation into the prompt the model's chat template produces, ending
	// where the assistant's reply begins.
	Render(ctx context.Context, msgs []Message) (Prompt, error)

	// Greedy decodes up to maxTokens tokens after p greedily (temperature 0, top-k 1, no repeat
	// penalty, fixed seed) and returns the text. A control token decoded before the end is
	// spelled by its name, so the text cannot pass for what would follow it.
	Greedy(ctx context.Context, p Prompt, maxTokens int) (string, error)

	// Next returns the model's ranked next-token list after p, best first, with at most n
	// entries (the server may cap n lower: ModelInfo.MaxTop says how far).
	Next(ctx context.Context, p Prompt, n int) ([]Token, error)

	// Score teacher-forces target, the tokens to force one after another, after p and returns
	// each token's log-probability, exact or bounded.
	Score(ctx context.Context, p Prompt, target []Token) (Score, error)

	// ScoreText teacher-forces free text after p, split into tokens as the model's own tokenizer
	// splits it where the server can tokenize (then exact), else as the server's ranked lists
	// allow (approximate: see scoreTextByLists). Score.Tokens holds one entry per token.
	ScoreText(ctx context.Context, p Prompt, text string) (Score, error)
}

// Error is a failure of the server or of the conversation with it, as opposed to bad input. The
// command line maps it to its own exit code.
type Error struct {
	Op  string // what was being done, e.g. "generate"
	URL string // the server
	Err error
}

func (e *Error) Error() string {
	if e.URL == "" {
		return fmt.Sprintf("%s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("%s at %s: %v", e.Op, e.URL, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsText reports whether a token is ordinary text that may appear in a signature: not empty, valid
// and complete UTF-8, no control characters (newlines included, so a signature stays on one line and
// cannot meet a stop sequence), and not a special token such as <|im_end|>, </s> or <0x0A>.
func IsText(raw []byte) bool {
	if len(raw) == 0 || !utf8.Valid(raw) {
		return false
	}
	for _, r := range string(raw) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return false
		}
	}
	if n := len(raw); n >= 3 && raw[0] == '<' && raw[n-1] == '>' {
		return false
	}
	return true
}

// lookup scores token t against a ranked list: its own value when listed, else the list's lowest
// value as an upper bound (0, i.e. probability 1, for an empty list): what a server that reports
// only its top tokens can say of a token it did not list.
func lookup(list []Token, t Token) TokenScore {
	raw := t.Raw()
	bound := 0.0
	for _, c := range list {
		if bytes.Equal(c.Raw(), raw) {
			return TokenScore{Text: t.Text, Logprob: c.Logprob, Exact: true}
		}
		bound = math.Min(bound, c.Logprob)
	}
	return TokenScore{Text: t.Text, Logprob: bound, Exact: false}
}

// scoreTextByLists scores text for a server that can neither tokenize nor force a token, from
// the ranked lists next returns, one request a step (see textStep). The split is the lists'
// greedy one, not necessarily the tokenizer's, so the sum approximates log P(text | prompt); it is
// the same measurement for every text, which is what a comparison between two sets of records
// needs.
func scoreTextByLists(ctx context.Context, next func(ctx context.Context, p Prompt, n int) ([]Token, error), n int, p Prompt, text string) (Score, error) {
	s := Score{Exact: true}
	for done := 0; done < len(text); {
		list, err := next(ctx, p, n)
		if err != nil {
			return Score{}, err
		}
		w, ts := textStep(list, text[done:])
		s.Add(ts)
		p = p.Extend(Token{Text: text[done : done+w]})
		done += w
	}
	return s, nil
}

// textStep scores the next token of rest from the ranked list at that position: the longest
// listed token that rest starts with, whose value is exact; when no listed token fits, one unlisted
// token covering the rest of the word (up to the next space, at least one character), bounded by
// the list's lowest value. It returns the length of rest the step covers.
func textStep(list []Token, rest string) (int, TokenScore) {
	best := -1
	for i, t := range list {
		if raw := t.Raw(); len(raw) > 0 && strings.HasPrefix(rest, string(raw)) && (best < 0 || len(raw) > len(list[best].Raw())) {
			best = i
		}
	}
	if best >= 0 {
		raw := list[best].Raw()
		return len(raw), TokenScore{Text: string(raw), Logprob: list[best].Logprob, Exact: true}
	}
	w := unlistedPiece(rest)
	return w, lookup(list, Token{Text: rest[:w]})
}

// unlistedPiece returns the length of the piece that stands for one unlisted token at the start
// of rest: a leading space and the word after it, or a single character when rest starts with
// another separator.
func unlistedPiece(rest string) int {
	i := 0
	if strings.HasPrefix(rest, " ") {
		i = 1
	}
	j := strings.IndexAny(rest[i:], " \n\t")
	switch {
	case j < 0:
		return len(rest)
	case j > 0:
		return i + j
	}
	_, w := utf8.DecodeRuneInString(rest[i:])
	return i + max(w, 1)
}

// tokenBytes converts a token's bytes as JSON servers send them (an array of numbers) to []byte;
// nil stays nil, so Token.Raw falls back to the text.
func tokenBytes(b []int) []byte {
	if b == nil {
		return nil
	}
	out := make([]byte, len(b))
	for i, v := range b {
		out[i] = byte(v)
	}
	return out
}
