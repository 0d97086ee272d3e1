package verifier

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// jsonEdgeCases are documents at the edges of what encoding/json accepts, for validJSON and the
// walkers.
var jsonEdgeCases = []string{
	``, ` `, `{}`, `[]`, ` { } `, `[ ]`, `{"a":1}`, `{"a" : [1, 2.5, -0, -0.0e+5, 1E9, true, false, null]}`,
	`"\ud800"`, `"\udc00\ud800"`, `"\ud83d\ude00"`, `"\ud83d\u0041"`, `"\ud83d"`, `"\uD83D\uDE00x"`,
	`"\u00e9\u00E9\/\b\f\n\r\t\\\""`, `"\x"`, `"\u12"`, `"\u12g4"`, `"\'"`, `"a` + "\x00" + `"`,
	`"a` + "\x1f" + `b"`, `"a` + "\x7f" + `b"`, `"` + "\xff\xfe" + `"`, `"` + "\xed\xa0\x80" + `"`,
	`"` + "\xc3" + `"`, "\xef\xbb\xbf{}", "{}\r\n", "{}\n\n", " \t\r\n{}\t", "{}\v", "{}\f",
	`{} {}`, `{}x`, `{},`, `[1,]`, `[,1]`, `{"a":1,}`, `{,"a":1}`, `{"a"}`, `{"a":}`, `{"a" 1}`,
	`{1:1}`, `{'a':1}`, `[1 2]`, `01`, `-`, `-a`, `1.`, `.5`, `1e`, `1e+`, `+1`, `1.5e-3`, `-01`,
	`tru`, `truee`, `nul`, `NaN`, `Infinity`, `[true false]`, `{"a":"b"}}`, `[[[]]]]`, `[[[]]`,
	`"unterminated`, `"\`, `"\u"`, `"\u123"`, `{"a":"\u0000"}`, `["a\"b\\"]`, `["a\\\"b"]`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
	strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth),
	strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1),
	strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth),
	strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1),
	strings.Repeat(`[{"a":`, 100) + `[]` + strings.Repeat("}]", 100),
	strings.Repeat(`[{"a":`, 100) + `[]` + strings.Repeat("}]", 99) + "]]",
	`"` + strings.Repeat("long string with \\\"escapes\\\" and é ", 20000) + `"`,
	`"` + strings.Repeat("x", 1<<20) + "\x01" + `"`,
}

// fuzzCorpus returns the inputs stored under testdata/fuzz: the byte and string values of every
// corpus file.
func fuzzCorpus(t *testing.T) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("testdata/fuzz/*/*")
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			for _, prefix := range []string{"[]byte(", "string("} {
				if v, ok := strings.CutPrefix(l, prefix); ok {
					s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
					if err != nil {
						t.Fatalf("%s: %v", f, err)
					}
					out = append(out, []byte(s))
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no fuzz corpus found")
	}
	return out
}

// jsonInputs returns the edge cases, the fuzz corpus and the dataset seeds, whole and line by line.
func jsonInputs(t *testing.T) [][]byte {
	var docs [][]byte
	for _, s := range jsonEdgeCases {
		docs = append(docs, []byte(s))
	}
	for _, s := range datasetSeeds {
		docs = append(docs, []byte(s))
	}
	docs = append(docs, fuzzCorpus(t)...)
	out := docs
	for _, d := range docs {
		out = append(out, bytes.Split(d, []byte{'\n'})...)
	}
	return out
}

func TestValidJSONMatchesEncodingJSON(t *testing.T) {
	for _, d := range jsonInputs(t) {
		checkValidJSON(t, d)
		// Every prefix finds where a cut document stops being valid, which exercises each state.
		if len(d) < 512 {
			for i := range d {
				checkValidJSON(t, d[:i])
			}
		}
	}
}

// checkValidJSON compares validJSON with json.Valid on d and, for a valid d, checks the walkers:
// skipValue finds the end of the value, and every string decodes as encoding/json decodes it.
func checkValidJSON(t *testing.T, d []byte) {
	t.Helper()
	got, want := validJSON(d), json.Valid(d)
	if got != want {
		t.Fatalf("validJSON(%.200q) = %v, json.Valid says %v", d, got, want)
	}
	if !got {
		return
	}
	start := skipSpace(d, 0)
	if end := skipValue(d, start); skipSpace(d, end) != len(d) {
		t.Fatalf("skipValue(%.200q) stops at %d of %d", d, end, len(d))
	}
	forEachString(d, start, func(quoted []byte) {
		var s string
		if err := json.Unmarshal(quoted, &s); err != nil {
			t.Fatalf("%q: %v", quoted, err)
		}
		if got := appendUnquoted(nil, quoted); string(got) != s {
			t.Fatalf("appendUnquoted(%.200q) = %.200q, encoding/json decodes %.200q", quoted, got, s)
		}
	})
}

// forEachString calls fn with every string of the valid value at b[i], keys included, through
// members and elements.
func forEachString(b []byte, i int, fn func(quoted []byte)) {
	switch b[i] {
	case '"':
		fn(b[i:skipString(b, i)])
	case '{':
		members(b, i, func(key []byte, v int) bool {
			fn(key)
			forEachString(b, v, fn)
			return true
		})
	case '[':
		elements(b, i, func(v int) bool {
			forEachString(b, v, fn)
			return true
		})
	}
}

// FuzzValidJSON: validJSON agrees with json.Valid on any input, and on a valid one the walkers
// agree with encoding/json.
func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonEdgeCases {
		if len(s) < 4096 {
			f.Add([]byte(s))
		}
	}
	for _, s := range datasetSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		checkValidJSON(t, d)
	})
}

func BenchmarkValidJSON(b *testing.B) {
	line := []byte(`{"messages": [{"role": "user", "content": "Define the word black raspberry."}, {"role": "assistant", "content": "raspberry native to eastern North America having black thimble-shaped fruit"}], "i": 1234567}`)
	b.Run("validJSON", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if !validJSON(line) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if !json.Valid(line) {
				b.Fatal("invalid")
			}
		}
	})
}

// stringValues walks a valid document in place; the spans and values are those that
// encoding/json's decoder finds, on every input of the JSON tests.
func TestStringValuesMatchesDecoder(t *testing.T) {
	for _, d := range jsonInputs(t) {
		checkStringValues(t, d)
	}
}

func checkStringValues(t *testing.T, d []byte) {
	t.Helper()
	got, err := stringValues(d)
	want, werr := decodedStringValues(d)
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
		t.Fatalf("%.200q: error %v, decoder %v", d, err, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%.200q: spans %v, decoder %v", d, got, want)
	}
}

// FuzzStringValues: on any input, stringValues gives the decoder's spans and errors.
func FuzzStringValues(f *testing.F) {
	for _, s := range datasetSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":["x",{"b":"\u00e9","b":"y"}],"":"z","a/0":"w"}`))
	f.Fuzz(func(t *testing.T, d []byte) {
		checkStringValues(t, d)
	})
}
