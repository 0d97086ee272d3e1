package verifier

import (
	"math"
	"math/rand/v2"
	"testing"

	"vtune/backend"
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
