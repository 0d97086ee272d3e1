package verifier

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestIndexedReadsAsWalk checks that reading records through the scan's index gives what walking
// the file gives: the same bytes, indexes and lines, with blank lines, CRLF, long records across
// the index's reads and a last line without a newline.
func TestIndexedReadsAsWalk(t *testing.T) {
	var b bytes.Buffer
	const n = 5000
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		if rng.IntN(7) == 0 {
			b.WriteString("\n  \n")
		}
		answer := fmt.Sprintf("a%d", i)
		if rng.IntN(50) == 0 {
			answer += strings.Repeat("x", rng.IntN(3*indexRead))
		}
		fmt.Fprintf(&b, `{"prompt":"p%d","completion":%q}`, i, answer)
		if i < n-1 {
			if i%3 == 0 {
				b.WriteString("\r")
			}
			b.WriteString("\n")
		}
	}
	p := filepath.Join(t.TempDir(), "d.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	scan, err := scanDataset(p)
	if err != nil {
		t.Fatal(err)
	}
	if scan.index == nil || len(scan.index.entries) != (n+indexEvery-1)/indexEvery {
		t.Fatalf("index %v for %d records", scan.index, n)
	}
	for _, k := range []int{1, 3, 40, 700, n} {
		order := sampleIndexes(rng, n, k)
		order = append(order, 0, n-1, indexEvery, indexEvery-1)
		walked, err := readHosts(p, scan.format, nil, order, nil)
		if err != nil {
			t.Fatal(err)
		}
		indexed, err := readHosts(p, scan.format, scan.index, order, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range order {
			w, x := walked[i], indexed[i]
			if w.Index != order[i] || x.Index != w.Index || x.Line != w.Line || !slices.Equal(x.Raw, w.Raw) {
				t.Fatalf("record %d: walked %d line %d %.40q, indexed %d line %d %.40q", order[i], w.Index, w.Line, w.Raw, x.Index, x.Line, x.Raw)
			}
		}
	}
}
