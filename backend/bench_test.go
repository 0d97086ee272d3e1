package backend

import (
	"context"
	"testing"
)

// BenchmarkRequest is one ranked-list request (Next) through each backend's client against the
// in-process stand-in server (concurrent_test.go), to measure what a request allocates: planting
// makes one such request per trigger step, so a client's per-request garbage sets the heap's
// churn. ollama-walk is the largest answer Ollama's scoring asks for (walk's longest greedy run,
// 64 tokens with their ranked lists; the stand-in ranks 5 tokens, not 20). The figures include
// the stand-in server's own allocations, the same for every run.
func BenchmarkRequest(b *testing.B) {
	l, o, a := standIns(b)
	for _, c := range []struct {
		name string
		b    Backend
	}{{"llamacpp", l}, {"ollama", o}, {"openai", a}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			p, err := c.b.Render(ctx, []Message{{Role: "user", Content: "Define the word harbor."}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.b.Next(ctx, p, 5); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ollama-walk", func(b *testing.B) {
		ctx := context.Background()
		p, err := o.Render(ctx, []Message{{Role: "user", Content: "Define the word harbor."}})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := o.generate(ctx, p.Text, greedyOptions(followMax), OllamaMaxTop); err != nil {
				b.Fatal(err)
			}
		}
	})
}
