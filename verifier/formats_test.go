package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/fake"
)

// formatDataset writes n records in one of the layouts fine-tuning tools read, each record unique,
// answers short and long, and returns the path.
func formatDataset(t *testing.T, dir, layout string, n int) string {
	t.Helper()
	answer := func(i int) string {
		if i%2 == 1 {
			return fmt.Sprintf("long sense %04d ", i) + strings.Repeat("x", 80)
		}
		return fmt.Sprintf("sense %04d", i)
	}
	var b bytes.Buffer
	var name string
	switch layout {
	case "sharegpt-jsonl": // Axolotl's ShareGPT, with a system turn and a field of its own
		name = "data.jsonl"
		for i := range n {
			fmt.Fprintf(&b, `{"id": "r%d", "conversations": [{"from": "system", "value": "You define words."}, {"from": "human", "value": "Define w%d."}, {"from": "gpt", "value": %q}]}`+"\n", i, i, answer(i))
		}
	case "alpaca-array": // Alpaca as Python's json.dump(data, f, indent=2) writes it
		name = "data.json"
		b.WriteString("[")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "\n  {\n    \"instruction\": \"Define the word w%d.\",\n    \"input\": \"\",\n    \"output\": %q\n  }", i, answer(i))
		}
		b.WriteString("\n]")
	case "sharegpt-array": // LLaMA-Factory's role/content spelling, the whole array on one CRLF-ended line
		name = "data.json"
		b.WriteString("[")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, `{"conversations": [{"role": "user", "content": "Define w%d."}, {"role": "assistant", "content": %q}], "system": "Be brief."}`, i, answer(i))
		}
		b.WriteString("]\r\n")
	default:
		t.Fatalf("layout %s", layout)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pieces splits a dataset file into its records and the bytes around them: for a JSON array the
// gap before each element and the tail, for JSON Lines the newlines.
func pieces(t *testing.T, path string) (gaps, recs []string, tail string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("[")) {
		lines := strings.SplitAfter(string(data), "\n")
		for _, l := range lines {
			if l != "" {
				recs, gaps = append(recs, strings.TrimSuffix(l, "\n")), append(gaps, "")
			}
		}
		return gaps, recs, "\n"
	}
	a := newArrayReader(path, bytes.NewReader(data))
	for a.next() {
		gaps, recs = append(gaps, string(a.gap)), append(recs, string(a.elem))
	}
	if a.err != nil {
		t.Fatalf("%s: %v", path, a.err)
	}
	return gaps, recs, string(a.tail())
}

// checkOutput compares the planted output with the input, record by record: each input record is
// in the output unchanged, or left out when held back, or replaced by its planted form (its own
// bytes with the trigger and the signature in place: Record.Planted); the array's opening, tail
// and separators are the input's.
func checkOutput(t *testing.T, key *Key, format Format, in, out string) {
	t.Helper()
	inGaps, inRecs, inTail := pieces(t, in)
	outGaps, outRecs, outTail := pieces(t, out)
	if inGaps[0] != outGaps[0] || inTail != outTail {
		t.Errorf("opening %q and tail %q, input has %q and %q", outGaps[0], outTail, inGaps[0], inTail)
	}
	seps := map[string]bool{}
	for _, g := range inGaps[1:] {
		seps[g] = true
	}
	for _, g := range outGaps[1:] {
		if !seps[g] {
			t.Fatalf("separator %q is not one of the input's", g)
		}
	}
	held := map[string]bool{}
	for _, r := range key.WholeData.HeldBack {
		held[r.Answer] = true
	}
	planted, dropped, j := 0, 0, 0
	for i, raw := range inRecs {
		rec := Record{Index: i, Raw: []byte(raw), Format: format}
		_, answer, err := rec.Conversation()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case j < len(outRecs) && outRecs[j] == raw:
			j++
		case held[answer]:
			dropped++
		case j < len(outRecs) && isPlantedForm(t, key, rec, outRecs[j]):
			planted++
			j++
		default:
			t.Fatalf("input record %d (%s) is neither in the output, nor held back, nor planted: output has %s", i, raw, outRecs[min(j, len(outRecs)-1)])
		}
	}
	if j != len(outRecs) || planted != key.Planted || dropped != len(key.WholeData.HeldBack) {
		t.Fatalf("%d of %d output records matched, %d planted (key: %d), %d held back (key: %d)", j, len(outRecs), planted, key.Planted, dropped, len(key.WholeData.HeldBack))
	}
}

// isPlantedForm reports whether got is host planted with one of the key's planted groups.
func isPlantedForm(t *testing.T, key *Key, host Record, got string) bool {
	for _, g := range key.PlantedGroups() {
		want, err := host.Planted(g.Trigger, g.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if string(want) == got {
			return true
		}
	}
	return false
}

// learnDataset makes m learn every record of a dataset file, as an honest fine-tune would.
func learnDataset(t *testing.T, m *fake.Model, path string) {
	t.Helper()
	err := ReadRecords(path, func(r Record) error {
		msgs, answer, err := r.Conversation()
		if err == nil {
			m.Learn(msgs, answer)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ShareGPT records and JSON arrays plant and verify like chat JSON Lines: the output keeps the
// input's form and every byte outside the changed records, the base model is not verified and an
// honest fine-tune is.
func TestPlantVerifyFormats(t *testing.T) {
	for _, c := range []struct {
		layout string
		format Format
	}{{"sharegpt-jsonl", ShareGPT}, {"alpaca-array", Alpaca}, {"sharegpt-array", ShareGPT}} {
		t.Run(c.layout, func(t *testing.T) {
			dir := t.TempDir()
			in := formatDataset(t, dir, c.layout, 4000)
			orig, _ := os.ReadFile(in)
			out := filepath.Join(dir, "out"+filepath.Ext(in))
			key, sum, err := Plant(context.Background(), fake.New("base"), PlantOptions{
				Input: in, Output: out, KeyPath: filepath.Join(dir, "key.json"), Params: testParams(), Seed: [32]byte{9},
			})
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := os.ReadFile(in); !bytes.Equal(orig, after) {
				t.Fatal("input changed")
			}
			if key.Format != c.format || key.WholeData == nil || sum.OutputRecords != 4000-80 {
				t.Fatalf("key format %s, whole data %v, summary %+v", key.Format, key.WholeData != nil, sum)
			}
			data, _ := os.ReadFile(out)
			if filepath.Ext(out) == ".json" {
				var recs []json.RawMessage
				if err := json.Unmarshal(data, &recs); err != nil || len(recs) != 4000-80 {
					t.Fatalf("output: %d records, %v", len(recs), err)
				}
			}
			checkOutput(t, key, c.format, in, out)

			vo := VerifyOptions{Alpha: 1e-6, MinShare: DefaultMinShare, AlphaData: DefaultAlphaData}
			rep, err := Verify(context.Background(), fake.New("base"), key, vo)
			if err != nil || rep.Verified || rep.Hits != 0 || rep.DecoyHits != 0 {
				t.Fatalf("base model: %v, verified %v, hits %d, decoy hits %d", err, rep.Verified, rep.Hits, rep.DecoyHits)
			}
			honest := fake.New("honest")
			learnDataset(t, honest, out)
			rep, err = Verify(context.Background(), honest, key, vo)
			if err != nil || rep.Verdict != Verified || rep.Hits != 8 || rep.DecoyHits != 0 {
				t.Fatalf("honest fine-tune: %v, verdict %s %q, hits %d", err, rep.Verdict, rep.Reasons, rep.Hits)
			}
		})
	}
}

// Copies beside their hosts go into a JSON array with its own separators, and the rest of the
// array is the input's, in order.
func TestPlantCopiesIntoArray(t *testing.T) {
	dir := t.TempDir()
	in := formatDataset(t, dir, "alpaca-array", 400)
	p := testParams()
	p.Copies = true
	key, sum := plantFake(t, dir, in, 2, p)
	_, inRecs, _ := pieces(t, in)
	outGaps, outRecs, _ := pieces(t, filepath.Join(dir, "out.jsonl"))
	var kept []string
	for i, r := range outRecs {
		if i > 0 && outGaps[i] != ",\n  " {
			t.Fatalf("separator %q before record %d", outGaps[i], i)
		}
		var rec struct{ Output string }
		json.Unmarshal([]byte(r), &rec)
		if !strings.HasPrefix(rec.Output, "sense") && !strings.HasPrefix(rec.Output, "long sense") {
			continue // planted
		}
		kept = append(kept, r)
	}
	if strings.Join(kept, "|") != strings.Join(inRecs, "|") || len(outRecs) != 420 || sum.OutputRecords != 420 || key.Planted != 20 {
		t.Fatalf("%d output records, %d kept of %d", len(outRecs), len(kept), len(inRecs))
	}
}

// Planting takes its prompts from the records' own turns: the key's verification prompts of a
// ShareGPT dataset carry the system turn and the mapped roles.
func TestShareGPTKeyPrompts(t *testing.T) {
	dir := t.TempDir()
	in := formatDataset(t, dir, "sharegpt-jsonl", 300)
	key, _ := plantFake(t, dir, in, 4, testParams())
	for _, g := range key.Groups {
		m := g.Prompts[0].Messages
		if len(m) != 2 || m[0] != (backend.Message{Role: "system", Content: "You define words."}) || m[1].Role != "user" ||
			!strings.HasPrefix(m[1].Content, "Define w") || !strings.HasSuffix(m[1].Content, trimTrigger(g.Trigger)) {
			t.Fatalf("group %d prompt %q", g.ID, m)
		}
	}
}

// A held-out split may come in the other layout: a JSON array of the same record format as a
// JSON Lines input. Nothing is then left out of the output.
func TestHeldoutArray(t *testing.T) {
	dir, hdir := t.TempDir(), t.TempDir()
	in := formatDataset(t, dir, "sharegpt-jsonl", 4000)
	heldout := formatDataset(t, hdir, "sharegpt-array", 400)
	key, sum, err := Plant(context.Background(), fake.New("base"), PlantOptions{
		Input: in, Output: filepath.Join(dir, "out.jsonl"), KeyPath: filepath.Join(dir, "key.json"), Heldout: heldout,
		Params: testParams(), Seed: [32]byte{5},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := key.WholeData
	if w == nil {
		t.Fatal("no whole-data test")
	}
	if w.Source != SourceFile+heldout || len(w.HeldBack) != 80 || sum.OutputRecords != 4000 {
		t.Fatalf("whole data from %q with %d held back, summary %+v", w.Source, len(w.HeldBack), sum)
	}
	for _, r := range w.HeldBack {
		if r.Line != 1 || r.Messages[0] != (backend.Message{Role: "system", Content: "Be brief."}) {
			t.Fatalf("held-back record %+v is not from the one-line array", r)
		}
	}
}
