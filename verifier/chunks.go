package verifier

import (
	"bufio"
	"bytes"
	"errors"
)

// Chunk is a run of whole records of a dataset, as ReadChunks hands them out: whole lines of JSON
// Lines, or a JSON array's elements one after another, not yet validated. Validating them
// (Records) is most of the cost of reading a dataset, and any goroutine may do it.
type Chunk struct {
	// Data holds the records, in the buffer ReadChunks was given for the chunk.
	Data      []byte
	path      string
	firstLine int        // 1-based number of Data's first line
	elems     []elemSpan // a JSON array's elements; nil for JSON Lines
	format    Format     // the file's, from its first record
}

// ChunkRecord is a record handed out by Chunk.Records, valid, with what validating it found.
type ChunkRecord struct {
	Record
	fields recordFields
}

// UserAndAnswer is Record.UserAndAnswer without a second walk over the record: validating it
// found its members already.
func (r *ChunkRecord) UserAndAnswer() (user, answer string, ok bool) {
	return r.userAndAnswer(&r.fields, true)
}

// ReadChunks streams the dataset at path, JSON Lines or a JSON array of records, in chunks of
// whole records of about 1 MiB, in file order, and calls fn with each. It checks a JSON array's
// structure and the first record's format (the file's), but leaves the records to Chunk.Records,
// so that a caller can validate chunks on every core. buf, if set, gives each chunk's buffer, which
// the chunk's Data then holds and its caller keeps; a buffer shorter than 1 MiB is replaced. fn
// may keep the chunk. Errors are *InputError naming the file and, where it applies, the line,
// except those fn returns, which are returned as they are. Taken together with each chunk's
// Records in file order, the first error is ReadRecords' first.
func ReadChunks(path string, buf func() []byte, fn func(*Chunk) error) error {
	f, _, err := openDataset(path)
	if err != nil {
		return err
	}
	defer f.Close()
	get := func() []byte {
		var b []byte
		if buf != nil {
			b = buf()
		}
		if cap(b) < chunkSize {
			return make([]byte, chunkSize)
		}
		return b[:cap(b)]
	}
	var format Format
	var fnErr error
	emit := func(c *chunk) bool {
		ch := &Chunk{Data: c.data, path: path, firstLine: c.firstLine, elems: c.elems}
		if format == "" {
			// The file's format is its first record's: a bad first record is the file's first error.
			ft, line, err := ch.firstFormat()
			if err != nil {
				fnErr = &InputError{File: path, Line: line, Msg: err.Error()}
				return false
			}
			format = ft
		}
		ch.format = format
		fnErr = fn(ch)
		return fnErr == nil
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var readErr error
	if sniffArray(br) {
		_, readErr = readArrayChunks(newArrayReader(path, unbuffered(br, f)), get, func([]byte) {}, emit)
	} else {
		readErr = readChunks(&lineBlocks{r: unbuffered(br, f)}, get, emit)
	}
	if fnErr != nil {
		return fnErr
	}
	var ie *InputError
	if readErr != nil && !errors.As(readErr, &ie) {
		ie = &InputError{File: path, Msg: readErr.Error()}
	}
	if ie != nil {
		return ie
	}
	return nil
}

// firstFormat detects the format of the chunk's first record, "" when it has none.
func (c *Chunk) firstFormat() (Format, int, error) {
	var ft Format
	var line int
	var err error
	c.each(func(rec []byte, l int) bool {
		ft, err = DetectFormat(rec)
		line = l
		return false
	})
	return ft, line, err
}

// each calls fn with the chunk's records and their lines, blank lines skipped, until fn returns
// false.
func (c *Chunk) each(fn func(rec []byte, line int) bool) {
	if c.elems != nil {
		for _, e := range c.elems {
			if !fn(c.Data[e.start:e.end], e.line) {
				return
			}
		}
		return
	}
	data, line := c.Data, c.firstLine
	for len(data) > 0 {
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if !blank(l) && !fn(l, line) {
			return
		}
		line++
	}
}

// Records validates the chunk's records in file order, as ReadRecords does, and calls fn with each
// valid one, its format detected; it stops at the first bad record (malformed, not a record, or of
// another format than the file's first record) and returns its *InputError. The record passed to
// fn is valid only during the call. Record.Index counts from the chunk's first record.
func (c *Chunk) Records(fn func(*ChunkRecord)) error {
	var r ChunkRecord
	var bad error
	n := 0
	c.each(func(rec []byte, line int) bool {
		ft, err := detectFormat(rec, &r.fields)
		switch {
		case err != nil:
			bad = &InputError{File: c.path, Line: line, Msg: err.Error()}
			return false
		case ft != c.format:
			bad = &InputError{File: c.path, Line: line, Msg: mixed(ft, c.format)}
			return false
		}
		r.Record = Record{Index: n, Line: line, Raw: rec, Format: ft}
		n++
		fn(&r)
		return true
	})
	return bad
}
