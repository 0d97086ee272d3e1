package audit

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
)

// Thresholds of the attacks.
const (
	prefixShared  = 3 // records sharing an answer prefix
	endingShared  = 3 // differing user texts sharing an ending
	lengthPermill = 5 // answer-length outliers: below the 0.5% or above the 99.5% quantile
)

// attack is one scan a provider can run on the records it received, without the key: flag returns
// the records the scan singles it out, one bit a record. No attack reads spill.planted.
type attack struct {
	name, description string
	flag              func(s *spill) (bitset, error)
}

// attacks lists the scans in the order the report shows them, cheapest first.
var attacks = []attack{
	{"identical answers >= 2", "the exact answer text occurs in 2 or more records",
		func(s *spill) (bitset, error) { return identicalAnswers(s, 0) }},
	{"identical answers >= 3", "the exact answer text occurs in 3 or more records",
		func(s *spill) (bitset, error) { return identicalAnswers(s, 1) }},
	{"shared answer prefix", fmt.Sprintf("the answer's first %d bytes (answers that long or longer) start %d or more answers", prefixBytes, prefixShared),
		func(s *spill) (bitset, error) {
			f, err := byCount(s, s.prefix, prefixShared, 0)
			return f[0], err
		}},
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

// Every attack below flags exactly the records that comparing the texts themselves would flag,
// but for two texts with the same 64-bit hash (hasher.hash: a chance of about 1e-6 for 6
// million records): the counts come from sorting all of a column's hashes, never from a sample
// or a sketch.

// identicalAnswers returns the records whose answer occurs at least 2 (which 0) or 3 (which 1)
// times: one sort of the answers serves both attacks.
func identicalAnswers(s *spill, which int) (bitset, error) {
	if s.identical[which] == nil {
		f, err := byCount(s, s.answer, 2, 3)
		if err != nil {
			return nil, err
		}
		s.identical = f
	}
	f := s.identical[which]
	s.identical[which] = nil
	return f, nil
}

// byCount flags the records whose hash (0: none) is shared by at least atLeast records, and, in a
// second set when also is not 0, those shared by at least also records: "drop every answer that occurs N times" is the cheapest scan
// a provider can run. The column is sorted once to count each value; only the values that occur
// often enough are kept to look records up in.
func byCount(s *spill, c *column, atLeast, also int) ([2]bitset, error) {
	var out [2]bitset
	v, err := c.load(s.buffer())
	if err != nil {
		return out, err
	}
	vals, count := groups(v, atLeast)
	set := newHashSet(vals)
	out[0], out[1] = newBitset(s.n), newBitset(s.n)
	err = c.each(s.n, func(i int, h uint64) {
		if j, ok := set.find(h); ok {
			out[0].set(i)
			if also > 0 && int(count[j]) >= also {
				out[1].set(i)
			}
		}
	})
	return out, err
}

// repeatedEndings flags records whose user text ends with words that end at least endingShared
// user texts differing before them: a trigger appended to several prompts. Exact duplicates of one
// prompt count once, so a prompt repeated in the data is not taken for a trigger.
//
// An ending that ends fewer than endingShared records cannot end that many different texts, so
// the endings column is sorted first and only the endings of at least endingShared records are
// kept (candidates). Then each record with a candidate ending gives one value, the candidate's
// index in the high bits and the hash of the text before the ending in the low ones; sorted,
// equal values are the same prompt, and each candidate's run counts its different prompts. The
// low bits are the top 64-b bits of that hash, b the bits of an index (at most 32 for 2^32
// records): two different prompts with the same ending merge with a chance below 2^-32 for each
// pair, and a merge can only matter for an ending with a few different prompts.
func repeatedEndings(s *spill) (bitset, error) {
	v, err := s.ending.load(s.buffer())
	if err != nil {
		return nil, err
	}
	vals, _ := groups(v, endingShared)
	out := newBitset(s.n)
	if len(vals) == 0 {
		return out, nil
	}
	cand := newHashSet(slices.Clone(vals)) // the buffer is needed for the pairs
	shift := 64 - bits.Len(uint(len(vals)))
	pairs := s.buffer()[:0]
	restR, err := s.rest.reader()
	if err != nil {
		return nil, err
	}
	err = s.ending.each(s.n, func(i int, e uint64) {
		rest := restR.next()
		if j, ok := cand.find(e); ok {
			pairs = append(pairs, uint64(j)<<shift|rest>>(64-shift))
		}
	})
	if err = cmp.Or(err, restR.err); err != nil {
		return nil, err
	}
	sortHashes(pairs)
	distinct := make([]uint8, len(vals))
	for i, p := range pairs {
		if i == 0 || p != pairs[i-1] {
			j := p >> shift
			distinct[j] = min(distinct[j]+1, endingShared)
		}
	}
	err = s.ending.each(s.n, func(i int, e uint64) {
		if j, ok := cand.find(e); ok && distinct[j] >= endingShared {
			out.set(i)
		}
	})
	return out, err
}

// promptPairs flags records whose user text is another record's user text followed by more words:
// a planted copy whose host was left beside it. Only the longer record of a pair is flagged, as a
// provider would: the added words are the suspect. Trailing white space of the shorter text is
// ignored, since planting may join the trigger with a space or a newline. Every user text's hash
// is sorted into a set; then each record's prefix hashes are looked up in it.
func promptPairs(s *spill) (bitset, error) {
	v, err := s.user.load(s.buffer())
	if err != nil {
		return nil, err
	}
	sortHashes(v)
	users := newHashSet(slices.Compact(v))
	out := newBitset(s.n)
	heads, err := s.heads.reader()
	if err != nil {
		return nil, err
	}
	err = s.headCount.each(s.n, func(i int, k uint64) {
		for range k {
			if _, ok := users.find(heads.next()); ok {
				out.set(i)
			}
		}
	})
	return out, cmp.Or(err, heads.err)
}

// escapingOutliers flags records that write strings or separators unlike the file's majority, in
// any dimension: a line re-encoded by another tool (raw UTF-8 among Python's \u00e9 escapes, "\/"
// among plain slashes). Only records that show evidence in a dimension are counted or flagged
// there; a dimension whose most common way is tied has no majority and flags nothing.
func escapingOutliers(s *spill) (bitset, error) {
	var major [numDims]uint8
	for d := range numDims {
		best, tied := 0, false
		for way := uint8(1); way <= 3; way++ {
			switch c := s.styleCount[d][way]; {
			case c > best:
				major[d], best, tied = way, c, false
			case c == best && c > 0:
				tied = true
			}
		}
		if tied {
			major[d] = 0
		}
	}
	out := newBitset(s.n)
	err := s.style.each(s.n, func(i int, v uint64) {
		st := style(v)
		for d := range numDims {
			if w := st.get(d); major[d] != 0 && w != 0 && w != major[d] {
				out.set(i)
			}
		}
	})
	return out, err
}

// fieldOrderOutliers flags records whose keys are written in another order than the most common
// order among the records holding the same keys: a line rebuilt from a decoded object by a tool
// that orders keys its own way. Comparing within one key set keeps records that merely have an
// optional field out; a key set whose most common order is tied flags nothing. The layouts, pairs
// of key set and key order, were counted while the dataset was read.
func fieldOrderOutliers(s *spill) (bitset, error) {
	type best struct {
		id     uint32
		n      int
		unique bool
	}
	major := map[uint64]best{}
	for id, n := range s.layoutN {
		switch b, ok := major[s.layoutKeys[id]]; {
		case !ok || n > b.n:
			major[s.layoutKeys[id]] = best{uint32(id), n, true}
		case n == b.n:
			b.unique = false
			major[s.layoutKeys[id]] = b
		}
	}
	odd := make([]bool, len(s.layoutN))
	for id := range odd {
		b := major[s.layoutKeys[id]]
		odd[id] = b.unique && b.id != uint32(id)
	}
	out := newBitset(s.n)
	err := s.layout.each(s.n, func(i int, id uint64) {
		if odd[id] {
			out.set(i)
		}
	})
	return out, err
}

// lengthOutliers flags answers whose length in bytes lies strictly outside the file's
// [0.5%, 99.5%] quantiles (nearest rank, in integer arithmetic so that no rounding moves a
// bound): a signature of a fixed token count among much shorter or longer answers. The lengths
// below 64 KiB are counted in a table, the longer (rare) ones sorted.
func lengthOutliers(s *spill) (bitset, error) {
	var short [1 << 16]int
	long := s.buffer()[:0]
	err := s.answerLen.each(s.n, func(_ int, l uint64) {
		if l < uint64(len(short)) {
			short[l]++
		} else {
			long = append(long, l)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(long)
	// rank returns the r-th smallest length, from 0.
	rank := func(r int) uint64 {
		for l, c := range short {
			if r < c {
				return uint64(l)
			}
			r -= c
		}
		return long[r]
	}
	last := s.n - 1
	lo, hi := rank(last*lengthPermill/1000), rank((last*(1000-lengthPermill)+999)/1000)
	out := newBitset(s.n)
	err = s.answerLen.each(s.n, func(i int, l uint64) {
		if l < lo || l > hi {
			out.set(i)
		}
	})
	return out, err
}
