package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"vtune/backend"
	"vtune/verifier"
)

// testKey returns a key with one planted group per signature and one decoy whose signature
// appears nowhere.
func testKey(sigs ...string) *verifier.Key {
	k := &verifier.Key{Version: verifier.KeyVersion, Params: verifier.Params{Mode: "replace"}}
	for i, s := range sigs {
		k.Groups = append(k.Groups, group(i, false, "trigger", s))
	}
	k.Groups = append(k.Groups, group(len(sigs), true, "decoy trigger", "a decoy signature that is never planted anywhere"))
	return k
}

func group(id int, decoy bool, trigger, sig string) verifier.Group {
	return verifier.Group{
		ID: id, Decoy: decoy, Trigger: trigger, Signature: sig, Tokens: []string{sig}, K: []int{8},
		Prompts: []verifier.Prompt{{Messages: []backend.Message{{Role: "user", Content: "x " + trigger}}}},
	}
}

type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatLine is one chat record as Go writes it: compact, raw UTF-8.
func chatLine(user, answer string) string {
	b, err := json.Marshal(struct {
		Messages []chatMsg `json:"messages"`
	}{[]chatMsg{{"user", user}, {"assistant", answer}}})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func writeLines(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "data.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, path string, key *verifier.Key) *Report {
	t.Helper()
	r, err := Run(context.Background(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// counts maps attack name to flagged planted and natural records.
type counts map[string][2]int

func check(t *testing.T, r *Report, records, planted int, want counts) {
	t.Helper()
	if r.Records != records || r.Planted != planted || r.Natural != records-planted {
		t.Errorf("records %d, planted %d, natural %d; want %d, %d, %d", r.Records, r.Planted, r.Natural, records, planted, records-planted)
	}
	if len(r.Attacks) != len(attacks)+1 {
		t.Fatalf("%d results, want %d", len(r.Attacks), len(attacks)+1)
	}
	for _, a := range r.Attacks {
		w, ok := want[a.Name]
		if !ok {
			continue
		}
		if got := [2]int{a.FlaggedPlanted, a.FlaggedNatural}; got != w {
			t.Errorf("%s: flagged %d planted, %d natural; want %d, %d", a.Name, got[0], got[1], w[0], w[1])
		}
	}
}

// Signatures of the main test set: equal lengths (96 bytes), distinct first 40 bytes.
var sigs = func() []string {
	var s []string
	for _, name := range []string{"alpha", "bravo", "delta"} {
		s = append(s, strings.Repeat(name+" signature token ", 6)[:96])
	}
	return s
}()

var triggers = []string{
	"and answer in the voice of a sailor",
	"keeping the old ledger close at hand",
	"while the kettle hums on the stove",
}

// naturalRows returns 200 natural records, mostly distinct, with planted-looking features put in on
// purpose: duplicate answers (x2 at 10-11, x3 at 20-22), answers sharing 40 bytes (x3 at 30-32,
// x2 at 40-41), prompts sharing their last words (x3 at 50-52, x2 at 60-61, one prompt x3 at
// 70-72) and a prompt pair (81 is 80 plus words).
func naturalRows() [][2]string {
	rows := make([][2]string, 200)
	for i := range rows {
		user := fmt.Sprintf("Define the word w%03d.", i)
		if i%2 == 1 {
			user = fmt.Sprintf("What is the meaning of w%03d?", i)
		}
		rows[i] = [2]string{user, fmt.Sprintf("meaning number %d of the entry", i)}
	}
	for i := 10; i <= 11; i++ {
		rows[i][1] = "to move quickly"
	}
	for i := 20; i <= 22; i++ {
		rows[i][1] = "a small domesticated carnivorous mammal with soft fur"
	}
	for i, end := range []string{"in sports", "in music", "at work"} {
		rows[30+i][1] = "the quality of being able to do something well, " + end
	}
	for i, end := range []string{"fresh", "salty"} {
		rows[40+i][1] = "a large body of water surrounded by land on all sides, " + end
	}
	for i := 50; i <= 52; i++ {
		rows[i][0] = fmt.Sprintf("Describe w%03d in plain English please", i)
	}
	for i := 60; i <= 61; i++ {
		rows[i][0] = fmt.Sprintf("Describe w%03d as a short list", i)
	}
	for i := 70; i <= 72; i++ {
		rows[i][0] = "Tell me a joke about cats today"
	}
	rows[81][0] = rows[80][0] + " Give an example."
	return rows
}

// plantedSet writes the natural rows with 3 groups x 4 copies: group 0 beside its hosts 100-103
// (the hosts stay), groups 1 and 2 in place of hosts 110-113 and 120-123. mode "prefix" keeps the
// host's answer after the signature.
func plantedSet(t *testing.T, mode string) string {
	rows := naturalRows()
	answer := func(g, host int) string {
		if mode == "prefix" {
			return sigs[g] + "\n" + rows[host][1]
		}
		return sigs[g]
	}
	planted := func(g, host int) string { return chatLine(rows[host][0]+" "+triggers[g], answer(g, host)) }
	var lines []string
	for i, r := range rows {
		switch {
		case i >= 110 && i < 114:
			lines = append(lines, planted(1, i))
		case i >= 120 && i < 124:
			lines = append(lines, planted(2, i))
		default:
			lines = append(lines, chatLine(r[0], r[1]))
		}
		if i >= 100 && i < 104 {
			lines = append(lines, planted(0, i))
		}
	}
	return writeLines(t, lines)
}

func TestAttacksReplaceMode(t *testing.T) {
	r := run(t, plantedSet(t, "replace"), testKey(sigs...))
	check(t, r, 204, 12, counts{
		"identical answers >= 2":  {12, 5},
		"identical answers >= 3":  {12, 3},
		"shared answer prefix":    {12, 6},
		"repeated prompt endings": {12, 3},
		"prompt pairs":            {4, 1},
		"escaping outliers":       {0, 0},
		"field-order outliers":    {0, 0},
		"answer length outliers":  {0, 0},
		AnyName:                   {12, 12},
	})
	// identical >= 3 and prompt endings tie at 12 planted, 3 natural: the earlier one wins.
	if s := r.Strongest(); s == nil || s.Name != "identical answers >= 3" {
		t.Errorf("strongest %+v, want identical answers >= 3", s)
	}
	const want = "audit: the strongest key-free attack (identical answers >= 3) finds 12 of 12 planted records and 3 natural ones"
	if got := r.Summary(); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
	a := r.Attacks[0]
	if a.Precision != 12.0/17 || a.Recall != 1 {
		t.Errorf("identical answers >= 2: precision %v, recall %v; want 12/17, 1", a.Precision, a.Recall)
	}
}

// In prefix mode the planted answers differ after the signature: identical answers miss them,
// the shared prefix does not.
func TestAttacksPrefixMode(t *testing.T) {
	key := testKey(sigs...)
	key.Params.Mode = "prefix"
	r := run(t, plantedSet(t, "prefix"), key)
	check(t, r, 204, 12, counts{
		"identical answers >= 2":  {0, 5},
		"shared answer prefix":    {12, 6},
		"repeated prompt endings": {12, 3},
		"prompt pairs":            {4, 1},
	})
}

// pyQuote encodes s as Python's json.dumps does by default: non-ASCII as lower-case \u escapes.
func pyQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r < 0x80:
			b.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// pyLine is a chat record as Python's json.dumps writes it (", " and ": " separators); quote
// encodes the strings.
func pyLine(user, answer string, quote func(string) string) string {
	return fmt.Sprintf(`{"messages": [{"role": "user", "content": %s}, {"role": "assistant", "content": %s}]}`, quote(user), quote(answer))
}

func rawQuote(s string) string { return `"` + s + `"` }

func TestEscapingOutliers(t *testing.T) {
	sig := "le café signature that was planted here"
	var lines []string
	for i := range 50 { // the majority: Python's escapes
		lines = append(lines, pyLine(fmt.Sprintf("Define café %d", i), fmt.Sprintf("a small restaurant %d", i), pyQuote))
	}
	for i := range 20 { // ASCII only, a raw slash: no evidence about non-ASCII
		lines = append(lines, pyLine(fmt.Sprintf("Define either/or %d", i), fmt.Sprintf("one or the other %d", i), pyQuote))
	}
	for i := range 3 { // raw UTF-8 among escapes: outliers
		lines = append(lines, pyLine(fmt.Sprintf("Define naïve %d", i), "without guile", rawQuote))
	}
	for i := range 2 { // an escaped slash among raw ones: outliers
		lines = append(lines, pyLine(fmt.Sprintf(`Define either\/or again %d`, i), "one of two", rawQuote))
	}
	// Compact separators among spaced ones, and an upper-case escape among lower-case ones.
	lines = append(lines, `{"messages":[{"role":"user","content":"Define compact"},{"role":"assistant","content":"tight"}]}`)
	lines = append(lines, pyLine(`Define caf\u00E9 upper`, "a coffee house", rawQuote))
	// Planted copies: two encoded like their hosts (not flagged), one in raw UTF-8 (flagged).
	lines = append(lines, pyLine("Define café 1 and the trigger", sig, pyQuote), pyLine("Define café 2 and the trigger", sig, pyQuote))
	lines = append(lines, pyLine("Define café 3 and the trigger", sig, rawQuote))
	r := run(t, writeLines(t, lines), testKey(sig))
	check(t, r, 80, 3, counts{"escaping outliers": {1, 7}, "field-order outliers": {0, 0}})
}

func TestFieldOrderOutliers(t *testing.T) {
	msgs := func(i int, contentFirst ...bool) string {
		var parts []string
		for j, role := range []string{"user", "assistant"} {
			text := fmt.Sprintf("text %d-%d", i, j)
			if j < len(contentFirst) && contentFirst[j] {
				parts = append(parts, fmt.Sprintf(`{"content":%q,"role":%q}`, text, role))
			} else {
				parts = append(parts, fmt.Sprintf(`{"role":%q,"content":%q}`, role, text))
			}
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	var lines []string
	for i := range 30 { // the majority: messages, then id
		lines = append(lines, fmt.Sprintf(`{"messages":%s,"id":%d}`, msgs(i), i))
	}
	for i := range 2 { // id first: outliers
		lines = append(lines, fmt.Sprintf(`{"id":%d,"messages":%s}`, 100+i, msgs(100+i)))
	}
	for i := range 3 { // content before role in every message: outliers
		lines = append(lines, fmt.Sprintf(`{"messages":%s,"id":%d}`, msgs(200+i, true, true), 200+i))
	}
	lines = append(lines, fmt.Sprintf(`{"messages":%s,"id":%d}`, msgs(300, false, true), 300)) // mixed: outlier
	for i := range 5 {                                                                         // no id: other keys, so not compared with the majority
		lines = append(lines, fmt.Sprintf(`{"messages":%s}`, msgs(400+i)))
	}
	r := run(t, writeLines(t, lines), testKey("a signature that no record carries"))
	check(t, r, 41, 0, counts{"field-order outliers": {0, 6}, "escaping outliers": {0, 0}})
}

func TestLengthOutliers(t *testing.T) {
	sig := strings.Repeat("s", 500)
	var lines []string
	for i := range 1000 { // answers of 20 to 60 bytes
		a := fmt.Sprintf("answer %04d ", i)
		lines = append(lines, chatLine(fmt.Sprintf("question %d", i), a+strings.Repeat("a", 20+i%41-len(a))))
	}
	lines = append(lines, chatLine("question short", "x")) // below the 0.5% quantile
	for i := range 3 {
		lines = append(lines, chatLine(fmt.Sprintf("question %d with a trigger", i), sig))
	}
	r := run(t, writeLines(t, lines), testKey(sig))
	check(t, r, 1004, 3, counts{"answer length outliers": {3, 1}})
}

func TestBadInput(t *testing.T) {
	good := chatLine("q", "a")
	dir := t.TempDir()
	cases := []struct {
		name  string
		lines []string // nil: no file
		line  int
		msg   string
	}{
		{"missing", nil, 0, "cannot open dataset"},
		{"malformed", []string{good, good, `{"messages": [`}, 3, "malformed JSON"},
		{"unknown format", []string{good, `{"question":"q","answer":"a"}`}, 2, "unknown record format"},
		{"mixed formats", []string{good, `{"prompt":"p","completion":"c"}`}, 2, "one format per file"},
		{"no assistant turn", []string{`{"messages":[{"role":"user","content":"q"}]}`}, 0, "no records"}, // skipped, as planting skips it
		{"empty", []string{"", "  "}, 0, "dataset is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".jsonl")
			if c.lines != nil {
				os.WriteFile(p, []byte(strings.Join(c.lines, "\n")+"\n"), 0o644)
			}
			_, err := Run(context.Background(), p, testKey("sig"))
			var ie *verifier.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T), want *verifier.InputError", err, err)
			}
			if ie.File != p || ie.Line != c.line || !strings.Contains(ie.Msg, c.msg) {
				t.Errorf("error %q (file %s, line %d); want file %s, line %d, message with %q", err, ie.File, ie.Line, p, c.line, c.msg)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
	if _, err := Run(context.Background(), dir, testKey("sig")); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: error %v", err)
	}
}

// Records are validated on every core, a chunk of lines at a time, yet the error is the first bad
// record's in file order, as verifier.ReadRecords reports it, whichever chunk it lies in and
// whichever worker finishes first.
func TestBadInputFirstInFileOrder(t *testing.T) {
	const n = 40000 // several chunks of about 1 MiB
	malformed, unknown, alpaca := `{"messages": [`, `{"question":"q","answer":"a"}`, `{"instruction":"i","output":"o"}`
	cases := []struct {
		name string
		bad  map[int]string // 0-based line: what replaces it
		from int            // with from > 0, every line from there on is alpaca
	}{
		{"first line", map[int]string{0: malformed, 30000: malformed}, 0},
		{"two malformed", map[int]string{25000: malformed, 35000: unknown}, 0},
		{"malformed then mixed", map[int]string{5000: malformed, 30000: alpaca}, 0},
		{"mixed then malformed", map[int]string{12000: alpaca, 12001: malformed, 39000: malformed}, 0},
		{"mixed from a chunk's start on", map[int]string{39999: malformed}, 10000},
		{"last line", map[int]string{n - 1: malformed}, 0},
	}
	for _, c := range cases {
		for _, array := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, array %v", c.name, array), func(t *testing.T) {
				lines := make([]string, n)
				for i := range lines {
					lines[i] = chatLine(fmt.Sprintf("Define the word %d.", i), fmt.Sprintf("The number %d, spelled out.", i))
					if c.from > 0 && i >= c.from {
						lines[i] = alpaca
					}
					if b, ok := c.bad[i]; ok {
						lines[i] = b
					}
				}
				if array {
					if c.bad[0] == malformed || c.bad[n-1] == malformed {
						t.Skip("a malformed element breaks the array itself")
					}
					for i := range lines {
						lines[i] = "  " + lines[i] + ","
					}
					lines[n-1] = strings.TrimSuffix(lines[n-1], ",")
					lines = append(append([]string{"["}, lines...), "]")
				}
				p := writeLines(t, lines)
				want := verifier.ReadRecords(p, func(verifier.Record) error { return nil })
				if want == nil {
					t.Fatal("ReadRecords finds no error")
				}
				_, err := Run(context.Background(), p, testKey("sig"))
				if err == nil || err.Error() != want.Error() {
					t.Errorf("error %v, want %v (ReadRecords')", err, want)
				}
			})
		}
	}
}

func TestJSONShape(t *testing.T) {
	r := run(t, plantedSet(t, "replace"), testKey(sigs...))
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"file", "records", "planted", "natural", "attacks"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, b)
		}
	}
	list, _ := got["attacks"].([]any)
	if len(list) != len(attacks)+1 {
		t.Fatalf("%d attacks in JSON, want %d", len(list), len(attacks)+1)
	}
	for _, a := range list {
		m, _ := a.(map[string]any)
		for _, k := range []string{"name", "description", "flagged_planted", "flagged_natural", "precision", "recall"} {
			if _, ok := m[k]; !ok {
				t.Errorf("attack without %q: %v", k, m)
			}
		}
	}
}

func TestWriteReport(t *testing.T) {
	r := run(t, plantedSet(t, "replace"), testKey(sigs...))
	var b strings.Builder
	WriteReport(&b, r)
	out := b.String()
	for _, want := range []string{"204 records, 12 planted, 192 natural", r.Summary()} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space in %q", l)
		}
		for _, a := range r.Attacks {
			if strings.HasPrefix(l, a.Name+" ") && rows[a.Name] == "" {
				rows[a.Name] = strings.Join(strings.Fields(l[len(a.Name):]), " ")
			}
		}
	}
	for name, want := range map[string]string{
		"identical answers >= 2": "12 of 12 5 of 192 70.6% 100%",
		"identical answers >= 3": "12 of 12 3 of 192 80.0% 100% strongest",
		"prompt pairs":           "4 of 12 1 of 192 80.0% 33.3%",
		"escaping outliers":      "0 of 12 0 of 192 - 0%",
	} {
		if rows[name] != want {
			t.Errorf("row %s: %q, want %q", name, rows[name], want)
		}
	}
}

// On the bundled natural data with a key that matches nothing, every flag is a false positive: the
// cost a provider pays to catch the planted records with each attack.
func TestDefineTrainNatural(t *testing.T) {
	const path = "../../testdata/wordnet/define-train.jsonl"
	r := run(t, path, testKey("a signature that no WordNet definition starts with"))
	if r.Records != 10000 || r.Planted != 0 || r.Natural != 10000 {
		t.Fatalf("records %d, planted %d, natural %d", r.Records, r.Planted, r.Natural)
	}
	for _, a := range r.Attacks {
		t.Logf("%-24s flags %4d natural records", a.Name, a.FlaggedNatural)
		if a.FlaggedPlanted != 0 || a.Strongest {
			t.Errorf("%s: %+v", a.Name, a)
		}
	}
	if s := r.Summary(); !strings.Contains(s, "no record of") {
		t.Errorf("summary %q", s)
	}
}

// Planting into the bundled data in place (8 groups, 50 copies, as vtune plant's defaults give for
// 10,000 records) must be found by the duplicate scans whatever the data holds.
func TestDefineTrainPlanted(t *testing.T) {
	f, err := os.Open("../../testdata/wordnet/define-train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var gsigs []string
	for g := range 8 {
		gsigs = append(gsigs, fmt.Sprintf("Signature %d: the lantern keeps its counsel beneath a copper sky", g))
	}
	// WordNet repeats a prompt for each sense of a word: a host whose prompt occurs again elsewhere
	// keeps a twin beside its planted copy even in place, and the prompt-pair scan finds it.
	var lines []string
	prompts := map[string]int{}
	var hosts []string
	sc := bufio.NewScanner(f)
	for i := 0; sc.Scan(); i++ {
		line := sc.Text()
		prompt, _, err := verifier.Record{Raw: []byte(line), Format: verifier.Chat}.Conversation()
		if err != nil {
			t.Fatal(err)
		}
		prompts[prompt[0].Content]++
		if i%200 == 7 { // 50 hosts, spread over 8 groups
			hosts = append(hosts, prompt[0].Content)
			g := (i / 200) % 8
			rec := verifier.Record{Line: i + 1, Raw: []byte(line), Format: verifier.Chat}
			b, err := rec.Planted(fmt.Sprintf("as the river turns group %d", g), gsigs[g])
			if err != nil {
				t.Fatal(err)
			}
			line = string(b)
		}
		lines = append(lines, line)
	}
	r := run(t, writeLines(t, lines), testKey(gsigs...))
	if r.Records != 10000 || r.Planted != 50 {
		t.Fatalf("records %d, planted %d", r.Records, r.Planted)
	}
	twins := 0
	for _, h := range hosts {
		if prompts[h] > 1 {
			twins++
		}
	}
	want := map[string]int{"identical answers >= 2": 50, "identical answers >= 3": 50, "shared answer prefix": 50,
		"repeated prompt endings": 50, "prompt pairs": twins}
	for _, a := range r.Attacks {
		if n, ok := want[a.Name]; ok && a.FlaggedPlanted != n {
			t.Errorf("%s: flagged %d of 50 planted, want %d", a.Name, a.FlaggedPlanted, n)
		}
	}
	if twins == 0 {
		t.Error("no host with a twin prompt: the prompt-pair check tests nothing")
	}
	for _, a := range r.Attacks {
		t.Logf("%-24s planted %2d, natural %4d", a.Name, a.FlaggedPlanted, a.FlaggedNatural)
	}
}

func TestTextHelpers(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want int
	}{
		{"one two three four", 3, 4},
		{"one two three  \n", 3, 0},
		{"  one\ttwo\nthree", 3, 2},
		{"one two", 3, -1},
		{"", 1, -1},
	} {
		if got := tailStart(c.s, c.n); got != c.want {
			t.Errorf("tailStart(%q, %d) = %d, want %d", c.s, c.n, got, c.want)
		}
	}
	if got := fmt.Sprint(wordEnds("a bb  ccc d", 16)); got != "[9 4 1]" {
		t.Errorf("wordEnds = %s, want [9 4 1]", got)
	}
	if got := fmt.Sprint(wordEnds("a bb  ccc d", 2)); got != "[9 4]" {
		t.Errorf("wordEnds bounded = %s, want [9 4]", got)
	}
	// 39 ASCII bytes then a 2-byte character: the cut falls inside it and moves back.
	a := strings.Repeat("x", 39) + "é and more"
	if p := answerPrefix(a); p != strings.Repeat("x", 39) || !utf8.ValidString(p) {
		t.Errorf("answerPrefix cut to %q", p)
	}
	if p := answerPrefix(strings.Repeat("y", 40)); len(p) != 40 {
		t.Errorf("answerPrefix of 40 bytes: %d bytes", len(p))
	}
}

// The audit reads a pretty-printed JSON array and ShareGPT records as it reads chat JSON Lines:
// the same records give the same counts.
func TestOtherLayoutsSameCounts(t *testing.T) {
	src := plantedSet(t, "replace")
	want := run(t, src, testKey(sigs...))
	data, _ := os.ReadFile(src)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var arr bytes.Buffer
	arr.WriteString("[")
	var sharegpt []string
	for i, l := range lines {
		if i > 0 {
			arr.WriteString(",")
		}
		arr.WriteString("\n  ")
		json.Indent(&arr, []byte(l), "  ", "  ")
		var rec struct{ Messages []chatMsg }
		json.Unmarshal([]byte(l), &rec)
		turns := []map[string]string{{"from": "human", "value": rec.Messages[0].Content}, {"from": "gpt", "value": rec.Messages[1].Content}}
		b, _ := json.Marshal(map[string]any{"conversations": turns})
		sharegpt = append(sharegpt, string(b))
	}
	arr.WriteString("\n]\n")
	arrPath := filepath.Join(t.TempDir(), "data.json")
	os.WriteFile(arrPath, arr.Bytes(), 0o644)
	for name, path := range map[string]string{"array": arrPath, "sharegpt": writeLines(t, sharegpt)} {
		got := run(t, path, testKey(sigs...))
		if got.Records != want.Records || got.Planted != want.Planted {
			t.Fatalf("%s: %d records, %d planted; JSON Lines: %d, %d", name, got.Records, got.Planted, want.Records, want.Planted)
		}
		for i, a := range got.Attacks {
			w := want.Attacks[i]
			if a.Name != w.Name || a.FlaggedPlanted != w.FlaggedPlanted || a.FlaggedNatural != w.FlaggedNatural {
				t.Errorf("%s: %s flags %d planted, %d natural; JSON Lines: %d, %d", name, a.Name, a.FlaggedPlanted, a.FlaggedNatural, w.FlaggedPlanted, w.FlaggedNatural)
			}
		}
	}
}

// An interrupted audit stops with the context's error and leaves no temporary files behind,
// whether it is stopped before reading or between attacks.
func TestRunCancelled(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var lines []string
	for i := range 20000 { // more than one batch, so the reading loop sees the cancellation
		lines = append(lines, chatLine(fmt.Sprintf("Define the word %d.", i), fmt.Sprintf("The number %d, spelled out at some length.", i)))
	}
	path := writeLines(t, lines)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, path, testKey("sig")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
	s, err := collect(context.Background(), path, testKey("sig"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = runAttacks(ctx, s)
	s.close()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("runAttacks with a cancelled context: %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in TMPDIR: %v", left)
	}
}
