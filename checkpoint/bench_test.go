package checkpoint_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"vtune/backend"
	"vtune/backend/servertest"
	"vtune/checkpoint"
)

// BenchmarkScoreVsGreedy compares the two calls a verification makes per prompt: greedy decoding of
// 24 tokens, and the exact teacher-forced score of a 24-token target, on the same server and prompt
// (the bundled tiny model, whose greedy reply to this prompt runs the full 24 tokens). It reports
// both times and their ratio, score over greedy, for two targets:
//
//   - greedy: the greedy continuation itself, the case of a model that learned the signature;
//   - signature: the third-ranked text token at every step, as planting draws signatures, which
//     the model would not say itself: the case of the base model and of decoys.
//
// Three stacks: llama-server; Ollama scoring by itself (one request a target token); and Ollama
// with a llama-server on the model's own GGUF blob as its scorer (checkpoint.OpenOllamaScorer,
// what --scoring auto picks), where greedy decoding stays on Ollama. A fresh backend per
// iteration, as a verification sees a new prompt per group (the scorer is started once), its Info
// asked untimed first, as verify asks it once per model.
//
//	go test -run x -bench ScoreVsGreedy ./checkpoint
func BenchmarkScoreVsGreedy(b *testing.B) {
	lsrv := servertest.StartLlamaCpp(b, servertest.Model("tiny-llama.gguf"))
	osrv := servertest.StartOllama(b)
	name := osrv.Create(b, "tiny-llama", "tiny-llama.Modelfile")
	scorer, err := checkpoint.OpenOllamaScorer(context.Background(),
		checkpoint.Options{URL: osrv.URL, LlamaServer: servertest.UseLlamaServer(b)}, name)
	if err != nil {
		b.Fatal(err)
	}
	defer scorer.Close()
	stacks := []struct {
		name string
		open func() backend.Backend
	}{
		{"llamacpp", func() backend.Backend {
			l, err := backend.NewLlamaCpp(mustURL(b, lsrv.URL), "", nil)
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"ollama", func() backend.Backend {
			o, err := backend.NewOllama(mustURL(b, osrv.URL), name, nil)
			if err != nil {
				b.Fatal(err)
			}
			return o
		}},
		{"ollama+llama-server", func() backend.Backend {
			o, err := backend.NewOllama(mustURL(b, osrv.URL), name, nil)
			if err != nil {
				b.Fatal(err)
			}
			return &backend.Split{Backend: o, Scorer: scorer}
		}},
	}
	const n = 24
	ctx := context.Background()
	ref := stacks[0].open()
	prompt, err := ref.Render(ctx, []backend.Message{{Role: "user", Content: "Define the word Albuquerque."}})
	if err != nil {
		b.Fatal(err)
	}
	targets := map[string][]backend.Token{}
	greedyPrompt := prompt
	for len(targets["greedy"]) < n {
		list, err := ref.Next(ctx, greedyPrompt, 1)
		if err != nil {
			b.Fatal(err)
		}
		if len(list) == 0 || !backend.IsText(list[0].Raw()) {
			b.Fatalf("greedy reply ends after %d tokens, not %d", len(targets["greedy"]), n)
		}
		targets["greedy"] = append(targets["greedy"], backend.Token{Text: list[0].Text, Bytes: list[0].Bytes})
		greedyPrompt = greedyPrompt.Extend(list[0])
	}
	sigPrompt := prompt
	for len(targets["signature"]) < n {
		list, err := ref.Next(ctx, sigPrompt, 20)
		if err != nil {
			b.Fatal(err)
		}
		rank := 0
		for _, c := range list {
			if backend.IsText(c.Raw()) {
				if rank++; rank == 3 {
					targets["signature"] = append(targets["signature"], backend.Token{Text: c.Text, Bytes: c.Bytes})
					sigPrompt = sigPrompt.Extend(c)
					break
				}
			}
		}
		if rank < 3 {
			b.Fatalf("fewer than 3 text tokens after %q", sigPrompt.Text)
		}
	}
	for _, st := range stacks {
		for _, tn := range []string{"greedy", "signature"} {
			target := targets[tn]
			b.Run(st.name+"/"+tn, func(b *testing.B) {
				// Once untimed: the server loads the model on first use.
				if _, err := st.open().Score(ctx, prompt, target); err != nil {
					b.Fatal(err)
				}
				var greedy, score time.Duration
				exact := true
				for b.Loop() {
					be := st.open()
					// Untimed, as verify asks it once per model before any prompt.
					if _, err := be.Info(ctx); err != nil {
						b.Fatal(err)
					}
					t0 := time.Now()
					if _, err := be.Greedy(ctx, prompt, n); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					sc, err := be.Score(ctx, prompt, target)
					if err != nil {
						b.Fatal(err)
					}
					score += time.Since(t1)
					greedy += t1.Sub(t0)
					exact = exact && sc.Exact
				}
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
				b.ReportMetric(ms(greedy), "greedy-ms/op")
				b.ReportMetric(ms(score), "score-ms/op")
				b.ReportMetric(float64(score)/float64(greedy), "score/greedy")
				if exact {
					b.ReportMetric(1, "exact")
				} else {
					b.ReportMetric(0, "exact")
				}
			})
		}
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
