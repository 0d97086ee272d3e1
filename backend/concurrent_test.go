package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every client is safe for concurrent use: one client, several goroutines, every method at once,
// under go test -race (make test runs it so). Each goroutine must get exactly what the same calls
// made one at a time get, so no cache can hand one caller's answer to another. The servers here
// are small stand-ins that answer in each API's shape; the tests against the real servers run the
// same hammer (TestLlamaCppConcurrent, TestOllamaConcurrent).
func TestConcurrentUse(t *testing.T) {
	l, o, a := standIns(t)
	for name, b := range map[string]Backend{"llamacpp": l, "ollama": o, "openai": a} {
		t.Run(name, func(t *testing.T) { hammer(t, b, 6, 2) })
	}
}

// standIns starts the stand-in server for the test and returns a client of each backend on it.
func standIns(tb testing.TB) (*LlamaCpp, *Ollama, *OpenAI) {
	srv := httptest.NewServer(standIn())
	tb.Cleanup(srv.Close)
	u := mustURL(tb, srv.URL)
	l, _ := NewLlamaCpp(u, "", nil)
	o, _ := NewOllama(u, "m", nil)
	a, _ := NewOpenAI(u, "", "m", nil)
	return l, o, a
}

// hammer runs every method of b from several goroutines at once, rounds times over, and compares
// each result with the one the same call gave alone.
func hammer(t *testing.T, b Backend, goroutines, rounds int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want := make([]string, goroutines)
	for g := range goroutines {
		var err error
		if want[g], err = exercise(ctx, b, g); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	got := make([]string, goroutines)
	errs := make([]error, goroutines)
	for round := range rounds {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[g], errs[g] = exercise(ctx, b, (g+round)%goroutines)
			}()
		}
		wg.Wait()
		for g := range goroutines {
			if errs[g] != nil {
				t.Fatal(errs[g])
			}
			if w := want[(g+round)%goroutines]; got[g] != w {
				t.Errorf("round %d, goroutine %d: concurrent calls gave\n%s\nalone\n%s", round, g, got[g], w)
			}
		}
	}
}

// exercise calls every method once on a conversation of its own (n) and describes the results.
func exercise(ctx context.Context, b Backend, n int) (string, error) {
	var out strings.Builder
	info, err := b.Info(ctx)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "info %s %s %d; max %d\n", info.Backend, info.Name, info.Vocab, info.MaxTop)
	msgs := []Message{{Role: "user", Content: fmt.Sprintf("Define the word %d.", n)}}
	if n%2 == 1 {
		msgs = append([]Message{{Role: "system", Content: "Be brief."}}, msgs...)
	}
	p, err := b.Render(ctx, msgs)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "prompt %q %v\n", p.Text, p.IDs)
	g, err := b.Greedy(ctx, p, 6)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "greedy %q\n", g)
	list, err := b.Next(ctx, p, 5)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		return "", fmt.Errorf("no ranked list after %q", p.Text)
	}
	fmt.Fprintf(&out, "next %q %.6f\n", list[0].Raw(), list[0].Logprob)
	sc, err := b.Score(ctx, p, []Token{list[len(list)-1], list[0]})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "score %.6f %v\n", sc.Logprob, sc.Exact)
	st, err := b.ScoreText(ctx, p, g)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&out, "text %.6f %v %d", st.Logprob, st.Exact, len(st.Tokens))
	return out.String(), nil
}

// standIn answers a few requests of llama-server, Ollama and the OpenAI API, on one port, for a
// toy model whose tokens are the bytes 'a' to 'e': its ranked list after any text depends on the
// text's bytes alone.
func standIn() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) { json.NewEncoder(w).Encode(v) }
	read := func(r *http.Request, v any) { json.NewDecoder(r.Body).Decode(v) }
	render := func(msgs []Message) string {
		var b strings.Builder
		for _, m := range msgs {
			b.WriteString("<" + m.Role + ">" + m.Content + "\n")
		}
		return b.String() + "<assistant>"
	}
	mux.HandleFunc("GET /props", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"chat_template": "toy", "model_alias": "m"})
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"data": []any{map[string]any{"id": "m", "meta": map[string]any{"n_vocab": 256}}}})
	})
	mux.HandleFunc("POST /apply-template", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Messages []Message }
		read(r, &req)
		reply(w, map[string]any{"prompt": render(req.Messages)})
	})
	mux.HandleFunc("POST /tokenize", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Content string }
		read(r, &req)
		toks := []any{}
		for _, c := range []byte(req.Content) {
			toks = append(toks, map[string]any{"id": int(c), "piece": string(c)})
		}
		reply(w, map[string]any{"tokens": toks})
	})
	mux.HandleFunc("POST /completion", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Prompt    []int        `json:"prompt"`
			NPredict  int          `json:"n_predict"`
			NProbs    int          `json:"n_probs"`
			LogitBias [][2]float64 `json:"logit_bias"`
			Grammar   string       `json:"grammar"`
		}
		read(r, &req)
		var forced []int
		for _, f := range strings.Fields(strings.TrimPrefix(req.Grammar, "root ::=")) {
			var id int
			fmt.Sscanf(f, "<[%d]>", &id)
			forced = append(forced, id)
		}
		text := make([]byte, len(req.Prompt))
		for i, id := range req.Prompt {
			text[i] = byte(id)
		}
		var toks []int
		var probs []any
		for k := range req.NPredict {
			list := toyList(string(text))
			pick := list[0]
			switch {
			case len(req.LogitBias) > 0:
				pick = toyToken{byte(req.LogitBias[0][0]), toyLogprob(string(text), byte(req.LogitBias[0][0]))}
			case k < len(forced):
				pick = toyToken{byte(forced[k]), toyLogprob(string(text), byte(forced[k]))}
			}
			top := []any{}
			for _, c := range list[:min(req.NProbs, len(list))] {
				top = append(top, map[string]any{"id": int(c.b), "token": string(c.b), "bytes": []int{int(c.b)}, "logprob": c.lp})
			}
			probs = append(probs, map[string]any{"id": int(pick.b), "token": string(pick.b), "bytes": []int{int(pick.b)}, "logprob": pick.lp, "top_logprobs": top})
			toks = append(toks, int(pick.b))
			text = append(text, pick.b)
		}
		reply(w, map[string]any{"content": string(text[len(req.Prompt):]), "tokens": toks, "stop_type": "limit", "completion_probabilities": probs})
	})
	// The OpenAI API: /v1/completions on raw text (llama-server's shape of logprobs).
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Prompt    string `json:"prompt"`
			MaxTokens int    `json:"max_tokens"`
			Logprobs  int    `json:"logprobs"`
			Echo      bool   `json:"echo"`
		}
		read(r, &req)
		if req.Echo {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		text := req.Prompt
		var content []any
		for range req.MaxTokens {
			list := toyList(text)
			top := []any{}
			for _, c := range list[:min(req.Logprobs, len(list))] {
				top = append(top, map[string]any{"token": string(c.b), "bytes": []int{int(c.b)}, "logprob": c.lp})
			}
			content = append(content, map[string]any{"token": string(list[0].b), "bytes": []int{int(list[0].b)}, "logprob": list[0].lp, "top_logprobs": top})
			text += string(list[0].b)
		}
		reply(w, map[string]any{"choices": []any{map[string]any{"text": text[len(req.Prompt):], "logprobs": map[string]any{"content": content}}}})
	})
	// Ollama: the model's template, and raw generate.
	mux.HandleFunc("POST /api/show", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"template": "{{ range .Messages }}<{{ .Role }}>{{ .Content }}\n{{ end }}<assistant>"})
	})
	mux.HandleFunc("GET /api/tags", func(w http.ResponseWriter, r *http.Request) { reply(w, map[string]any{"models": []any{}}) })
	mux.HandleFunc("POST /api/generate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Prompt      string         `json:"prompt"`
			TopLogprobs int            `json:"top_logprobs"`
			Options     map[string]any `json:"options"`
		}
		read(r, &req)
		n, _ := req.Options["num_predict"].(float64)
		text := req.Prompt
		var lps []any
		for range int(n) {
			list := toyList(text)
			top := []any{}
			for _, c := range list[:min(req.TopLogprobs, len(list))] {
				top = append(top, map[string]any{"token": string(c.b), "bytes": []int{int(c.b)}, "logprob": c.lp})
			}
			lps = append(lps, map[string]any{"token": string(list[0].b), "bytes": []int{int(list[0].b)}, "logprob": list[0].lp, "top_logprobs": top})
			text += string(list[0].b)
		}
		reply(w, map[string]any{"response": text[len(req.Prompt):], "done": true, "logprobs": lps})
	})
	return mux
}

type toyToken struct {
	b  byte
	lp float64
}

// toyList is the toy model's ranked list after text: the bytes 'a' to 'e', in an order and with
// values that depend on the text.
func toyList(text string) []toyToken {
	var out []toyToken
	for c := byte('a'); c <= 'e'; c++ {
		out = append(out, toyToken{c, toyLogprob(text, c)})
	}
	for i := range out { // insertion sort, best first
		for j := i; j > 0 && out[j].lp > out[j-1].lp; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func toyLogprob(text string, c byte) float64 {
	h := uint32(2166136261)
	for _, x := range []byte(text) {
		h = (h ^ uint32(x)) * 16777619
	}
	h = (h ^ uint32(c)) * 16777619
	return -1 - float64(h%1000)/1000 - math.Log(5)
}
