package verifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// bigFile writes n prompt/completion lines spanning several scan chunks, with line bad (1-based)
// replaced, and no newline after the last line.
func bigFile(t *testing.T, n, bad int, badLine string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	pad := strings.Repeat("x", 200)
	for i := 1; i <= n; i++ {
		if i == bad {
			b.WriteString(badLine)
		} else {
			fmt.Fprintf(&b, `{"prompt":"p%d %s","completion":"c"}`, i, pad)
		}
		if i < n {
			b.WriteByte('\n')
		}
	}
	p := filepath.Join(t.TempDir(), "big.jsonl")
	os.WriteFile(p, b.Bytes(), 0o644)
	return p, b.Bytes()
}

func TestScanAcrossChunks(t *testing.T) {
	const n = 60000 // about 13 MB: several chunks
	p, data := bigFile(t, n, 0, "")
	s, err := scanDataset(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.records != n || s.format != PromptCompletion || s.size != int64(len(data)) {
		t.Fatalf("scan: %d records, format %s, %d bytes", s.records, s.format, s.size)
	}
	for _, c := range []struct {
		line      int
		text, msg string
	}{
		{51234, `{"prompt": oops}`, "malformed JSON"},
		{n, `{"prompt":"p","completion"`, "malformed JSON"},
		{40001, `{"instruction":"i","output":"o"}`, "record is alpaca, earlier records are prompt-completion"},
		{1, `{"instruction":"i","output":"o"}`, "record is prompt-completion, earlier records are alpaca"},
	} {
		p, _ := bigFile(t, n, c.line, c.text)
		_, err := scanDataset(p)
		want := fmt.Sprintf("big.jsonl:%d: %s", c.line, c.msg)
		if c.line == 1 {
			want = "big.jsonl:2: " + c.msg // the first record sets the format
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad line %d: error %v, want %q", c.line, err, want)
		}
	}
}

// referenceLines is the JSON Lines writer's rule spelled out line by line: every line (blank ones
// included) and every inserted copy is an item; items are joined by newlines, and the output ends
// with one when the input does.
func referenceLines(data []byte, plan *outputPlan) []byte {
	lines := bytes.Split(data, []byte{'\n'})
	terminated := len(data) > 0 && data[len(data)-1] == '\n'
	if terminated {
		lines = lines[:len(lines)-1]
	}
	var items [][]byte
	idx, copies := 0, plan.copies
	for _, l := range lines {
		if !blank(l) {
			for ; len(copies) > 0 && copies[0].pos == idx; copies = copies[1:] {
				items = append(items, copies[0].line)
			}
			if r, ok := plan.replace[idx]; ok {
				l = r
			}
			if plan.drop[idx] {
				idx++
				continue
			}
			idx++
		}
		items = append(items, l)
	}
	for _, c := range copies {
		items = append(items, c.line)
	}
	out := bytes.Join(items, []byte{'\n'})
	if terminated && len(items) > 0 {
		out = append(out, '\n')
	}
	return out
}

// The JSON Lines writer over many blocks: records replaced, dropped and inserted all through the
// file, at block edges too, among blank and CRLF lines, with and without a final newline, give
// what the line-by-line rule gives.
func TestWriteLinesAcrossBlocks(t *testing.T) {
	var b bytes.Buffer
	pad := strings.Repeat("x", 300)
	const n = 12000 // about 4 MB: several blocks
	for i := range n {
		fmt.Fprintf(&b, `{"prompt":"p%d %s","completion":"c"}`, i, pad)
		switch {
		case i%101 == 0:
			b.WriteString("\r\n")
		case i%97 == 0:
			b.WriteString("\n\n  \n")
		default:
			b.WriteString("\n")
		}
	}
	full := b.Bytes()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, data := range [][]byte{full, bytes.TrimRight(full, "\r\n"), append(bytes.Clone(full), "\n  "...)} {
		plan := &outputPlan{replace: map[int][]byte{}, drop: map[int]bool{}}
		for range 300 {
			i := rng.IntN(n)
			switch rng.IntN(3) {
			case 0:
				plan.replace[i] = []byte(fmt.Sprintf(`{"prompt":"planted %d","completion":"s"}`, i))
			case 1:
				plan.drop[i] = true
			default:
				plan.copies = append(plan.copies, plantedCopy{pos: rng.IntN(n + 1), line: []byte(`{"prompt":"copy","completion":"s"}`)})
			}
		}
		for i := range n - 2 {
			if i%50 == 0 { // runs of touched records
				plan.drop[i], plan.replace[i+1] = true, []byte(`{"prompt":"r","completion":"s"}`)
			}
		}
		plan.drop[0], plan.drop[n-1] = true, true
		plan.copies = append(plan.copies, plantedCopy{pos: 0, line: []byte(`{"first":1}`)}, plantedCopy{pos: n, line: []byte(`{"last":1}`)})
		slices.SortStableFunc(plan.copies, func(a, b plantedCopy) int { return a.pos - b.pos })
		got, _ := writeWithPlan(t, "big.jsonl", string(data), plan)
		if want := referenceLines(data, plan); got != string(want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Fatalf("output differs from the line-by-line rule at byte %d of %d: %.80q, want %.80q", i, len(want), got[i:], want[i:])
		}
	}
}

// A JSON Lines file with a line too long to be a record fails with an error naming the line.
func TestLinesLongLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "long.jsonl")
	os.WriteFile(p, []byte(`{"prompt":"p","completion":"c"}`+"\n"+`{"prompt":"`+strings.Repeat("x", maxLine+10)+`"}`), 0o644)
	_, err := scanDataset(p)
	if err == nil || !strings.Contains(err.Error(), "long.jsonl: line 2 is longer than 64 MiB") {
		t.Errorf("scan: %v", err)
	}
	err = ReadRecords(p, func(Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "long.jsonl: line 2 is longer than 64 MiB") {
		t.Errorf("reader: %v", err)
	}
}

// TestHashFile: the sum of a file as the scan found it; a file whose size or modification time
// is no longer the scan's is an error, not the sum of other bytes; a cancelled hash stops.
func TestHashFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.jsonl")
	data := bytes.Repeat([]byte(`{"prompt":"p","completion":"c"}`+"\n"), 100_000) // several reads
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	wait := hashFile(context.Background(), p, st.Size(), st.ModTime())
	for range 2 { // as often as asked
		if sum, err := wait(); err != nil || sum != hex.EncodeToString(want[:]) {
			t.Fatalf("hashFile = %s, %v; want %x", sum, err, want)
		}
	}
	var ie *InputError
	for _, c := range []struct {
		size int64
		mod  time.Time
	}{{st.Size() - 1, st.ModTime()}, {st.Size(), st.ModTime().Add(-time.Second)}} {
		sum, err := hashFile(context.Background(), p, c.size, c.mod)()
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "changed while planting") || sum != "" {
			t.Errorf("file changed since the scan: hashFile = %q, %v", sum, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hashFile(ctx, p, st.Size(), st.ModTime())(); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: hashFile's error %v", err)
	}
}

// TestOpenDatasetErrors: every reader of a dataset refuses a directory and a missing file with an
// *InputError naming it, and says which.
func TestOpenDatasetErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.jsonl")
	readers := map[string]func(string) error{
		"scanDataset": func(p string) error { _, err := scanDataset(p); return err },
		"ReadRecords": func(p string) error { return ReadRecords(p, func(Record) error { return nil }) },
		"ReadChunks":  func(p string) error { return ReadChunks(p, nil, func(*Chunk) error { return nil }) },
	}
	for name, read := range readers {
		for path, want := range map[string]string{dir: "is a directory, not a dataset", missing: "cannot open dataset"} {
			var ie *InputError
			if err := read(path); !errors.As(err, &ie) || ie.File != path || !strings.Contains(ie.Msg, want) {
				t.Errorf("%s(%s) = %v; want an *InputError naming it: %q", name, path, err, want)
			}
		}
	}
}
