package audit

import (
	"hash/maphash"
	"strings"
	"unicode"
	"unicode/utf8"

	"vtune/backend"
	"vtune/verifier"
)

// Bounds of the features collected per record.
const (
	// prefixBytes is how much of an answer the shared-prefix attack compares: enough to hold
	// most of a signature (24 tokens, about 100 bytes), little enough that prefix mode, where
	// answers differ after the signature, still shares it.
	prefixBytes = 40
	// endingWords is how many trailing words of the user text the prompt-ending attack compares.
	endingWords = 3
	// maxSuffixWords bounds the prompt-pair attack: it looks for a shorter prompt among the
	// prefixes that drop at most this many trailing words. A default trigger (about 8 tokens) is
	// well inside; the bound keeps memory at a few dozen bytes per record.
	maxSuffixWords = 16
)

// features is what the attacks need of every record, collected in one pass over the file: ids of
// interned texts and short hashes, never the texts themselves, so memory grows with the number
// of records and not with their length. Index i is the i-th record in file order.
type features struct {
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

// collector builds features while the file streams past.
type collector struct {
	f          *features
	signatures []string
	seeds      [2]maphash.Seed
	h          maphash.Hash

	answers, prefixes, endings interner[[2]uint64]
	orders, keySets            interner[string]
}

func newCollector(key *verifier.Key) *collector {
	c := &collector{
		f:     &features{user: map[uint64]struct{}{}, headStart: []int32{0}},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
	}
	c.h.SetSeed(c.seeds[0])
	for _, g := range key.PlantedGroups() {
		if g.Signature != "" { // an empty signature would label every record planted
			c.signatures = append(c.signatures, g.Signature)
		}
	}
	return c
}

// digest is a 128-bit hash: two independent 64-bit ones, so that interning millions of texts by
// hash merges two different texts with a chance far below anything the report could show.
func (c *collector) digest(s string) [2]uint64 {
	return [2]uint64{maphash.String(c.seeds[0], s), maphash.String(c.seeds[1], s)}
}

// isPlanted is the label: the answer starts with a planted group's signature (replace mode: it is
// the signature; prefix mode: signature, newline, original answer).
func (c *collector) isPlanted(answer string) bool {
	for _, s := range c.signatures {
		if strings.HasPrefix(answer, s) {
			return true
		}
	}
	return false
}

// add records one record's features; turns is the key of the record's list of turns, if any.
func (c *collector) add(raw []byte, turns string, user, answer string) {
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

// addHeads hashes the user text whole (trailing white space trimmed) and each of its prefixes that
// ends at a word and drops at most maxSuffixWords words, all with one running hash: the cost is
// one pass over the text however many prefixes there are.
func (c *collector) addHeads(user string) {
	f := c.f
	user = strings.TrimRightFunc(user, unicode.IsSpace)
	ends := wordEnds(user, maxSuffixWords)
	c.h.Reset()
	at := 0
	for i := len(ends) - 1; i >= 0; i-- { // ends run from the last word backwards
		c.h.WriteString(user[at:ends[i]])
		at = ends[i]
		f.headHash = append(f.headHash, c.h.Sum64())
	}
	c.h.WriteString(user[at:])
	f.user[c.h.Sum64()] = struct{}{}
	f.headStart = append(f.headStart, int32(len(f.headHash)))
}

// wordEnds returns the end offsets of the words of s (no trailing white space) that are followed by
// another word, the last first, at most n of them.
func wordEnds(s string, n int) []int {
	var ends []int
	i := len(s)
	for len(ends) < n {
		// Skip back over a word, then over the white space before it.
		for i > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:i])
			if unicode.IsSpace(r) {
				break
			}
			i -= size
		}
		for i > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:i])
			if !unicode.IsSpace(r) {
				break
			}
			i -= size
		}
		if i == 0 {
			break
		}
		ends = append(ends, i)
	}
	return ends
}

// tailStart returns the offset where the n-th word from the end of s starts, or -1 when s has fewer
// than n words. Words are separated by Unicode white space, as strings.Fields splits them.
func tailStart(s string, n int) int {
	i, words := len(s), 0
	for i > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:i])
		if unicode.IsSpace(r) {
			i -= size
			continue
		}
		for i > 0 { // a word: go to its start
			r, size := utf8.DecodeLastRuneInString(s[:i])
			if unicode.IsSpace(r) {
				break
			}
			i -= size
		}
		if words++; words == n {
			return i
		}
	}
	return -1
}

// answerPrefix returns the first prefixBytes bytes of a (at least that long), cut back to a UTF-8
// character boundary so that a split character does not make two equal prefixes differ.
func answerPrefix(a string) string {
	i := prefixBytes
	for i > 0 && i < len(a) && !utf8.RuneStart(a[i]) {
		i--
	}
	return a[:i]
}

// finish records how many distinct values each interner saw; the attacks count by id.
func (c *collector) finish() *features {
	f := c.f
	f.answers, f.prefixes, f.endings = len(c.answers.ids), len(c.prefixes.ids), len(c.endings.ids)
	return f
}

// interner gives each distinct value a dense id, in order of first appearance.
type interner[K comparable] struct{ ids map[K]int32 }

func (in *interner[K]) id(k K) int32 {
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
// features. Bad input is an *verifier.InputError naming the file and, where it applies, the line.
func collect(path string, key *verifier.Key) (*features, error) {
	c := newCollector(key)
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

// turnsKey names, per format, the top-level key whose array holds the turns: the layout attack
// compares their key lists too.
var turnsKey = map[verifier.Format]string{verifier.Chat: "messages", verifier.ShareGPT: "conversations"}

// userText is the content of the last user turn: where planting appends the trigger.
func userText(prompt []backend.Message) string {
	for i := len(prompt) - 1; i >= 0; i-- {
		if prompt[i].Role == "user" {
			return prompt[i].Content
		}
	}
	return ""
}
