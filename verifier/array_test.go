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
	"testing/iotest"
)

// splitArray reads every element of a JSON array as arrayReader hands them out.
func splitArray(t *testing.T, data string) (gaps, elems []string, lines []int, tail string, err error) {
	t.Helper()
	// One byte a read: every element and gap crosses buffer refills.
	a := newArrayReader("a.json", iotest.OneByteReader(strings.NewReader(data)))
	for a.next() {
		gaps, elems, lines = append(gaps, string(a.gap)), append(elems, string(a.elem)), append(lines, a.elemLine)
	}
	if a.err != nil {
		return gaps, elems, lines, "", a.err
	}
	return gaps, elems, lines, string(a.tail()), nil
}

func TestArrayReaderSplits(t *testing.T) {
	cases := []struct {
		data  string
		elems []string
		lines []int
	}{
		{`[]`, nil, nil},
		{` [ ] `, nil, nil},
		{`[{"a":1},{"b":"]}"}]`, []string{`{"a":1}`, `{"b":"]}"}`}, []int{1, 1}},
		{"[\n  {\n    \"a\": \"x\\\"}\"\n  },\n  {\"b\": [1, {\"c\": \"\\\\\"}]}\n]\n", []string{"{\n    \"a\": \"x\\\"}\"\n  }", `{"b": [1, {"c": "\\"}]}`}, []int{2, 5}},
		{"\r\n[\r\n{\"a\":1}\r\n,\r\n{\"b\":2}\r\n]", []string{`{"a":1}`, `{"b":2}`}, []int{3, 5}},
		{`["s\\", 12, true, [1]]`, []string{`"s\\"`, `12`, `true`, `[1]`}, []int{1, 1, 1, 1}},
	}
	for _, c := range cases {
		gaps, elems, lines, tail, err := splitArray(t, c.data)
		if err != nil || strings.Join(elems, "|") != strings.Join(c.elems, "|") || fmt.Sprint(lines) != fmt.Sprint(c.lines) {
			t.Errorf("%q: elements %q at lines %v, %v; want %q at %v", c.data, elems, lines, err, c.elems, c.lines)
			continue
		}
		// Gaps, elements and tail are the whole file.
		var all strings.Builder
		for i := range elems {
			all.WriteString(gaps[i] + elems[i])
		}
		if all.String()+tail != c.data {
			t.Errorf("%q: pieces join to %q", c.data, all.String()+tail)
		}
	}
}

func TestArrayReaderErrors(t *testing.T) {
	cases := []struct {
		data string
		line int
		msg  string
	}{
		{"[{\"a\":1},\n{\"b\":2},\n]", 3, "a ',' before ']'"},
		{"[{\"a\":1}\n{\"b\":2}]", 2, "want ',' or ']' after the record that ends on line 1"},
		{"[{\"a\":1}]\n[{\"b\":2}]", 2, "text after the array's closing ']'"},
		{"[\n{\"a\":1},\n{\"b\":\n", 4, "the file ends inside the record that starts on line 3"},
		{"[{\"a\":1},", 1, "the file ends before the array's closing ']'"},
		{"[,{\"a\":1}]", 1, "a record is missing before ','"},
		{"{\"a\":1}", 1, "not a JSON array"},
	}
	for _, c := range cases {
		_, _, _, _, err := splitArray(t, c.data)
		ie, ok := err.(*InputError)
		if !ok || ie.File != "a.json" || ie.Line != c.line || !strings.Contains(ie.Msg, c.msg) {
			t.Errorf("%q: error %v, want line %d and %q", c.data, err, c.line, c.msg)
		}
	}
}

// An element longer than the limit fails with an error, not by reading the file whole.
func TestArrayReaderLongElement(t *testing.T) {
	data := `[{"a":"` + strings.Repeat("x", maxLine+10) + `"}]`
	_, _, _, _, err := splitArray(t, data[:0]+data) // OneByteReader: slow but small steps
	if err == nil || !strings.Contains(err.Error(), "longer than 64 MiB") {
		t.Fatalf("long element: %v", err)
	}
}

// Writing with an empty plan gives the input back, byte for byte, in either form.
func TestWriteEmptyPlanKeepsBytes(t *testing.T) {
	rec := func(i int) string { return fmt.Sprintf(`{"prompt":"p%d","completion":"c%d"}`, i, i) }
	inputs := map[string]string{
		"lines.jsonl":      rec(1) + "\n" + rec(2) + "\n",
		"no-newline.jsonl": rec(1) + "\n\n  \n" + rec(2),
		"crlf.jsonl":       rec(1) + "\r\n" + rec(2) + "\r\n",
		"compact.json":     "[" + rec(1) + "," + rec(2) + "]",
		"pretty.json":      "\n[\n  " + rec(1) + ",\n  " + rec(2) + "\n]\n\n",
		"crlf.json":        "[\r\n\t" + rec(1) + "\r\n\t,\r\n\t" + rec(2) + "\r\n]\r\n",
	}
	for name, in := range inputs {
		got, _ := writeWithPlan(t, name, in, &outputPlan{})
		if got != in {
			t.Errorf("%s: wrote %q, input %q", name, got, in)
		}
	}
}

// writeWithPlan scans in as a dataset file and writes it with plan.
func writeWithPlan(t *testing.T, name, in string, plan *outputPlan) (string, *datasetScan) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	scan, err := scanDataset(p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var out bytes.Buffer
	if _, err := writePlanted(context.Background(), p, &out, plan, scan, func(int) {}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out.String(), scan
}

// Held-back records leave a JSON array with one separator each, planted records take their hosts'
// places, and copies come in with their neighbours' separators: the array stays valid and laid out
// as before.
func TestWriteArrayPlan(t *testing.T) {
	in := "[\n  {\"n\": 0},\n  {\"n\": 1},\n  {\"n\": 2},\n  {\"n\": 3}\n]\n"
	pc := strings.NewReplacer(`"n"`, `"prompt": "p", "completion"`, `"c"`, `"prompt": "c", "completion"`)
	cases := []struct {
		name string
		plan outputPlan
		want string
	}{
		{"drop the first", outputPlan{drop: map[int]bool{0: true}},
			"[\n  {\"n\": 1},\n  {\"n\": 2},\n  {\"n\": 3}\n]\n"},
		{"drop the middle and the last", outputPlan{drop: map[int]bool{1: true, 3: true}},
			"[\n  {\"n\": 0},\n  {\"n\": 2}\n]\n"},
		{"drop the first two, replace the third", outputPlan{drop: map[int]bool{0: true, 1: true}, replace: map[int][]byte{2: []byte(`{"n": "P"}`)}},
			"[\n  {\"n\": \"P\"},\n  {\"n\": 3}\n]\n"},
		{"copies at both ends and inside", outputPlan{copies: []plantedCopy{{0, []byte(`{"c": 0}`)}, {2, []byte(`{"c": 2}`)}, {4, []byte(`{"c": 4}`)}}},
			"[\n  {\"c\": 0},\n  {\"n\": 0},\n  {\"n\": 1},\n  {\"c\": 2},\n  {\"n\": 2},\n  {\"n\": 3},\n  {\"c\": 4}\n]\n"},
		{"a copy before a dropped first record", outputPlan{drop: map[int]bool{0: true}, copies: []plantedCopy{{0, []byte(`{"c": 0}`)}}},
			"[\n  {\"c\": 0},\n  {\"n\": 1},\n  {\"n\": 2},\n  {\"n\": 3}\n]\n"},
	}
	for _, c := range cases {
		for i, r := range c.plan.replace {
			c.plan.replace[i] = []byte(pc.Replace(string(r)))
		}
		for i, cp := range c.plan.copies {
			c.plan.copies[i].line = []byte(pc.Replace(string(cp.line)))
		}
		got, _ := writeWithPlan(t, "a.json", pc.Replace(in), &c.plan)
		if got != pc.Replace(c.want) {
			t.Errorf("%s:\n got  %q\n want %q", c.name, got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s: not valid JSON", c.name)
		}
	}
	// A one-record array takes its separator from the space after '['.
	got, _ := writeWithPlan(t, "one.json", pc.Replace("[\n\t{\"n\": 0}\n]"), &outputPlan{copies: []plantedCopy{{1, []byte(pc.Replace(`{"c": 1}`))}}})
	if want := pc.Replace("[\n\t{\"n\": 0},\n\t{\"c\": 1}\n]"); got != want {
		t.Errorf("one record: got %q, want %q", got, want)
	}
}

// JSON Lines keep blank lines and the lack of a final newline when records are dropped and added.
func TestWriteLinesPlan(t *testing.T) {
	pc := strings.NewReplacer(`"n"`, `"prompt":"p","completion"`, `"c"`, `"prompt":"c","completion"`)
	in := pc.Replace("{\"n\":0}\n\n{\"n\":1}\n{\"n\":2}")
	got, _ := writeWithPlan(t, "a.jsonl", in, &outputPlan{drop: map[int]bool{2: true}, replace: map[int][]byte{0: []byte(pc.Replace(`{"n":"P"}`))},
		copies: []plantedCopy{{3, []byte(pc.Replace(`{"c":3}`))}}})
	if want := pc.Replace("{\"n\":\"P\"}\n\n{\"n\":1}\n{\"c\":3}"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestScanArray(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	alpaca := func(i int) string {
		return fmt.Sprintf("  {\n    \"instruction\": \"Define w%d.\",\n    \"input\": \"\",\n    \"output\": \"sense %d\"\n  }", i, i)
	}
	var recs []string
	for i := range 3 {
		recs = append(recs, alpaca(i))
	}
	good := "[\n" + strings.Join(recs, ",\n") + "\n]\n"
	s, err := scanDataset(write("good.json", good))
	if err != nil || !s.array || s.records != 3 || s.format != Alpaca || string(s.sep) != ",\n  " {
		t.Fatalf("scan: %+v, %v", s, err)
	}
	cases := []struct{ name, data, want string }{
		{"mixed.json", "[\n" + recs[0] + ",\n" + `  {"prompt": "p", "completion": "c"}` + "\n]", "mixed.json:7: record is prompt-completion, earlier records are alpaca"},
		{"unknown.json", "[\n" + recs[0] + ",\n  {\"text\": \"t\"}\n]", "unknown.json:7: unknown record format"},
		{"scalar.json", "[\n" + recs[0] + ",\n  17\n]", "scalar.json:7: a record must be a JSON object"},
		{"malformed.json", "[\n" + recs[0] + ",\n  {\"output\": }\n]", "malformed.json:7: malformed JSON"},
		{"open.json", "[\n" + recs[0] + ",\n", "open.json:7: the file ends before the array's closing ']'"},
		{"empty.json", " [ ]\n", "empty.json: dataset is empty"},
	}
	for _, c := range cases {
		_, err := scanDataset(write(c.name, c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// The audit's reader gives the same records and the same errors.
	n := 0
	if err := ReadRecords(filepath.Join(dir, "good.json"), func(r Record) error {
		if r.Index != n || r.Line != 2+5*n || r.Format != Alpaca || string(r.Raw) != strings.TrimLeft(recs[n], " ") {
			t.Errorf("record %d: %+v", n, r)
		}
		n++
		return nil
	}); err != nil || n != 3 {
		t.Errorf("ReadRecords: %d records, %v", n, err)
	}
	if err := ReadRecords(filepath.Join(dir, "mixed.json"), func(Record) error { return nil }); err == nil || !strings.Contains(err.Error(), cases[0].want) {
		t.Errorf("ReadRecords on mixed records: %v", err)
	}
}

// An array several times the reader's buffer keeps its bytes and its line numbers across the
// refills, with records of every size straddling the buffer's ends.
func TestArrayAcrossBuffers(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	var lines []int
	line := 1
	for i := 0; b.Len() < 3<<20; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		line++
		lines = append(lines, line)
		pad := strings.Repeat("é\\\"", i%700)
		fmt.Fprintf(&b, "{\n    \"prompt\": \"p%d %s\",\n    \"completion\": \"c\"\n  }", i, pad)
		line += 3
	}
	b.WriteString("\n]\n")
	in := b.String()
	got, scan := writeWithPlan(t, "big.json", in, &outputPlan{})
	if got != in || scan.records != len(lines) {
		t.Fatalf("wrote %d bytes of %d, %d records of %d", len(got), len(in), scan.records, len(lines))
	}
	n := 0
	p := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(p, []byte(in), 0o644)
	err := ReadRecords(p, func(r Record) error {
		if r.Line != lines[n] || !strings.HasPrefix(string(r.Raw), fmt.Sprintf("{\n    \"prompt\": \"p%d ", n)) {
			t.Fatalf("record %d at line %d, want %d: %.40q", n, r.Line, lines[n], r.Raw)
		}
		n++
		return nil
	})
	if err != nil || n != len(lines) {
		t.Fatalf("%d records, %v", n, err)
	}
}
