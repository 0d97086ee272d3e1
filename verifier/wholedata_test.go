package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/fake"
)

// The whole-data test is refused against a server on another network, whatever its stack; the
// user's own machine or network is trusted.
func TestHosted(t *testing.T) {
	for url, want := range map[string]bool{
		"":                                false,
		"http://127.0.0.1:11434":          false,
		"http://localhost:8080":           false,
		"http://[::1]:8080":               false,
		"http://192.168.1.20:11434":       false,
		"https://api.provider.example/v1": true,
		"http://8.8.8.8:8080":             true,
		"http://gpu-box:11434":            true,  // a name could point anywhere
		"http://0.0.0.0:11434":            false, // OLLAMA_HOST=0.0.0.0: this machine
		"http://[fe80::1]:8080":           false, // link-local
		"http://169.254.10.2:8080":        false,
		"http://LOCALHOST.:8080":          false,
	} {
		for _, stack := range []string{"ollama", "llamacpp", "openai"} {
			if got := hosted(backend.ModelInfo{Backend: stack, URL: url}); got != want {
				t.Errorf("hosted(%s %q) = %v, want %v", stack, url, got, want)
			}
		}
	}
}

// The capped weighted draw: a record holding most of the answer bytes is drawn with probability 1
// (its capped share), the others in proportion to their length, and no record twice.
func TestDrawWeightedCapsLongRecords(t *testing.T) {
	length := make([]uint32, 1000)
	for i := range length {
		length[i] = 10
	}
	length[7] = 1e6 // one record with 99% of the bytes
	if c := lengthCap(lengths(length), 50); math.Abs(c-9990.0/49) > 1e-9 {
		t.Fatalf("cap %v, want the other records' bytes over 49 draws, %v", c, 9990.0/49)
	}
	if c := lengthCap(lengths(length[8:]), 50); !math.IsInf(c, 1) {
		t.Fatalf("equal weights capped at %v", c)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	got := 0
	for range 200 {
		seen := map[int]bool{}
		for _, i := range drawWeighted(rng, lengths(length), 50) {
			if seen[i] {
				t.Fatal("a record drawn twice")
			}
			seen[i] = true
		}
		if seen[7] {
			got++
		}
	}
	// Uncapped records: inclusion in proportion to length, checked on lengths 10 and 30.
	for i := range length {
		length[i] = 10 + 20*uint32(i%2)
	}
	odd := 0
	for range 200 {
		for _, i := range drawWeighted(rng, lengths(length), 40) {
			odd += i % 2
		}
	}
	if frac := float64(odd) / (200 * 40); math.Abs(frac-0.75) > 0.02 {
		t.Errorf("%.3f of the draws are the long records, want 0.75 (30 / (10 + 30))", frac)
	}
	// Capped at C = 9990/49, the long record's inclusion probability is exactly 1.
	if got != 200 {
		t.Errorf("the long record was drawn in %d of 200 draws", got)
	}
}

// Verify gives the same report whatever its parallelism: the queries and record scores run
// concurrently (under -race in make test), and their results land in the key's order.
func TestVerifyParallelSameReport(t *testing.T) {
	dir := t.TempDir()
	in := writeMixed(t, dir, 2000)
	key, _ := plantFake(t, dir, in, 6, testParams())
	honest := fake.New("honest")
	learnFile(t, honest, filepath.Join(dir, "out.jsonl"), func([]backend.Message, string) bool { return true })
	var want []byte
	for _, n := range []int{1, 4, 16} {
		calls, over := 0, false
		opt := VerifyOptions{Alpha: 1e-6, MinShare: DefaultMinShare, AlphaData: DefaultAlphaData, LLR: true, Reveal: true, Parallel: n,
			Progress: func(stage string, done, total int) { calls, over = calls+1, over || done > total }}
		rep, err := Verify(context.Background(), honest, key, opt)
		if err != nil {
			t.Fatalf("parallel %d: %v", n, err)
		}
		got, _ := json.Marshal(rep)
		if want == nil {
			want = got
			if rep.Verdict != Verified {
				t.Fatalf("honest model: %s %q", rep.Verdict, rep.Reasons)
			}
		} else if !bytes.Equal(got, want) {
			t.Errorf("parallel %d: report differs from the sequential one:\n%s\n%s", n, got, want)
		}
		if calls == 0 || over {
			t.Errorf("parallel %d: %d progress calls, done beyond total: %v", n, calls, over)
		}
	}

	// A failing request stops the run with its error, whatever the parallelism.
	bad := failing{honest, key.WholeData.Sentinels[5].Answer}
	for _, n := range []int{1, 4} {
		_, err := Verify(context.Background(), bad, key, VerifyOptions{Alpha: 1e-6, MinShare: DefaultMinShare, AlphaData: DefaultAlphaData, Parallel: n})
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("parallel %d: error %v, want the refusal", n, err)
		}
	}
}

// failing is a model that refuses to score one text.
type failing struct {
	*fake.Model
	text string
}

func (f failing) ScoreText(ctx context.Context, prompt backend.Prompt, text string) (backend.Score, error) {
	if text == f.text {
		return backend.Score{}, errors.New("refused")
	}
	return f.Model.ScoreText(ctx, prompt, text)
}
