package audit

import (
	"fmt"
	"slices"
)

// Thresholds of the attacks.
const (
	prefixShared  = 3 // records sharing an answer prefix
	endingShared  = 3 // differing user texts sharing an ending
	lengthPermill = 5 // answer-length outliers: below the 0.5% or above the 99.5% quantile
)

// attack is one scan a provider can run on the records it received, without the key: flag returns
// for every record whether the scan singles it out. No attack reads features.planted.
type attack struct {
	name, description string
	flag              func(f *features) []bool
}

// attacks lists the scans in the order the report shows them, cheapest first.
var attacks = []attack{
	{"identical answers >= 2", "the exact answer text occurs in 2 or more records",
		func(f *features) []bool { return byCount(f.answer, f.answers, 2) }},
	{"identical answers >= 3", "the exact answer text occurs in 3 or more records",
		func(f *features) []bool { return byCount(f.answer, f.answers, 3) }},
	{"shared answer prefix", fmt.Sprintf("the answer's first %d bytes (answers that long or longer) start %d or more answers", prefixBytes, prefixShared),
		func(f *features) []bool { return byCount(f.prefix, f.prefixes, prefixShared) }},
	{"repeated prompt endings", fmt.Sprintf("the user text's last %d words end %d or more user texts that differ before them", endingWords, endingShared),
		repeatedEndings},
	{"prompt pairs", fmt.Sprintf("the user text is another record's user text plus up to %d more words", maxSuffixWords),
		promptPairs},
	{"escaping outliers", "the line escapes strings (non-ASCII, '/', HTML characters, control characters, hex case) or spaces separators unlike most lines",
		escapingOutliers},
	{"field-order outliers", "the keys (top-level, and each message's for chat) are in another order than most records with the same keys",
		fieldOrderOutliers},
	{"answer length outliers", fmt.Sprintf("the answer's length in bytes is below the %.1f%% or above the %.1f%% quantile of the file's", float64(lengthPermill)/10, 100-float64(lengthPermill)/10),
		lengthOutliers},
}

// byCount flags the records whose id (-1: none) is shared by at least atLeast records: "drop every
// answer that occurs N times" is the cheapest scan a provider can run.
func byCount(ids []int32, distinct, atLeast int) []bool {
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

// repeatedEndings flags records whose user text ends with words that end at least endingShared
// user texts differing before them: a trigger appended to several prompts. Exact duplicates of one
// prompt count once, so a prompt repeated in the data is not taken for a trigger.
func repeatedEndings(f *features) []bool {
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
		if p := (pair{e, f.rest[i]}); !has(seen, p) {
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

func has[K comparable](m map[K]struct{}, k K) bool {
	_, ok := m[k]
	return ok
}

// promptPairs flags records whose user text is another record's user text followed by more words:
// a planted copy whose host was left beside it. Only the longer record of a pair is flagged, as a
// provider would: the added words are the suspect. Trailing white space of the shorter text is
// ignored, since planting may join the trigger with a space or a newline.
func promptPairs(f *features) []bool {
	out := make([]bool, f.n)
	for i := range f.n {
		for _, h := range f.headHash[f.headStart[i]:f.headStart[i+1]] {
			if has(f.user, h) {
				out[i] = true
				break
			}
		}
	}
	return out
}

// escapingOutliers flags records that write strings or separators unlike the file's majority, in
// any dimension: a line re-encoded by another tool (raw UTF-8 among Python's \u00e9 escapes, "\/"
// among plain slashes). Only records that show evidence in a dimension are counted or flagged
// there; a dimension whose most common way is tied has no majority and flags nothing.
func escapingOutliers(f *features) []bool {
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

// fieldOrderOutliers flags records whose keys are written in another order than the most common
// order among the records holding the same keys: a line rebuilt from a decoded object by a tool
// that orders keys its own way. Comparing within one key set keeps records that merely have an
// optional field out; a key set whose most common order is tied flags nothing.
func fieldOrderOutliers(f *features) []bool {
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

// lengthOutliers flags answers whose length in bytes lies strictly outside the file's
// [0.5%, 99.5%] quantiles (nearest rank, in integer arithmetic so that no rounding moves a
// bound): a signature of a fixed token count among much shorter or longer answers.
func lengthOutliers(f *features) []bool {
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
