package audit

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
)

// The audit's memory is bounded by spilling: the one pass over the dataset (collect.go) writes
// each record's features, all of them fixed-size hashes and numbers, to files in a temporary
// directory, one file a feature ("column"), in record order. The attacks then read the columns
// back one at a time: an attack that counts equal values loads one column into a single buffer
// of 8 bytes a record, sorts it, keeps only the values it needs (those repeated, or the set it
// looks records up in) and reads the column again to flag each record. So the audit holds at
// most that buffer, one bit a record per attack and tables of distinct repeated values, never
// a map entry a record: about 10 bytes a record in memory (46 MiB of buffer for 5.8 million
// records), and 51 bytes a record of temporary files, plus 8 for each prefix of the user text
// (wordEnds; about 80 in all for short prompts, 450 MB for the 1 GB benchmark file). The layout
// pairs (key set, key order) are counted in a map: one entry for each distinct pair, a handful
// in real data.

// column is one feature of every record, in a file: size bytes a value, little-endian.
type column struct {
	f    *os.File
	w    *bufio.Writer
	size int
}

func newColumn(dir, name string, size int) (*column, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	return &column{f: f, w: bufio.NewWriterSize(f, 1<<16), size: size}, nil
}

// put appends a value; a write error is kept by the writer and returned by flush.
func (c *column) put(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	c.w.Write(b[:c.size])
}

func (c *column) flush() error { return c.w.Flush() }

// reader reads the column from its first value.
func (c *column) reader() (*columnReader, error) {
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return &columnReader{r: bufio.NewReaderSize(c.f, 1<<16), size: c.size, name: c.f.Name()}, nil
}

// columnReader hands a column's values out in order. Reading past the end, which a column cut
// short would make the attacks do, is an error that err returns.
type columnReader struct {
	r    *bufio.Reader
	size int
	name string
	err  error
}

func (r *columnReader) next() uint64 {
	b, err := r.r.Peek(r.size)
	if err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("audit: reading back %s: %w", r.name, err)
		}
		return 0
	}
	var v [8]byte
	copy(v[:], b)
	r.r.Discard(r.size)
	return binary.LittleEndian.Uint64(v[:])
}

// each calls fn with every record's value of c, in order.
func (c *column) each(n int, fn func(i int, v uint64)) error {
	r, err := c.reader()
	if err != nil {
		return err
	}
	for i := range n {
		fn(i, r.next())
	}
	return r.err
}

// load reads the n values of c into buf.
func (c *column) load(buf []uint64) ([]uint64, error) {
	buf = buf[:cap(buf)]
	err := c.each(len(buf), func(i int, v uint64) { buf[i] = v })
	return buf, err
}

// bitset is one bit a record.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) get(i int) bool { return b[i>>6]>>(i&63)&1 != 0 }
func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bitset) countAnd(o bitset) (both, only int) {
	for i, w := range b {
		both += bits.OnesCount64(w & o[i])
		only += bits.OnesCount64(w &^ o[i])
	}
	return both, only
}

// hashSet finds hashes in a sorted slice of distinct ones through an index of where each value of
// their top 16 bits starts: the hashes are uniform, so a lookup binary-searches about
// len/65536 values that lie together, instead of the whole slice.
type hashSet struct {
	h     []uint64
	start []uint32
}

func newHashSet(sorted []uint64) hashSet {
	s := hashSet{h: sorted, start: make([]uint32, 1<<16+1)}
	j := 0
	for b := range 1 << 16 {
		s.start[b] = uint32(j)
		for j < len(sorted) && int(sorted[j]>>48) == b {
			j++
		}
	}
	s.start[1<<16] = uint32(len(sorted))
	return s
}

// find returns h's index in the set, and whether it is there.
func (s hashSet) find(h uint64) (int, bool) {
	lo, hi := int(s.start[h>>48]), int(s.start[h>>48+1])
	i, ok := slices.BinarySearch(s.h[lo:hi], h)
	return lo + i, ok
}

// groups sorts v and writes to its first elements the distinct values other than 0 (which marks
// "no value") that occur at least atLeast times; it returns them, sorted, and how many times
// each occurs, capped at 255.
func groups(v []uint64, atLeast int) (vals []uint64, count []uint8) {
	sortHashes(v)
	m := 0
	for i := 0; i < len(v); {
		j := i + 1
		for j < len(v) && v[j] == v[i] {
			j++
		}
		if v[i] != 0 && j-i >= atLeast {
			v[m] = v[i]
			count = append(count, uint8(min(j-i, 255)))
			m++
		}
		i = j
	}
	return v[:m], count
}

// sortHashes sorts uniform hashes in place: one pass moves each into the bucket of its top byte
// (American flag sort), then the buckets, each small enough to stay in cache, are sorted on
// every core.
func sortHashes(v []uint64) {
	if len(v) < 1<<16 {
		slices.Sort(v)
		return
	}
	var count [256]int
	for _, x := range v {
		count[x>>56]++
	}
	var start, next [257]int
	for b := range 256 {
		start[b+1] = start[b] + count[b]
	}
	copy(next[:], start[:])
	for b := range 256 {
		for next[b] < start[b+1] {
			x := v[next[b]]
			// Carry x to its bucket, taking the value there, until one belongs here.
			for d := int(x >> 56); d != b; d = int(x >> 56) {
				v[next[d]], x = x, v[next[d]]
				next[d]++
			}
			v[next[b]] = x
			next[b]++
		}
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := w; b < 256; b += workers {
				slices.Sort(v[start[b]:start[b+1]])
			}
		}()
	}
	wg.Wait()
}
