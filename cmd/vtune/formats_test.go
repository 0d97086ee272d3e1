package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend/servertest"
	"vtune/verifier"
)

// formatsFrom converts the first n records of the bundled chat dataset into the two layouts the
// other fine-tuning tools read: ShareGPT JSON Lines (Axolotl) and an Alpaca JSON array indented
// as Python's json.dump(indent=2) writes it (Alpaca, LLaMA-Factory).
func formatsFrom(t *testing.T, dir string, n int) (sharegpt, alpaca string) {
	t.Helper()
	f, err := os.Open(filepath.Join(servertest.Root(), "testdata/wordnet/define-train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sg strings.Builder
	var recs []map[string]string
	sc := bufio.NewScanner(f)
	for i := 0; i < n && sc.Scan(); i++ {
		var rec struct {
			Messages []struct{ Role, Content string }
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || len(rec.Messages) != 2 {
			t.Fatalf("record %d: %v", i+1, err)
		}
		q, a := rec.Messages[0].Content, rec.Messages[1].Content
		line, _ := json.Marshal(map[string]any{"conversations": []map[string]string{{"from": "human", "value": q}, {"from": "gpt", "value": a}}})
		sg.WriteString(string(line) + "\n")
		recs = append(recs, map[string]string{"instruction": q, "input": "", "output": a})
	}
	arr, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sharegpt, alpaca = filepath.Join(dir, "sharegpt.jsonl"), filepath.Join(dir, "alpaca.json")
	os.WriteFile(sharegpt, []byte(sg.String()), 0o644)
	os.WriteFile(alpaca, append(arr, '\n'), 0o644)
	return sharegpt, alpaca
}

// TestPlantVerifyFormatsLlamaCpp plants a ShareGPT JSON Lines file and an Alpaca JSON array on the
// bundled tiny model through a real llama-server and verifies the base model: plant succeeds, the
// output has the input's form and format, and the base model reproduces no secret and no decoy.
func TestPlantVerifyFormatsLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server")
	}
	servertest.UseLlamaServer(t)
	gguf := servertest.Model("tiny-llama.gguf")
	server := []string{"--backend", "llamacpp", "--checkpoint", gguf}
	dir := t.TempDir()
	sharegpt, alpaca := formatsFrom(t, dir, 2000)
	for _, c := range []struct {
		in     string
		format verifier.Format
	}{{sharegpt, verifier.ShareGPT}, {alpaca, verifier.Alpaca}} {
		t.Run(string(c.format), func(t *testing.T) {
			out := filepath.Join(dir, "planted-"+filepath.Base(c.in))
			keyPath := filepath.Join(dir, string(c.format)+".key")
			code, stdout, stderr := vtune(t, nil, append([]string{"plant", "-i", c.in, "-o", out, "-k", keyPath,
				"--seed", "formats", "--json", "-q"}, server...)...)
			if code != 0 {
				t.Fatalf("plant: exit %d: %s", code, stderr)
			}
			var sum verifier.PlantSummary
			if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Records != 2000 || sum.Planted != 10 || sum.HeldBack != 40 {
				t.Fatalf("plant summary %+v (%v): want 10 planted and 40 held back of 2000", sum, err)
			}
			n := 0
			if err := verifier.ReadRecords(out, func(r verifier.Record) error {
				if r.Format != c.format {
					t.Fatalf("%s:%d: record is %s, want %s", out, r.Line, r.Format, c.format)
				}
				n++
				return nil
			}); err != nil || n != sum.OutputRecords {
				t.Fatalf("output: %d records (%v), summary says %d", n, err, sum.OutputRecords)
			}
			if c.format == verifier.Alpaca {
				var recs []map[string]string
				if data, _ := os.ReadFile(out); json.Unmarshal(data, &recs) != nil || len(recs) != sum.OutputRecords || !strings.HasPrefix(string(data), "[\n  {\n    \"") {
					t.Fatalf("output is not the input's indented JSON array: %d records", len(recs))
				}
			}

			code, rep, stderr := verifyJSON(t, append([]string{"-k", keyPath, "--llr=false"}, server...)...)
			if code != 1 || rep.Verified || rep.Hits != 0 || rep.DecoyHits != 0 {
				t.Fatalf("verify the base: exit %d, verified %v, hits %d, decoy hits %d: %s", code, rep.Verified, rep.Hits, rep.DecoyHits, stderr)
			}
		})
	}
}
