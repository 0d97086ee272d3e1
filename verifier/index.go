package verifier

import (
	"io"
	"math"
	"os"
)

// recordIndex says where every indexEvery-th record of a JSON Lines file starts, so that the
// passes that read a few records of many (the hosts, the whole-data draw) seek to them instead of
// walking the file line by line. The scan builds it from the records it validates; a JSON array
// has none, and its records are walked to.
type recordIndex struct {
	entries []indexEntry // entries[k] is record k*indexEvery's
}

type indexEntry struct {
	off  int64 // the record's first byte in the file
	line int   // its line
}

// indexEvery is the spacing of the index's entries: 16 bytes an entry, 0.5 a record, and a record
// is reached by reading the few records before it from the entry's offset.
const indexEvery = 32

// indexRead is the size of a read after a seek: about indexEvery records of a typical length.
const indexRead = 8 << 10

// add takes the starts of a chunk's records: the chunk begins at byte off of the file, its first
// record is record first of the file, and its records start at starts (within the chunk) on
// lines firstLine + lines.
func (x *recordIndex) add(first int, off int64, firstLine int, starts []uint32, lines []int32) {
	for i := (indexEvery - first%indexEvery) % indexEvery; i < len(starts); i += indexEvery {
		x.entries = append(x.entries, indexEntry{off + int64(starts[i]), firstLine + int(lines[i])})
	}
}

// seekTo moves r, a reader of JSON Lines on f that has handed out n records, to the closest
// indexed record at or before record target when that is ahead of r, and returns the records
// handed out before where r now is; otherwise r is left where it is, for skip to walk from. When
// the indexed record is in the lines r has read already, r moves to it there without reading:
// the records a pass wants may lie a few kilobytes apart, closer than a read's size.
func (x *recordIndex) seekTo(r *recordReader, f *os.File, n, target int) int {
	k := target / indexEvery
	if x == nil || k >= len(x.entries) || k*indexEvery <= n {
		return n
	}
	e := x.entries[k]
	s, lb := r.lines, r.lines.blocks
	if at := e.off - lb.off; at >= int64(lb.cut-len(s.rest)) && at < int64(lb.cut) {
		s.rest = lb.buf[at:lb.cut]
	} else {
		lb.r = io.NewSectionReader(f, e.off, math.MaxInt64-e.off) // positioned reads: no seek
		lb.n, lb.cut, lb.off, lb.eof, lb.lines = 0, 0, e.off, false, e.line-1
		s.rest = nil
	}
	s.line, s.unterminated = e.line-1, false
	r.n = k * indexEvery
	return r.n
}

// newIndexedReader reads the JSON Lines records of f from its start, with the small reads that
// suit a reader that seeks (recordIndex.seekTo).
func newIndexedReader(path string, f *os.File) *recordReader {
	return &recordReader{path: path, lines: &lineScanner{blocks: &lineBlocks{r: f, buf: make([]byte, indexRead)}}}
}
