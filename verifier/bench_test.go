package verifier

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vtune/backend/fake"
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
func BenchmarkScanDataset(b *testing.B) { benchScan(b, benchDataset(b, 64)) }

// BenchmarkWritePlanted measures the copying last pass of planting.
func BenchmarkWritePlanted(b *testing.B) { benchWrite(b, benchDataset(b, 64)) }

func benchScan(b *testing.B, p string) {
	st, _ := os.Stat(p)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		if _, err := scanDataset(p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchWrite(b *testing.B, p string) {
	scan, err := scanDataset(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(scan.size)
	b.ResetTimer()
	for b.Loop() {
		f, _ := os.Create(filepath.Join(b.TempDir(), "out"+filepath.Ext(p)))
		if _, err := writePlanted(context.Background(), p, f, &outputPlan{}, scan, func(int) {}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// benchArray writes the same records as benchDataset as a pretty-printed JSON array.
func benchArray(b *testing.B, mb int) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.json")
	var buf bytes.Buffer
	buf.WriteString("[")
	for i := 0; buf.Len() < mb<<20; i++ {
		if i > 0 {
			buf.WriteString(",")
		}
		fmt.Fprintf(&buf, "\n  {\n    \"messages\": [\n      {\n        \"role\": \"user\",\n        \"content\": \"Define the word w%d.\"\n      },\n      {\n        \"role\": \"assistant\",\n        \"content\": \"an assortment of miscellaneous items, \\\"quoted\\\" and more text %d\"\n      }\n    ]\n  }", i, i)
	}
	buf.WriteString("\n]\n")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkScanArray is BenchmarkScanDataset on a JSON array: the elements are split out in
// the reading goroutine.
func BenchmarkScanArray(b *testing.B) { benchScan(b, benchArray(b, 64)) }

// BenchmarkWritePlantedArray is BenchmarkWritePlanted on a JSON array.
func BenchmarkWritePlantedArray(b *testing.B) { benchWrite(b, benchArray(b, 64)) }

// TestPlantLargeFile plants the dataset named by $VTUNE_LARGE_DATASET (JSON Lines or a JSON array)
// with the in-process fake model, to measure what the data costs without a server: run the test
// binary under /usr/bin/time for the peak memory. Skipped without the variable. It logs the time
// each stage took; with the fake model, drawing secrets is mostly reading the hosts. With
// $VTUNE_LARGE_OUTPUT set, the planted dataset is written there and its key beside it (OUTPUT.key),
// for the audit to be measured on them.
func TestPlantLargeFile(t *testing.T) {
	in := os.Getenv("VTUNE_LARGE_DATASET")
	if in == "" {
		t.Skip("set VTUNE_LARGE_DATASET to a large dataset file")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out"+filepath.Ext(in))
	keyPath := filepath.Join(dir, "key.json")
	if o := os.Getenv("VTUNE_LARGE_OUTPUT"); o != "" {
		out, keyPath = o, o+".key"
	}
	p := Params{Groups: 8, Decoys: 4, K: 8, SigLen: 24, TriggerLen: 8, Rate: DefaultRate, Mode: "replace", Prompts: 1}
	start := time.Now()
	var stages []string
	last, lastStage := start, ""
	progress := func(stage string, _, _ int) {
		if stage != lastStage {
			now := time.Now()
			if lastStage != "" {
				stages = append(stages, fmt.Sprintf("%s %v", lastStage, now.Sub(last).Round(time.Millisecond)))
			}
			last, lastStage = now, stage
		}
	}
	_, sum, err := Plant(context.Background(), fake.New("base"), PlantOptions{
		Input: in, Output: out, KeyPath: keyPath, Params: p,
		Progress: progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	stages = append(stages, fmt.Sprintf("%s and after %v", lastStage, time.Since(last).Round(time.Millisecond)))
	t.Logf("%d records, %d planted, %d held back, in %v", sum.Records, sum.Planted, sum.HeldBack, time.Since(start).Round(time.Millisecond))
	t.Logf("stages: %s", strings.Join(stages, ", "))
}
