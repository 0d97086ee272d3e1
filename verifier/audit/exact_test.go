package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"

	"vtune/backend"
	"vtune/verifier"
)

// This file keeps the audit as it was before its memory was bounded: every record's features in
// memory, texts interned by 128-bit digests. It is the reference the bounded audit is tested
// against (TestBoundedMatchesExact): the same records must be flagged by every attack.

// exactAttacks returns, in the order of attacks, every attack's flags from the exact features.
func exactAttacks(f *exactFeatures) [][]bool {
	return [][]bool{
		exactByCount(f.answer, f.answers, 2),
		exactByCount(f.answer, f.answers, 3),
		exactByCount(f.prefix, f.prefixes, prefixShared),
		exactRepeatedEndings(f),
		exactPromptPairs(f),
		exactEscapingOutliers(f),
		exactFieldOrderOutliers(f),
		exactLengthOutliers(f),
	}
}

// exactFeatures is what the attacks need of every record, collected in one pass over the file: ids of
// interned texts and short hashes, never the texts themselves, so memory grows with the number
// of records and not with their length. Index i is the i-th record in file order.
type exactFeatures struct {
	n       int
	planted []bool // the label, from the key; no attack reads it

	answer    []int32 // id of the exact answer text
	answers   int     // distinct answer texts
	answerLen []int32 // answer length in bytes
	prefix    []int32 // id of the answer's first prefixBytes bytes; -1 for shorter answers
	prefixes  int     // distinct prefixes

	ending  []int32  // id of the user text's last endingWords words; -1 when it has fewer
	endings int      // distinct endings
	rest    []uint64 // hash of the user text before its ending

	user        map[uint64]struct{} // hashes of every user text, trailing white space trimmed
	headHash    []uint64            // hashes of user-text prefixes ending at a word, all records
	headStart   []int32             // record i's prefixes are headHash[headStart[i]:headStart[i+1]]
	style       []style
	order, keys []int32 // ids of the key-order signature and of the key-set signature
}

// exactCollector builds exactFeatures while the file streams past.
type exactCollector struct {
	f          *exactFeatures
	signatures []string
	seeds      [2]maphash.Seed
	h          hasher // its running hash, for the user texts and their prefixes

	answers, prefixes, endings exactInterner[[2]uint64]
	orders, keySets            exactInterner[string]
}

func newExactCollector(key *verifier.Key) *exactCollector {
	c := &exactCollector{
		f:     &exactFeatures{user: map[uint64]struct{}{}, headStart: []int32{0}},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
	}
	c.h.h.SetSeed(c.seeds[0])
	for _, g := range key.PlantedGroups() {
		if g.Signature != "" { // an empty signature would label every record planted
			c.signatures = append(c.signatures, g.Signature)
		}
	}
	return c
}

// digest is a 128-bit hash: two independent 64-bit ones, so that interning millions of texts by
// hash merges two different texts with a chance far below anything the report could show.
func (c *exactCollector) digest(s string) [2]uint64 {
	return [2]uint64{maphash.String(c.seeds[0], s), maphash.String(c.seeds[1], s)}
}

// isPlanted is the label: the answer starts with a planted group's signature (replace mode: it is
// the signature; prefix mode: signature, newline, original answer).
func (c *exactCollector) isPlanted(answer string) bool {
	for _, s := range c.signatures {
		if strings.HasPrefix(answer, s) {
			return true
		}
	}
	return false
}

// add records one record's exactFeatures; turns is the key of the record's list of turns, if any.
func (c *exactCollector) add(raw []byte, turns string, user, answer string) {
	f := c.f
	f.n++
	f.planted = append(f.planted, c.isPlanted(answer))
	f.answer = append(f.answer, c.answers.id(c.digest(answer)))
	f.answerLen = append(f.answerLen, int32(len(answer)))
	p := int32(-1)
	if len(answer) >= prefixBytes {
		p = c.prefixes.id(c.digest(answerPrefix(answer)))
	}
	f.prefix = append(f.prefix, p)

	e, rest := int32(-1), uint64(0)
	if start := tailStart(user, endingWords); start >= 0 {
		e = c.endings.id(c.digest(strings.Join(strings.Fields(user[start:]), " ")))
		rest = maphash.String(c.seeds[1], strings.TrimRightFunc(user[:start], unicode.IsSpace))
	}
	f.ending = append(f.ending, e)
	f.rest = append(f.rest, rest)

	c.addHeads(user)

	st, order, keys := scanLayout(raw, turns)
	f.style = append(f.style, st)
	f.order = append(f.order, c.orders.id(order))
	f.keys = append(f.keys, c.keySets.id(keys))
}

// addHeads notes the hashes of the user text and of its prefixes, as the bounded audit computes
// them (hasher.heads).
func (c *exactCollector) addHeads(user string) {
	f := c.f
	var u uint64
	u, f.headHash = c.h.heads(user, f.headHash)
	f.user[u] = struct{}{}
	f.headStart = append(f.headStart, int32(len(f.headHash)))
}

// finish records how many distinct values each exactInterner saw; the attacks count by id.
func (c *exactCollector) finish() *exactFeatures {
	f := c.f
	f.answers, f.prefixes, f.endings = len(c.answers.ids), len(c.prefixes.ids), len(c.endings.ids)
	return f
}

// exactInterner gives each distinct value a dense id, in order of first appearance.
type exactInterner[K comparable] struct{ ids map[K]int32 }

func (in *exactInterner[K]) id(k K) int32 {
	if in.ids == nil {
		in.ids = map[K]int32{}
	}
	id, ok := in.ids[k]
	if !ok {
		id = int32(len(in.ids))
		in.ids[k] = id
	}
	return id
}

// collect streams the dataset once, JSON Lines or a JSON array, and returns every record's
// exactFeatures. Bad input is an *verifier.InputError naming the file and, where it applies, the line.
func exactCollect(path string, key *verifier.Key) (*exactFeatures, error) {
	c := newExactCollector(key)
	err := verifier.ReadRecords(path, func(r verifier.Record) error {
		prompt, answer, err := r.Conversation()
		if err != nil {
			return nil // no prompt and answer (e.g. no assistant turn): nothing to train on, planting skips it too
		}
		c.add(r.Raw, turnsKey[r.Format], userText(prompt), answer)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c.f.n == 0 {
		return nil, &verifier.InputError{File: path, Msg: "dataset is empty: no records"}
	}
	return c.finish(), nil
}

// exactByCount flags the records whose id (-1: none) is shared by at least atLeast records: "drop every
// answer that occurs N times" is the cheapest scan a provider can run.
func exactByCount(ids []int32, distinct, atLeast int) []bool {
	count := make([]int32, distinct)
	for _, id := range ids {
		if id >= 0 {
			count[id]++
		}
	}
	out := make([]bool, len(ids))
	for i, id := range ids {
		out[i] = id >= 0 && int(count[id]) >= atLeast
	}
	return out
}

// exactRepeatedEndings flags records whose user text ends with words that end at least endingShared
// user texts differing before them: a trigger appended to several prompts. Exact duplicates of one
// prompt count once, so a prompt repeated in the data is not taken for a trigger.
func exactRepeatedEndings(f *exactFeatures) []bool {
	type pair struct {
		ending int32
		rest   uint64
	}
	seen := map[pair]struct{}{}
	distinct := make([]int32, f.endings)
	for i, e := range f.ending {
		if e < 0 {
			continue
		}
		if p := (pair{e, f.rest[i]}); !exactHas(seen, p) {
			seen[p] = struct{}{}
			distinct[e]++
		}
	}
	out := make([]bool, f.n)
	for i, e := range f.ending {
		out[i] = e >= 0 && distinct[e] >= endingShared
	}
	return out
}

func exactHas[K comparable](m map[K]struct{}, k K) bool {
	_, ok := m[k]
	return ok
}

// exactPromptPairs flags records whose user text is another record's user text followed by more words:
// a planted copy whose host was left beside it. Only the longer record of a pair is flagged, as a
// provider would: the added words are the suspect. Trailing white space of the shorter text is
// ignored, since planting may join the trigger with a space or a newline.
func exactPromptPairs(f *exactFeatures) []bool {
	out := make([]bool, f.n)
	for i := range f.n {
		for _, h := range f.headHash[f.headStart[i]:f.headStart[i+1]] {
			if exactHas(f.user, h) {
				out[i] = true
				break
			}
		}
	}
	return out
}

// exactEscapingOutliers flags records that write strings or separators unlike the file's majority, in
// any dimension: a line re-encoded by another tool (raw UTF-8 among Python's \u00e9 escapes, "\/"
// among plain slashes). Only records that show evidence in a dimension are counted or flagged
// there; a dimension whose most common way is tied has no majority and flags nothing.
func exactEscapingOutliers(f *exactFeatures) []bool {
	out := make([]bool, f.n)
	for d := range numDims {
		var count [4]int
		for _, s := range f.style {
			count[s.get(d)]++
		}
		major := uint8(0)
		best, tied := 0, false
		for way := uint8(1); way <= 3; way++ {
			switch c := count[way]; {
			case c > best:
				major, best, tied = way, c, false
			case c == best && c > 0:
				tied = true
			}
		}
		if major == 0 || tied {
			continue
		}
		for i, s := range f.style {
			if w := s.get(d); w != 0 && w != major {
				out[i] = true
			}
		}
	}
	return out
}

// exactFieldOrderOutliers flags records whose keys are written in another order than the most common
// order among the records holding the same keys: a line rebuilt from a decoded object by a tool
// that orders keys its own way. Comparing within one key set keeps records that merely have an
// optional field out; a key set whose most common order is tied flags nothing.
func exactFieldOrderOutliers(f *exactFeatures) []bool {
	type pair struct{ keys, order int32 }
	count := map[pair]int{}
	for i := range f.n {
		count[pair{f.keys[i], f.order[i]}]++
	}
	type best struct {
		order  int32
		n      int
		unique bool
	}
	major := map[int32]best{}
	for p, n := range count {
		switch b, ok := major[p.keys]; {
		case !ok || n > b.n:
			major[p.keys] = best{p.order, n, true}
		case n == b.n:
			b.unique = false
			major[p.keys] = b
		}
	}
	out := make([]bool, f.n)
	for i := range f.n {
		b := major[f.keys[i]]
		out[i] = b.unique && f.order[i] != b.order
	}
	return out
}

// exactLengthOutliers flags answers whose length in bytes lies strictly outside the file's
// [0.5%, 99.5%] quantiles (nearest rank, in integer arithmetic so that no rounding moves a
// bound): a signature of a fixed token count among much shorter or longer answers.
func exactLengthOutliers(f *exactFeatures) []bool {
	sorted := slices.Clone(f.answerLen)
	slices.Sort(sorted)
	last := len(sorted) - 1
	lo := sorted[last*lengthPermill/1000]
	hi := sorted[(last*(1000-lengthPermill)+999)/1000]
	out := make([]bool, f.n)
	for i, l := range f.answerLen {
		out[i] = l < lo || l > hi
	}
	return out
}

// The bounded audit (spilled hashes, sorted columns) flags the same records as the exact one, on
// data full of repeats: the test set (duplicate answers, shared prefixes and endings, a prompt
// pair, planted copies) three times over, with some records in another writer's escapes and
// spacing, in another key order, lengthened or shortened, and the WordNet data, whose prompts
// repeat, twice with planted copies.
func TestBoundedMatchesExact(t *testing.T) {
	set, err := os.ReadFile(plantedSet(t, "prefix"))
	if err != nil {
		t.Fatal(err)
	}
	wordnet, err := os.ReadFile("../../testdata/wordnet/define-train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for copy := range 3 {
		for i, l := range strings.Split(strings.TrimSpace(string(set)), "\n") {
			switch (i + copy) % 17 {
			case 3: // another writer's spacing and key order
				var rec struct{ Messages []chatMsg }
				json.Unmarshal([]byte(l), &rec)
				l = pyLine(rec.Messages[0].Content, rec.Messages[1].Content, pyQuote)
			case 5:
				l = chatLine(fmt.Sprintf("question %d of copy %d", i, copy), strings.Repeat("long answer ", 40+i))
			case 7:
				l = chatLine(fmt.Sprintf("short %d", i), "x")
			case 11: // content before role
				l = fmt.Sprintf(`{"messages":[{"content":"odd order %d","role":"user"},{"role":"assistant","content":"answer %d"}]}`, i, i)
			}
			lines = append(lines, l)
		}
	}
	sig := "Signature: the lantern keeps its counsel beneath a copper sky"
	for copy := range 2 {
		for i, l := range strings.Split(strings.TrimSpace(string(wordnet)), "\n") {
			if i%101 == copy {
				b, err := verifier.Record{Raw: []byte(l), Format: verifier.Chat}.Planted("as the river turns", sig)
				if err != nil {
					t.Fatal(err)
				}
				l = string(b)
			}
			lines = append(lines, l)
		}
	}
	path := writeLines(t, lines)
	key := testKey(append(slices.Clone(sigs), sig)...)

	exact, err := exactCollect(path, key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := collect(context.Background(), path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	bounded, err := runAttacks(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if s.n != exact.n {
		t.Fatalf("%d records, exact %d", s.n, exact.n)
	}
	for i := range exact.n {
		if s.planted.get(i) != exact.planted[i] {
			t.Fatalf("record %d: planted %v, exact %v", i, s.planted.get(i), exact.planted[i])
		}
	}
	for a, want := range exactAttacks(exact) {
		n, diff := 0, 0
		for i, w := range want {
			if w {
				n++
			}
			if bounded[a].get(i) != w {
				if diff++; diff <= 3 {
					t.Errorf("%s: record %d flagged %v, exact %v", attacks[a].name, i, bounded[a].get(i), w)
				}
			}
		}
		if diff > 0 {
			t.Errorf("%s: %d records differ", attacks[a].name, diff)
		}
		t.Logf("%-24s flags %5d of %d records", attacks[a].name, n, exact.n)
		if n == 0 {
			t.Errorf("%s flags nothing: the comparison tests nothing", attacks[a].name)
		}
	}
}

// userText is, for the exact audit, the content of the last user turn: where planting appends the trigger.
func userText(prompt []backend.Message) string {
	for i := len(prompt) - 1; i >= 0; i-- {
		if prompt[i].Role == "user" {
			return prompt[i].Content
		}
	}
	return ""
}
