package verifier

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchDataset writes a chat dataset of about mb megabytes.
func benchDataset(b *testing.B, mb int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.jsonl")
	var buf bytes.Buffer
	for i := 0; buf.Len() < mb<<20; i++ {
		fmt.Fprintf(&buf, `{"messages": [{"role": "user", "content": "Define the word w%d."}, {"role": "assistant", "content": "an assortment of miscellaneous items, \"quoted\" and more text %d"}]}`+"\n", i, i)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkScanDataset measures the validating first pass of planting (JSON validation, format
// detection, SHA-256), in bytes per second.
func BenchmarkScanDataset(b *testing.B) {
	p := benchDataset(b, 64)
	st, _ := os.Stat(p)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		if _, err := scanDataset(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePlanted measures the copying last pass of planting.
func BenchmarkWritePlanted(b *testing.B) {
	p := benchDataset(b, 64)
	scan, err := scanDataset(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(scan.size)
	b.ResetTimer()
	for b.Loop() {
		f, _ := os.Create(filepath.Join(b.TempDir(), "out.jsonl"))
		if _, err := writePlanted(context.Background(), p, f, &outputPlan{}, scan, func(int) {}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
