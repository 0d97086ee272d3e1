package backend

import (
	"context"
	"slices"
	"testing"
	"time"
)

// greedyPath walks the greedy path after p token by token, the reference tests compare with: each
// step is the first token of Next's list there, with its value, added to the prompt with Extend.
// It ends after n tokens or before a control token (no bytes, or a name such as <|im_end|>): the
// reply's end.
func greedyPath(t testing.TB, b Backend, p Prompt, n int) []Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var path []Token
	for range n {
		list, err := b.Next(ctx, p, 20)
		if err != nil {
			t.Fatal(err)
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
func extendIDs(p Prompt, t Token) Prompt {
	q := p.Extend(t)
	if p.IDs != nil && t.HasID {
		q.IDs = append(slices.Clone(p.IDs), t.ID)
	}
	return q
}

// spell is the text of a sequence of tokens.
func spell(toks []Token) string {
	var b []byte
	for _, t := range toks {
		b = append(b, t.Raw()...)
	}
	return string(b)
}

// textOnly returns the tokens without their ids, as a key's tokens come.
func textOnly(toks []Token) []Token {
	out := make([]Token, len(toks))
	for i, t := range toks {
		out[i] = Token{Text: t.Text, Bytes: t.Bytes, Logprob: t.Logprob}
	}
	return out
}

// Extend adds a token's text and clears the ids (the server tokenizes the new text); the prompt
// extended is left as it was, so one prompt can be extended along two paths.
func TestPromptExtend(t *testing.T) {
	p := Prompt{Messages: []Message{{Role: "user", Content: "hi"}}, Text: "<u>hi<a>", IDs: []int{1, 2, 3}}
	if !p.Whole() {
		t.Fatal("a rendered prompt is not whole")
	}
	a := p.Extend(Token{Text: " f", ID: 7, HasID: true})
	b := a.Extend(Token{Text: "all", ID: 8, HasID: true})
	c := a.Extend(Token{Text: "ine", Bytes: []byte("ine")})
	if b.Text != "<u>hi<a> fall" || c.Text != "<u>hi<a> fine" || a.Text != "<u>hi<a> f" || p.Text != "<u>hi<a>" {
		t.Errorf("texts %q %q %q %q", p.Text, a.Text, b.Text, c.Text)
	}
	if len(b.Reply) != 2 || len(c.Reply) != 2 || b.Reply[1].Text != "all" || c.Reply[1].Text != "ine" || len(a.Reply) != 1 || len(p.Reply) != 0 {
		t.Errorf("replies %v %v %v %v", p.Reply, a.Reply, b.Reply, c.Reply)
	}
	if a.IDs != nil || b.IDs != nil || len(p.IDs) != 3 || a.Whole() || len(b.Messages) != 1 {
		t.Errorf("extended %+v from %+v", b, p)
	}
	if (Prompt{Text: "cut"}).Whole() {
		t.Error("text alone is whole")
	}
}
