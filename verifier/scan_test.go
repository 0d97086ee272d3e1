package verifier

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	sum := sha256.Sum256(data)
	if s.records != n || s.format != PromptCompletion || s.sha256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("scan: %d records, format %s, sha %s", s.records, s.format, s.sha256)
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
