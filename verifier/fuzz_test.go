package verifier

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"vtune/backend"
)

// datasetSeeds are FuzzDataset's starting points: each layout the readers know, and the edges
// between them.
var datasetSeeds = []string{
	`{"prompt":"p","completion":"c"}` + "\n" + `{"prompt":"q","completion":"d"}` + "\n",
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}` + "\r\n\r\n" + `{"messages":[{"role":"user","content":"v"},{"role":"assistant","content":"b"}]}`,
	"[\n  {\n    \"instruction\": \"i\",\n    \"input\": \"\\u00e9\",\n    \"output\": \"o\"\n  },\n  {\"instruction\": \"j\", \"output\": \"]\\\"}\"}\n]\n",
	`[{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}, {"conversations":[{"role":"user","content":"r"},{"role":"assistant","content":"b"}],"system":"s"}]`,
	"  [ ]  ",
	"[{\"prompt\":\"p\",\"completion\":\"c\"},]",
	"\n\n{\"prompt\":\"p\",\"completion\":\"c\"} \n   \n",
}

// FuzzDataset: for any file, scanning never panics and names the file when it refuses it; for a
// file it accepts, the record readers agree with the scan, writing with an empty plan gives back
// the input byte for byte, replacing one record changes those bytes alone, and dropping one leaves
// a dataset of the other records, unchanged.
func FuzzDataset(f *testing.F) {
	for i, s := range datasetSeeds {
		f.Add([]byte(s), uint16(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint16) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			t.Fatal(err)
		}
		scan, err := scanDataset(in)
		recs, spans, rerr := readAllRecords(in, data)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.File != in {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		if rerr != nil || len(recs) != scan.records {
			t.Fatalf("scan found %d records, the reader %d (%v)", scan.records, len(recs), rerr)
		}
		for i, r := range recs {
			if ft, err := DetectFormat(r.Raw); ft != scan.format || err != nil || r.Index != i {
				t.Fatalf("record %d (index %d): %q, %v; the scan says %s", i, r.Index, ft, err, scan.format)
			}
		}
		if got := writeFuzz(t, in, &outputPlan{}, scan); !bytes.Equal(got, data) {
			t.Fatalf("empty plan wrote %q for %q", got, data)
		}

		i := int(sel) % len(recs)
		host := recs[i]
		host.Format = scan.format
		if planted, err := host.Planted("TRIG \"é\"", "SIG\n<b>"); err == nil {
			got := writeFuzz(t, in, &outputPlan{replace: map[int][]byte{i: planted}}, scan)
			want := append(append(bytes.Clone(data[:spans[i][0]]), planted...), data[spans[i][1]:]...)
			if !bytes.Equal(got, want) {
				t.Fatalf("replacing record %d wrote %q, want %q", i, got, want)
			}
		}

		got := writeFuzz(t, in, &outputPlan{drop: map[int]bool{i: true}}, scan)
		if len(recs) == 1 {
			return // an empty dataset is refused; nothing more to check
		}
		out := filepath.Join(dir, "out")
		os.WriteFile(out, got, 0o644)
		if _, err := scanDataset(out); err != nil {
			t.Fatalf("after dropping record %d of %q: %v in %q", i, data, err, got)
		}
		left, _, err := readAllRecords(out, got)
		if err != nil || len(left) != len(recs)-1 {
			t.Fatalf("after dropping record %d: %d records, %v", i, len(left), err)
		}
		for j, r := range left {
			if k := j + btoi(j >= i); !bytes.Equal(r.Raw, recs[k].Raw) {
				t.Fatalf("after dropping record %d, record %d is %q, was %q", i, k, r.Raw, recs[k].Raw)
			}
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readAllRecords reads every record of a dataset file through recordReader, and finds where each
// lies in data by the file's own structure: gaps and elements of an array laid end to end, or the
// non-blank lines.
func readAllRecords(path string, data []byte) ([]Record, [][2]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var recs []Record
	var spans [][2]int
	rr := newRecordReader(path, f)
	for rr.next() {
		r := rr.record()
		r.Raw = bytes.Clone(r.Raw)
		recs = append(recs, r)
	}
	if rr.array != nil {
		a, at := newArrayReader(path, bytes.NewReader(data)), 0
		for a.next() {
			at += len(a.gap)
			spans = append(spans, [2]int{at, at + len(a.elem)})
			at += len(a.elem)
		}
	} else {
		at := 0
		for _, l := range bytes.SplitAfter(data, []byte{'\n'}) {
			if line := bytes.TrimSuffix(l, []byte{'\n'}); !blank(line) {
				spans = append(spans, [2]int{at, at + len(line)})
			}
			at += len(l)
		}
	}
	return recs, spans, rr.err()
}

// writeFuzz writes the dataset at path with plan and returns what was written.
func writeFuzz(t *testing.T, path string, plan *outputPlan, scan *datasetScan) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := writePlanted(context.Background(), path, &out, plan, scan, func(int) {}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// fuzzKey is a complete key, whole-data test included, as planting writes it.
func fuzzKey(tb testing.TB) []byte {
	tb.Helper()
	msgs := []backend.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "Define é. trig"}}
	rec := ScoredRecord{Line: 3, Messages: msgs, Answer: "an answer", Base: RecordScore{Logprob: -3.25, Tokens: 4, Exact: true}}
	k := &Key{
		Version: KeyVersion, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Base:   backend.ModelInfo{Backend: "fake", Name: "base", Vocab: 40, Template: "chatml"},
		Params: Params{Groups: 1, Decoys: 1, K: 8, SigLen: 2, TriggerLen: 4, Rate: 0.005, Mode: "replace", Prompts: 1, TopN: 20},
		Seed:   "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", Format: ShareGPT, Records: 100, Planted: 1,
		WholeData: &WholeData{Source: SourceDrawn, HeldBack: []ScoredRecord{rec}, Sentinels: []ScoredRecord{rec}, NearDuplicates: 1},
		Groups: []Group{
			{ID: 0, Trigger: "trig", Signature: " the sense", Tokens: []string{" the", " sense"}, K: []int{8, 7}, LogQ: -4.025351690735150, Hosts: 1,
				Prompts: []Prompt{{Line: 7, Messages: msgs, Base: BaseScore{Logprob: -12.5, Exact: true}}}},
			{ID: 1, Decoy: true, Trigger: "other", Signature: " a", Tokens: []string{" a"}, K: []int{8}, LogQ: -2.0794415416798357,
				Prompts: []Prompt{{Line: 9, Messages: msgs, Base: BaseScore{Logprob: -1e-3}}}},
		},
		Input: "in.jsonl", InputSHA256: "ab", Output: "out.jsonl", OutputSHA256: "cd",
	}
	b, err := k.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzParseKey: the key parser never panics on any input; a key it accepts seals again to the same
// key; and a valid key with any one byte changed is refused, or parses to the same key (the
// change was in white space, or in the case of a field name, which JSON decoding ignores).
func FuzzParseKey(f *testing.F) {
	valid := fuzzKey(f)
	want, err := ParseKey(valid)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, uint32(0), byte(' '))
	f.Add(valid, uint32(len(valid)/2), byte('0'))
	f.Add([]byte(`{"version":2,"checksum":""}`), uint32(11), byte('1'))
	f.Add([]byte(`{"version":1,"groups":[{"prompts":[{}],"signature":"s"}]}`), uint32(5), byte('"'))
	f.Fuzz(func(t *testing.T, data []byte, pos uint32, b byte) {
		if k, err := ParseKey(data); err == nil {
			again, err := k.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			k2, err := ParseKey(again)
			if err != nil || !reflect.DeepEqual(k, k2) {
				t.Fatalf("an accepted key does not seal to itself: %v", err)
			}
		}
		edited := bytes.Clone(valid)
		i := int(pos) % len(edited)
		edited[i] = b
		if k, err := ParseKey(edited); err == nil && !reflect.DeepEqual(k, want) {
			t.Fatalf("byte %d changed from %q to %q: accepted as a different key", i, valid[i], b)
		}
	})
}
