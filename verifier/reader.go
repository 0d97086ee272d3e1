package verifier

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// A dataset is JSON Lines (one record a line) or one JSON array of records, as Alpaca data and
// LLaMA-Factory datasets ship, often pretty-printed over many lines. recordReader streams either
// record by record, so that every pass over the data (reading hosts, answers, the audit) sees the
// same records with the same index and line, in memory bounded by the largest record.

// sniffArray reports whether the stream's first byte other than white space is '[': a JSON array.
// A JSON Lines record is an object, so its first byte is '{'.
func sniffArray(br *bufio.Reader) bool {
	for n := 1; n <= br.Size(); n++ {
		b, _ := br.Peek(n)
		if len(b) < n {
			return false
		}
		switch b[n-1] {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			return true
		}
		return false
	}
	return false
}

// unbuffered returns br's stream read from r directly once br's buffered bytes are gone: br is
// for sniffing the first bytes, and the readers that follow have buffers of their own, to which a
// bufio.Reader would add a second copy of every byte.
func unbuffered(br *bufio.Reader, r io.Reader) io.Reader {
	b, _ := br.Peek(br.Buffered())
	return io.MultiReader(bytes.NewReader(b), r)
}

// recordReader reads the records of a dataset in file order.
type recordReader struct {
	path  string
	lines *lineScanner // JSON Lines
	array *arrayReader // a JSON array
	rec   Record
	n     int // records so far
	e     error
}

// newRecordReader reads the dataset at path from r, JSON Lines or a JSON array as its first byte
// says. Errors name path.
func newRecordReader(path string, r io.Reader) *recordReader {
	br := bufio.NewReaderSize(r, 1<<20)
	rr := &recordReader{path: path}
	if sniffArray(br) {
		rr.array = newArrayReader(path, unbuffered(br, r))
	} else {
		rr.lines = newLineScanner(unbuffered(br, r))
	}
	return rr
}

// next advances to the next record and reports whether there is one.
func (r *recordReader) next() bool {
	if r.array != nil {
		if !r.array.next() {
			r.e = r.array.err
			return false
		}
		r.rec = Record{Index: r.array.index - 1, Line: r.array.elemLine, Raw: r.array.elem}
		return true
	}
	for {
		line, ok := r.lines.next()
		if !ok {
			if err := r.lines.err(); err != nil {
				r.e = &InputError{File: r.path, Msg: err.Error()}
			}
			return false
		}
		if !blank(line) {
			r.rec = Record{Index: r.n, Line: r.lines.line, Raw: line}
			r.n++
			return true
		}
	}
}

// skip passes over the next k records without handing them out, and reports false, as next
// does, when the data ends first: readers that want a few records of many walk the rest this way.
func (r *recordReader) skip(k int) bool {
	if r.array != nil {
		for ; k > 0; k-- {
			if !r.next() {
				return false
			}
		}
		return true
	}
	for k > 0 {
		line, ok := r.lines.next()
		if !ok {
			if err := r.lines.err(); err != nil {
				r.e = &InputError{File: r.path, Msg: err.Error()}
			}
			return false
		}
		if !blank(line) {
			r.n++
			k--
		}
	}
	return true
}

// record returns the current record; its Raw is valid until the next call to next.
func (r *recordReader) record() Record { return r.rec }

// err returns the error that stopped reading, nil at the end of the data; an *InputError.
func (r *recordReader) err() error { return r.e }

// openDataset opens the dataset at path for reading, refusing a directory; errors are
// *InputError naming the file.
func openDataset(path string) (*os.File, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &InputError{File: path, Msg: fmt.Sprintf("cannot open dataset: %v", unwrapPath(err))}
	}
	st, err := f.Stat()
	switch {
	case err != nil:
		err = &InputError{File: path, Msg: unwrapPath(err).Error()}
	case st.IsDir():
		err = &InputError{File: path, Msg: "is a directory, not a dataset"}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// ReadRecords streams the dataset at path, JSON Lines or a JSON array of records, and calls fn
// with each record in file order, its format detected: the first record's format is the file's,
// and a record of another is an error. The Raw of the record passed to fn is valid only during the
// call. Errors are *InputError naming the file and, where it applies, the line, except those fn
// returns, which are returned as they are.
func ReadRecords(path string, fn func(Record) error) error {
	f, _, err := openDataset(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rr := newRecordReader(path, f)
	var format Format
	for rr.next() {
		rec := rr.record()
		ft, err := DetectFormat(rec.Raw)
		if err != nil {
			return &InputError{File: path, Line: rec.Line, Msg: err.Error()}
		}
		if format == "" {
			format = ft
		} else if ft != format {
			return &InputError{File: path, Line: rec.Line, Msg: mixed(ft, format)}
		}
		rec.Format = ft
		if err := fn(rec); err != nil {
			return err
		}
	}
	return rr.err()
}

// lineBlocks reads a file in blocks of whole lines, about a buffer's worth each: a pass over
// a large file looks at each line where it lies, instead of handing lines out one call at a time.
type lineBlocks struct {
	r      io.Reader
	buf    []byte // data in buf[:n]; the last block handed out is buf[:cut]
	n, cut int
	off    int64 // where buf[0] lies in what r reads (in the file, after recordIndex.seekTo)
	eof    bool
	lines  int // lines in the blocks handed out, for the error about a long one
	// fresh, if set, gives the buffer for each block, which its caller then keeps: the scan
	// hands blocks to other goroutines. Without it, one buffer serves every block.
	fresh func() []byte
}

func newLineBlocks(r io.Reader) *lineBlocks {
	return &lineBlocks{r: r, buf: make([]byte, 1<<20)}
}

// next returns the next lines: each ends in '\n', except the file's last when the file does not.
// Unless fresh is set, the block is valid until the next call. At the end of the file next
// returns io.EOF.
func (lb *lineBlocks) next() ([]byte, error) {
	rest := lb.buf[lb.cut:lb.n] // the start of a line cut by the last read
	if lb.fresh != nil {
		// The last block may come back from fresh already, given back by its reader: rest is
		// then copied within it, as without fresh.
		buf := lb.fresh()
		if cap(buf) <= len(rest) {
			buf = make([]byte, 2*len(rest))
		}
		lb.buf = buf[:cap(buf)]
	}
	lb.off += int64(lb.cut)
	lb.n = copy(lb.buf, rest)
	lb.cut = 0
	for scanned := 0; ; {
		if i := bytes.LastIndexByte(lb.buf[scanned:lb.n], '\n'); i >= 0 {
			lb.cut = scanned + i + 1
			lb.lines += bytes.Count(lb.buf[:lb.cut], []byte{'\n'})
			return lb.buf[:lb.cut], nil
		}
		scanned = lb.n
		if lb.eof {
			if lb.cut = lb.n; lb.n == 0 {
				return nil, io.EOF
			}
			return lb.buf[:lb.n], nil
		}
		if lb.n == len(lb.buf) {
			// Room for the longest line and its newline, and no more.
			if lb.n > maxLine {
				return nil, fmt.Errorf("line %d is longer than %d MiB: not a JSON Lines file?", lb.lines+1, maxLine>>20)
			}
			lb.buf = append(lb.buf, make([]byte, min(len(lb.buf), maxLine+1-len(lb.buf)))...)
		}
		k, err := lb.r.Read(lb.buf[lb.n:])
		lb.n += k
		if errors.Is(err, io.EOF) {
			lb.eof = true
		} else if err != nil {
			return nil, unwrapPath(err)
		}
	}
}

// lineScanner reads a JSON Lines file line by line, keeping every byte so that untouched records can
// be copied out exactly. A line is split at '\n' alone, so a CRLF file copies through byte for byte.
type lineScanner struct {
	blocks *lineBlocks
	rest   []byte // the lines of the current block not yet handed out
	e      error
	line   int
	// unterminated is set when the last line read had no newline after it: the file ends so, and
	// a copy of it must too.
	unterminated bool
}

func newLineScanner(r io.Reader) *lineScanner {
	return &lineScanner{blocks: newLineBlocks(r)}
}

// next returns the next line without its newline; it is valid until the next call.
func (s *lineScanner) next() ([]byte, bool) {
	for len(s.rest) == 0 {
		b, err := s.blocks.next()
		if err != nil {
			if err != io.EOF {
				s.e = err
			}
			return nil, false
		}
		s.rest = b
	}
	l := s.rest
	if i := bytes.IndexByte(s.rest, '\n'); i >= 0 {
		l, s.rest = s.rest[:i], s.rest[i+1:]
	} else {
		s.rest, s.unterminated = nil, true
	}
	s.line++
	return l, true
}

func (s *lineScanner) err() error { return s.e }

// arrayReader splits a streamed JSON array into its top-level elements without decoding them, and
// keeps the bytes between them (the opening bracket, the separators and white space, the closing
// bracket) so that a writer can give back the file's own form. It checks the array's structure;
// each element is validated as a record by whoever reads it. Memory is bounded by the largest
// element (maxLine), whatever the file's size.
type arrayReader struct {
	path string
	r    io.Reader

	buf   []byte
	start int // first byte not yet handed out: the next gap begins here
	pos   int // scanning position
	end   int // buf[:end] holds data
	eof   bool

	line  int // line number at buf[start]
	state arrayState
	// The element being scanned: where it starts, bracket depth, inside a string, a bare scalar.
	elemStart      int
	depth          int
	inString, bare bool

	// After next returns true: the bytes before the element since the previous one (the first
	// element's include the '['), the element, its line, and the count of elements so far.
	gap, elem []byte
	elemLine  int
	index     int
	err       error // after next returns false: nil at the array's proper end
}

type arrayState uint8

const (
	wantOpen  arrayState = iota // before the '['
	wantFirst                   // after '[': an element or ']'
	wantSep                     // after an element: ',' or ']'
	wantElem                    // after ',': an element
	inElem                      // inside an element
	closed                      // after ']': only white space may follow
	failed
)

func newArrayReader(path string, r io.Reader) *arrayReader {
	return &arrayReader{path: path, r: r, buf: make([]byte, 0, 1<<20), line: 1}
}

// fail stops reading with an error at the scanning position's line.
func (a *arrayReader) fail(format string, args ...any) bool {
	a.err = &InputError{File: a.path, Line: a.lineOf(a.pos), Msg: fmt.Sprintf(format, args...)}
	a.state = failed
	return false
}

// lineOf returns the line of buf[i], i >= start.
func (a *arrayReader) lineOf(i int) int {
	return a.line + bytes.Count(a.buf[a.start:min(i, a.end)], []byte{'\n'})
}

// fill reads more data, keeping buf[start:end]; it reports false at the end of the file.
func (a *arrayReader) fill() bool {
	if a.eof {
		return false
	}
	if a.start > 0 && a.end == cap(a.buf) { // make room by moving the unread part to the front
		n := copy(a.buf[:cap(a.buf)], a.buf[a.start:a.end])
		a.pos -= a.start
		a.elemStart -= a.start
		a.start, a.end = 0, n
	}
	if a.end == cap(a.buf) {
		if a.end-a.start > maxLine {
			a.fail("a record (or the space between records) is longer than %d MiB", maxLine>>20)
			return false
		}
		a.buf = append(a.buf[:a.end], make([]byte, a.end)...)[:a.end]
	}
	for {
		n, err := a.r.Read(a.buf[a.end:cap(a.buf)])
		a.buf = a.buf[:a.end+n]
		a.end += n
		switch {
		case errors.Is(err, io.EOF):
			a.eof = true
			return n > 0
		case err != nil:
			a.err = &InputError{File: a.path, Msg: fmt.Sprintf("cannot read dataset: %v", unwrapPath(err))}
			a.state = failed
			return false
		case n > 0:
			return true
		}
	}
}

// next advances to the next element and reports whether there is one. At the array's end (err
// nil) tail returns the bytes after the last element.
func (a *arrayReader) next() bool {
	for a.state != failed {
		if a.pos == a.end && !a.fill() {
			return a.atEOF()
		}
		if a.state == inElem {
			if a.scanElem() {
				return true
			}
			continue
		}
		c := a.buf[a.pos]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			a.pos++
			continue
		}
		switch {
		case a.state == wantOpen && c == '[':
			a.state = wantFirst
			a.pos++
		case a.state == wantOpen:
			return a.fail("not a JSON array")
		case a.state == closed:
			return a.fail("text after the array's closing ']'")
		case c == ']' && a.state == wantElem:
			return a.fail("a ',' before ']': not valid JSON")
		case c == ']':
			a.state = closed
			a.pos++
		case a.state == wantSep && c == ',':
			a.state = wantElem
			a.pos++
		case a.state == wantSep:
			return a.fail("want ',' or ']' after the record that ends on line %d, found %q", a.lineOf(a.start), c)
		case c == ',':
			return a.fail("a record is missing before ','")
		default:
			a.startElem(c)
		}
	}
	return false
}

// atEOF ends reading at the end of the file: fine after the closing ']', an error anywhere else.
func (a *arrayReader) atEOF() bool {
	switch a.state {
	case failed, closed:
	case inElem:
		a.fail("the file ends inside the record that starts on line %d", a.lineOf(a.elemStart))
	default:
		a.fail("the file ends before the array's closing ']'")
	}
	return false
}

// tail returns the bytes after the last element, the closing ']' included.
func (a *arrayReader) tail() []byte { return a.buf[a.start:a.end] }

func (a *arrayReader) startElem(c byte) {
	a.state, a.elemStart, a.depth, a.inString, a.bare = inElem, a.pos, 0, false, false
	switch c {
	case '{', '[':
		a.depth = 1
	case '"':
		a.inString = true
	default:
		a.bare = true // a number, true, false, null or junk: not a record, which its reader says
		return
	}
	a.pos++
}

// scanElem scans the element from pos on as far as the data goes; it reports true when the
// element is complete, and then sets gap, elem and elemLine.
func (a *arrayReader) scanElem() bool {
	b := a.buf[:a.end]
	for a.pos < a.end {
		if a.inString {
			q := bytes.IndexByte(b[a.pos:], '"')
			if q < 0 {
				a.pos = a.end
				break
			}
			q += a.pos
			a.pos = q + 1
			if escaped(b, q) {
				continue
			}
			a.inString = false
			if a.depth == 0 {
				return a.complete()
			}
			continue
		}
		c := b[a.pos]
		if a.bare {
			switch c {
			case ' ', '\t', '\r', '\n', ',', ']', '}', '[', '{', '"':
				return a.complete()
			}
			a.pos++
			continue
		}
		if !structural[c] {
			a.pos++
			continue
		}
		a.pos++
		switch c {
		case '"':
			a.inString = true
		case '{', '[':
			a.depth++
		case '}', ']':
			if a.depth--; a.depth == 0 {
				return a.complete()
			}
		}
	}
	return false
}

// structural marks the bytes that matter in an element outside its strings: most of what lies
// there in a pretty-printed record is indentation, skipped by one table lookup a byte.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// escaped reports whether the quote at b[q] is escaped: preceded by an odd run of backslashes.
// The run cannot reach past the string's opening quote, which is in b.
func escaped(b []byte, q int) bool {
	n := 0
	for i := q - 1; i >= 0 && b[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// complete hands out the element that ends at pos.
func (a *arrayReader) complete() bool {
	if a.pos-a.elemStart > maxLine {
		a.pos = a.elemStart
		return a.fail("a record is longer than %d MiB", maxLine>>20)
	}
	a.gap = a.buf[a.start:a.elemStart]
	a.elem = a.buf[a.elemStart:a.pos]
	a.elemLine = a.lineOf(a.elemStart)
	a.line = a.elemLine + bytes.Count(a.elem, []byte{'\n'})
	a.start = a.pos
	a.state = wantSep
	a.index++
	return true
}
