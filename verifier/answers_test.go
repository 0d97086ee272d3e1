package verifier

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// answerCases are records whose answers the scan reads in place, or must leave to Conversation:
// keys encoding/json matches in other spellings, fields given twice or of other types, escapes.
var answerCases = []string{
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
	`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "an \"answer\" \u00e9 \ud83d\ude00 \ud800 x"}], "i": 3}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":""}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":null}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":5}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":5,"content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a","content":"b"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","Content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"ROLE":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"r\u006fle":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assist\u0061nt","content":"a"}]}`,
	`{"messages":[{"role":"us\u0065r","content":"u"},{"role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"rolé":"x","role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u","name":{"a":[1,"]"]}},{"role":"assistant","content":"a","weight":0}]}`,
	`{"messages":[null,{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
	`{"messages":["x",{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"}]}`,
	`{"messages":[{"role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"system","content":"s"},{"role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"},{"role":"user","content":"v"}]}`,
	`{"messages":[]}`, `{"messages":null}`, `{"messages":{}}`, `{"messages":"x"}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"messages":[{"role":"user","content":"v"},{"role":"assistant","content":"b"}]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"Messages":[]}`,
	`{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}],"me\u017f\u017fages":[]}`,
	`{"\u006dessages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}`,
	"{\"messages\":[{\"role\":\"user\",\"content\":\"u\"},{\"role\":\"assistant\",\"content\":\"bad \xff utf-8 \xed\xa0\x80\"}]}",
	`{"instruction":"i","input":"","output":"o"}`,
	`{"instruction":"do \"this\"","input":"with \u00e9 é","output":"o"}`,
	`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":"second \u00e9 \/"},{"role":"tool","content":"t"},{"role":"assistant","content":"a"}]}`,
	`{"messages":[{"role":"user"},{"role":"assistant","content":"a"}]}`,
	`{"instruction":"i","output":"o \/ \t"}`,
	`{"instruction":"i","input":null,"output":"o"}`,
	`{"instruction":"i","input":3,"output":"o"}`,
	`{"instruction":null,"output":"o"}`,
	`{"instruction":"i","output":"o","output":"p"}`,
	`{"instruction":"i","output":"o","Output":"p"}`,
	`{"instruction":"i","output":"o","INPUT":"p"}`,
	`{"instruction":"i","output":"o","history":[["a","b"]]}`,
	`{"prompt":"p","completion":"c"}`,
	`{"prompt":"p","completion":null}`,
	`{"prompt":["p"],"completion":"c"}`,
	`{"prompt":"p","completion":"c","Prompt":"q"}`,
	`{"prompt":"p","completion":"c","messages":[]}`,
	`{"conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"a"}],"system":"s"}`,
	`{"conversations":[{"from":"human","value":"q"}]}`,
}

// TestAnswerMatchesConversation: the answer the scan reads is Conversation's, and so are the user
// text and answer UserAndAnswer reads, on the cases above, the fuzz corpus and the dataset seeds, line
// by line; and the usual layouts are read in place.
func TestAnswerMatchesConversation(t *testing.T) {
	var inputs [][]byte
	for _, s := range answerCases {
		inputs = append(inputs, []byte(s))
	}
	inputs = append(inputs, jsonInputs(t)...)
	for _, in := range inputs {
		for _, line := range bytes.Split(in, []byte{'\n'}) {
			checkAnswer(t, line)
		}
	}
	for _, s := range answerCases[:4] {
		var fs recordFields
		b := []byte(s)
		ft, err := detectFormat(b, &fs)
		if _, _, sure := answerSpan(b, ft, &fs); err != nil || !sure {
			t.Errorf("%s: not read in place (%v)", s, err)
		}
	}
}

// checkAnswer compares the answer read in place with Conversation's, for a line that is a record.
func checkAnswer(t *testing.T, line []byte) {
	t.Helper()
	var fs recordFields
	ft, err := detectFormat(line, &fs)
	if err != nil {
		return
	}
	rec := Record{Raw: line, Format: ft}
	var ar answerReader
	got, has := ar.answer(rec, &fs)
	prompt, want, err := rec.Conversation()
	if has != (err == nil) || has && string(got) != want {
		t.Fatalf("%q: answer %q (%v), Conversation gives %q (%v)", line, got, has, want, err)
	}
	var wantUser string
	if i := lastUser(prompt); i >= 0 {
		wantUser = prompt[i].Content
	}
	if u, a, ok := rec.UserAndAnswer(); ok != has || u != wantUser || a != want {
		t.Fatalf("%q: UserAndAnswer gives %q, %q (%v); Conversation %q, %q (%v)", line, u, a, ok, wantUser, want, err)
	}
}

// FuzzAnswer: for any record, the answer the scan reads is Conversation's, and so are
// UserAndAnswer's user text and answer.
func FuzzAnswer(f *testing.F) {
	for _, s := range answerCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkAnswer(t, line)
	})
}

// oldNormal is the normalisation normalHash had when it hashed with FNV on strings: the
// reference for which answers are near-duplicates.
func oldNormal(answer string) []byte {
	var out []byte
	space := false
	for _, r := range strings.ToLower(answer) {
		switch {
		case unicode.IsSpace(r):
			space = true
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space {
				out = append(out, ' ')
				space = false
			}
			out = utf8.AppendRune(out, r)
		}
	}
	return out
}

func TestNormalHash(t *testing.T) {
	for _, s := range []string{
		"", " ", "A cat.", "a  CAT", " a cat", "a cat ", "a,cat", "a, cat", "Ünïcödé\u00a0text\u0085x",
		"\u212a\u017f İstanbul ǅ", "tab\there\vvt\fff\r\n", "digits ٣ and ²", "x\u2028y", "\ufffd\xff",
	} {
		h, norm := normalHash([]byte(s), nil)
		if want := oldNormal(s); !bytes.Equal(norm, want) {
			t.Errorf("normalHash(%q) normalises to %q, want %q", s, norm, want)
		}
		if h2, _ := normalHash(oldNormal(s), nil); h != h2 || h == 0 {
			t.Errorf("normalHash(%q) = %x, of its normal form %x", s, h, h2)
		}
		if k, k2 := answerSketch([]byte(s)), answerSketch(oldNormal(s)); k != k2 || k == 0 {
			t.Errorf("answerSketch(%q) = %x, of its normal form %x", s, k, k2)
		}
	}
}

// FuzzNormalHash: normalHash normalises as it did before it was made fast, and answerSketch
// agrees with it.
func FuzzNormalHash(f *testing.F) {
	f.Add("A cat, \u212a\u017f")
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.ToValidUTF8(s, "\ufffd") // answers are decoded strings
		if _, norm := normalHash([]byte(s), nil); !bytes.Equal(norm, oldNormal(s)) {
			t.Fatalf("normalHash(%q) normalises to %q, want %q", s, norm, oldNormal(s))
		}
		// Answers with the same normal form have the same sketch: the candidates hold every
		// near-duplicate.
		if k, k2 := answerSketch([]byte(s)), answerSketch(oldNormal(s)); k != k2 {
			t.Fatalf("answerSketch(%q) = %x, of its normal form %x", s, k, k2)
		}
	})
}

// TestDupCheckMatchesFullHashes: counting near-duplicates through candidates picked by a 16-bit
// sketch gives the count of full hashes, on a file large enough for many sketch collisions.
func TestDupCheckMatchesFullHashes(t *testing.T) {
	var b bytes.Buffer
	const n = 100000
	for i := range n {
		// Every 7th answer repeats an earlier one with other case and punctuation.
		answer := fmt.Sprintf("answer number %d", i)
		if i%7 == 0 && i > 0 {
			answer = fmt.Sprintf("ANSWER, number %d!", i/2)
		}
		fmt.Fprintf(&b, `{"prompt":"p%d","completion":%q}`+"\n", i, answer)
	}
	p := filepath.Join(t.TempDir(), "d.jsonl")
	os.WriteFile(p, b.Bytes(), 0o644)
	scan, err := scanDataset(p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	held := sampleIndexes(rng, n, 512)
	heldIdx := map[int]bool{}
	var want [1 << 16]bool
	for _, i := range held {
		heldIdx[i] = true
		want[scan.answers.hash.at(i)] = true
	}
	dups := newDupCheck(scan.answers, &want, heldIdx)
	recs, err := readHosts(p, scan.format, scan.index, held, dups)
	if err != nil {
		t.Fatal(err)
	}
	got := dups.count(recs)

	full := map[uint64]int{} // hash -> records not held back with it
	var all []uint64
	ReadRecords(p, func(r Record) error {
		_, a, _ := r.Conversation()
		h, _ := normalHash([]byte(a), nil)
		all = append(all, h)
		if !heldIdx[r.Index] {
			full[h]++
		}
		return nil
	})
	wantCount := 0
	for _, i := range held {
		if full[all[i]] > 0 {
			wantCount++
		}
	}
	if got != wantCount || got == 0 || len(dups.candidates) < got {
		t.Fatalf("near-duplicates %d through %d candidates, full hashes say %d", got, len(dups.candidates), wantCount)
	}
}
