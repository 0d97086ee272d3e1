package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

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

// spill is every record's features (spill.go): the columns, in files, and what is small enough to
// keep in memory. Record i is the i-th record that has a prompt and an answer, in file order.
type spill struct {
	dir     string
	n       int
	planted bitset // the label, from the key; no attack reads it

	answer    *column // 8 bytes: hash of the exact answer text
	prefix    *column // 8: hash of the answer's first prefixBytes bytes; 0 for shorter answers
	answerLen *column // 4: the answer's length in bytes
	ending    *column // 8: hash of the user text's last endingWords words; 0 when it has fewer
	rest      *column // 8: hash of the user text before its ending
	user      *column // 8: hash of the user text, trailing white space trimmed
	headCount *column // 1: how many prefix hashes of the user text follow in heads
	heads     *column // 8 each: hashes of the user text's prefixes ending at a word
	style     *column // 2: the line's formatting evidence
	layout    *column // 4: id of the record's pair of key-set and key-order signatures

	styleCount [numDims][4]int // records per dimension and way
	layoutKeys []uint64        // per layout id, the hash of its key-set signature
	layoutN    []int           // per layout id, its records
	layoutID   map[[2]uint64]uint32

	buf       []uint64  // n values: the attacks' one large buffer, taken in turn
	identical [2]bitset // identical answers >= 2 and >= 3, found together, until taken
}

// columns lists the spill's columns, for creating, flushing and closing them.
func (s *spill) columns() []**column {
	return []**column{&s.answer, &s.prefix, &s.answerLen, &s.ending, &s.rest, &s.user, &s.headCount, &s.heads, &s.style, &s.layout}
}

func newSpill() (*spill, error) {
	dir, err := os.MkdirTemp("", "vtune-audit-")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &spill{dir: dir, layoutID: map[[2]uint64]uint32{}}
	sizes := []int{8, 8, 4, 8, 8, 8, 1, 8, 2, 4}
	for i, c := range s.columns() {
		if *c, err = newColumn(dir, fmt.Sprint(i), sizes[i]); err != nil {
			s.close()
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	// The columns are used only through their open files, which on Unix outlive their names: with
	// the names gone at once, a process killed mid-audit (SIGKILL, out of memory) leaves nothing
	// behind in $TMPDIR. Where open files cannot be removed, close removes them.
	os.RemoveAll(dir)
	return s, nil
}

// close removes the spill's files.
func (s *spill) close() {
	for _, c := range s.columns() {
		if *c != nil {
			(*c).f.Close()
		}
	}
	os.RemoveAll(s.dir)
}

// buffer returns the buffer of n values that the attacks take in turn.
func (s *spill) buffer() []uint64 {
	if s.buf == nil {
		// Reading the dataset left the heap with pages of freed batches and records that the
		// buffer, one piece, cannot reuse: given back to the system first, they do not add to
		// the peak.
		debug.FreeOSMemory()
		s.buf = make([]uint64, s.n)
	}
	return s.buf
}

// features are one record's features, as the spill keeps them.
type features struct {
	planted                            bool
	answer, prefix, ending, rest, user uint64
	answerLen                          int32
	heads                              []uint64
	style                              style
	keys, order                        uint64 // hashes of the key-set and key-order signatures
}

// hasher computes features; one a goroutine.
type hasher struct {
	seed       maphash.Seed
	signatures []string
	h          maphash.Hash
	layout     layoutScanner
}

// hash is a 64-bit hash of s, never 0, which marks "no value". Two different texts among the
// millions of a dataset get the same hash with a chance of about n*n/2^65 (1e-6 for 6 million
// records), which is the audit's only departure from comparing the texts themselves.
func (h *hasher) hash(s string) uint64 { return max(maphash.String(h.seed, s), 1) }

// isPlanted is the label: the answer starts with a planted group's signature (replace mode: it is
// the signature; prefix mode: signature, newline, original answer).
func (h *hasher) isPlanted(answer string) bool {
	for _, s := range h.signatures {
		if strings.HasPrefix(answer, s) {
			return true
		}
	}
	return false
}

// features computes one record's features; turns is the key of the record's list of turns, if
// any. heads is appended to buf, which is returned.
func (h *hasher) features(raw []byte, turns string, user, answer string, buf []uint64) (features, []uint64) {
	f := features{planted: h.isPlanted(answer), answer: h.hash(answer), answerLen: int32(len(answer))}
	if len(answer) >= prefixBytes {
		f.prefix = h.hash(answerPrefix(answer))
	}
	if start := tailStart(user, endingWords); start >= 0 {
		f.ending = h.hash(strings.Join(strings.Fields(user[start:]), " "))
		f.rest = h.hash(strings.TrimRightFunc(user[:start], unicode.IsSpace))
	}
	at := len(buf)
	f.user, buf = h.heads(user, buf)
	f.heads = buf[at:]
	st, order, keys := h.layout.scan(raw, turns)
	f.style = st
	f.order, f.keys = max(maphash.Bytes(h.seed, order), 1), max(maphash.Bytes(h.seed, keys), 1)
	return f, buf
}

// heads hashes the user text whole (trailing white space trimmed) and appends the hashes of each
// of its prefixes that ends at a word and drops at most maxSuffixWords words, all with one
// running hash: the cost is one pass over the text however many prefixes there are.
func (h *hasher) heads(user string, buf []uint64) (uint64, []uint64) {
	user = strings.TrimRightFunc(user, unicode.IsSpace)
	ends := wordEnds(user, maxSuffixWords)
	h.h.Reset()
	at := 0
	for i := len(ends) - 1; i >= 0; i-- { // ends run from the last word backwards
		h.h.WriteString(user[at:ends[i]])
		at = ends[i]
		buf = append(buf, max(h.h.Sum64(), 1))
	}
	h.h.WriteString(user[at:])
	return max(h.h.Sum64(), 1), buf
}

// add appends one record's features to the spill.
func (s *spill) add(f *features) {
	if s.n%64 == 0 {
		s.planted = append(s.planted, 0)
	}
	if f.planted {
		s.planted.set(s.n)
	}
	s.n++
	s.answer.put(f.answer)
	s.prefix.put(f.prefix)
	s.answerLen.put(uint64(f.answerLen))
	s.ending.put(f.ending)
	s.rest.put(f.rest)
	s.user.put(f.user)
	s.headCount.put(uint64(len(f.heads)))
	for _, h := range f.heads {
		s.heads.put(h)
	}
	s.style.put(uint64(f.style))
	for d := range numDims {
		s.styleCount[d][f.style.get(d)]++
	}
	id, ok := s.layoutID[[2]uint64{f.keys, f.order}]
	if !ok {
		id = uint32(len(s.layoutKeys))
		s.layoutID[[2]uint64{f.keys, f.order}] = id
		s.layoutKeys = append(s.layoutKeys, f.keys)
		s.layoutN = append(s.layoutN, 0)
	}
	s.layoutN[id]++
	s.layout.put(uint64(id))
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

// batch is a chunk of records on their way through collect: read, then validated and given
// features by a worker, then added to the spill in order.
type batch struct {
	raw   []byte // the chunk's buffer, kept for the next chunk
	chunk *verifier.Chunk
	err   error // the chunk's first bad record
	feats []features
	ok    []bool // the record has a prompt and an answer
	heads []uint64
	done  chan struct{}
}

// collect streams the dataset once, JSON Lines or a JSON array, and spills every record's
// features. The calling goroutine only splits the file into chunks of whole records; the records
// are validated and their features computed on every core, and the spill is written in record
// order. Bad input is an *verifier.InputError naming the file and, where it applies, the line: the
// first bad record in file order, as verifier.ReadRecords reports it. A cancelled ctx stops the
// reading at the next chunk.
func collect(ctx context.Context, path string, key *verifier.Key) (*spill, error) {
	s, err := newSpill()
	if err != nil {
		return nil, err
	}
	var signatures []string
	for _, g := range key.PlantedGroups() {
		if g.Signature != "" { // an empty signature would label every record planted
			signatures = append(signatures, g.Signature)
		}
	}
	seed := maphash.MakeSeed()
	workers := max(runtime.GOMAXPROCS(0), 1)
	// free holds the batches not in use: their number bounds the memory of records in flight.
	free := make(chan *batch, 2*workers+2)
	for range cap(free) {
		free <- &batch{}
	}
	jobs := make(chan *batch, workers)
	queue := make(chan *batch, cap(free))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := &hasher{seed: seed, signatures: signatures}
			h.h.SetSeed(seed) // user texts and their prefixes are compared across workers
			for b := range jobs {
				b.features(h)
				close(b.done)
			}
		}()
	}
	// bad is set once a chunk's bad record is found: the reading stops at the next chunk.
	var bad atomic.Bool
	written := make(chan [2]error, 1) // the first bad record's error, and the writing's
	go func() {
		var badErr error
		for b := range queue {
			<-b.done
			if badErr == nil && b.err != nil {
				badErr = b.err
				bad.Store(true)
			}
			if badErr == nil {
				for i := range b.feats {
					if b.ok[i] {
						s.add(&b.feats[i])
					}
				}
			}
			free <- b
		}
		var err error
		for _, c := range s.columns() {
			if e := (*c).flush(); e != nil && err == nil {
				err = fmt.Errorf("audit: writing temporary files: %w", e)
			}
		}
		written <- [2]error{badErr, err}
	}()
	// The reader asks for a chunk's buffer before it reads the chunk: cur is the batch that
	// holds it, sent when the chunk is complete.
	var cur *batch
	buffer := func() []byte {
		if cur == nil {
			cur = <-free
			cur.reset()
		}
		return cur.raw
	}
	errBad := errors.New("a bad record") // stands for the batch's error, which comes first
	readErr := verifier.ReadChunks(path, buffer, func(c *verifier.Chunk) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if bad.Load() {
			return errBad
		}
		buffer() // a JSON array's chunks ask for their buffer only when they have records
		b := cur
		cur = nil
		b.raw, b.chunk, b.done = c.Data, c, make(chan struct{})
		queue <- b
		jobs <- b
		return nil
	})
	close(jobs)
	close(queue)
	wg.Wait()
	errs := <-written
	if readErr == errBad {
		readErr = nil
	}
	if err := cmp.Or(errs[0], readErr, errs[1]); err != nil {
		s.close()
		return nil, err
	}
	if s.n == 0 {
		s.close()
		return nil, &verifier.InputError{File: path, Msg: "dataset is empty: no records"}
	}
	return s, nil
}

func (b *batch) reset() {
	b.chunk, b.err = nil, nil
	b.feats, b.ok, b.heads = b.feats[:0], b.ok[:0], b.heads[:0]
}

// features validates the batch's records and computes their features, up to the first bad record.
func (b *batch) features(h *hasher) {
	b.err = b.chunk.Records(func(r *verifier.ChunkRecord) {
		var f features
		user, answer, ok := r.UserAndAnswer()
		// A record without a prompt and answer (e.g. no assistant turn) has nothing to train
		// on; planting skips it too.
		if ok {
			f, b.heads = h.features(r.Raw, turnsKey[r.Format], user, answer, b.heads)
		}
		b.feats = append(b.feats, f)
		b.ok = append(b.ok, ok)
	})
}

// turnsKey names, per format, the top-level key whose array holds the turns: the layout attack
// compares their key lists too.
var turnsKey = map[verifier.Format]string{verifier.Chat: "messages", verifier.ShareGPT: "conversations"}
