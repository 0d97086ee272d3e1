package verifier

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"
)

// datasetScan is what the first pass learns about the input.
type datasetScan struct {
	format Format
	// array is set for a JSON array of records; sep is then what goes before a record inserted
	// into it (the file's first separator, or ',' and the white space after '[').
	array   bool
	sep     []byte
	records int
	size    int64
	modTime time.Time
	answers *answers     // every record's, for the whole-data draw
	index   *recordIndex // JSON Lines: where records start, for the passes that read a few
}

// chunkSize is the unit of parallel validation: whole lines, or whole array elements, about this
// many bytes. A few chunks are in flight at a time, so this bounds the scan's memory.
const chunkSize = 1 << 20

type chunk struct {
	data      []byte // whole lines, or array elements one after another
	firstLine int    // 1-based number of data's first line
	elems     []elemSpan
	res       chan chunkResult
}

// elemSpan is where an array element lies in its chunk's data, and its line in the file; a chunk
// of JSON Lines has none.
type elemSpan struct{ start, end, line int }

type chunkResult struct {
	records   int
	format    Format // the first record's
	firstLine int    // the first record's line
	err       *InputError
	answers   *answerBatch
}

// scanPools recycles a scan's chunk buffers and answer batches. They belong to the scan, so that
// they are garbage when it ends: a sync.Pool's would survive a collection or two more, while
// planting goes on with the largest things it holds.
type scanPools struct {
	chunks  freeList[[]byte]
	batches freeList[*answerBatch]
}

func newScanPools(workers int) *scanPools {
	n := 3*workers + 2 // the chunks in flight at most: see scanDataset's channels
	return &scanPools{
		chunks:  freeList[[]byte]{c: make(chan []byte, n), new: func() []byte { return make([]byte, chunkSize) }},
		batches: freeList[*answerBatch]{c: make(chan *answerBatch, n), new: func() *answerBatch { return new(answerBatch) }},
	}
}

// freeList is a bounded list of things to reuse.
type freeList[T any] struct {
	c   chan T
	new func() T
}

func (f *freeList[T]) Get() T {
	select {
	case x := <-f.c:
		return x
	default:
		return f.new()
	}
}

func (f *freeList[T]) Put(x T) {
	select {
	case f.c <- x:
	default:
	}
}

// scanDataset validates every record, detects the format and counts records in one streaming
// pass. JSON validation is the expensive part, so one goroutine reads (and splits a JSON array
// into its elements) while the others validate chunks of whole records; results are merged in
// file order, so the error reported is the first one in the file. Memory stays at a few chunks,
// whatever the file's size.
func scanDataset(path string) (*datasetScan, error) {
	f, st, err := openDataset(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	s := &datasetScan{size: st.Size(), modTime: st.ModTime(), array: sniffArray(br), answers: &answers{}}

	workers := max(1, runtime.GOMAXPROCS(0))
	pools := newScanPools(workers)
	work := make(chan *chunk, workers)
	order := make(chan *chunk, 2*workers)
	done := make(chan struct{})
	defer close(done)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.res <- validateChunk(path, c, pools)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(order)
		defer close(work)
		emit := func(c *chunk) bool {
			select {
			case order <- c:
			case <-done:
				return false
			}
			select {
			case work <- c:
				return true
			case <-done:
				return false
			}
		}
		if s.array {
			s.sep, readErr = readArrayChunks(newArrayReader(path, unbuffered(br, f)), pools.chunks.Get, pools.chunks.Put, emit)
		} else {
			readErr = readChunks(&lineBlocks{r: unbuffered(br, f)}, pools.chunks.Get, emit)
		}
	}()

	if !s.array {
		s.index = &recordIndex{}
	}
	var off int64 // the chunk's first byte in the file
	for c := range order {
		r := <-c.res
		if s.index != nil && r.err == nil {
			s.index.add(s.records, off, c.firstLine, r.answers.start, r.answers.line)
		}
		off += int64(len(c.data))
		pools.chunks.Put(c.data[:cap(c.data)])
		if r.records > 0 {
			if s.format == "" {
				s.format = r.format
			} else if r.format != s.format {
				return nil, &InputError{File: path, Line: r.firstLine, Msg: mixed(r.format, s.format)}
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		s.records += r.records
		s.answers.appendBatch(r.answers)
		pools.batches.Put(r.answers)
	}
	wg.Wait()
	var ie *InputError
	if errors.As(readErr, &ie) {
		return nil, ie
	}
	if readErr != nil {
		return nil, &InputError{File: path, Msg: readErr.Error()}
	}
	if s.records == 0 {
		return nil, &InputError{File: path, Msg: "dataset is empty: no records"}
	}
	return s, nil
}

// hashFile computes the SHA-256 of the file at path on a goroutine of its own, and returns what
// waits for it (as often as asked). Planting hashes its input beside drawing the secrets, which
// leaves a core idle on a large file (the whole-data draw's shuffle) and waits for the model: in
// the scan, the hash was the reading goroutine's work and, on two cores, added a quarter to the
// scan's time. The file is read a third time, from the page cache where it fits. size and
// modTime are the file's as the scan found it: a file that differs from them once hashed is an
// error, as writePlanted's check after copying it is, so that the sum is that of the records
// validated and planted. It stops when ctx is done.
func hashFile(ctx context.Context, path string, size int64, modTime time.Time) (wait func() (string, error)) {
	done := make(chan struct{})
	var sum string
	var err error
	go func() {
		defer close(done)
		sum, err = hashUnchanged(ctx, path, size, modTime)
	}()
	return func() (string, error) {
		<-done
		return sum, err
	}
}

// hashUnchanged is hashFile's work.
func hashUnchanged(ctx context.Context, path string, size int64, modTime time.Time) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		k, err := f.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if err == io.EOF {
			break
		} else if err != nil {
			return "", &InputError{File: path, Msg: unwrapPath(err).Error()}
		}
	}
	if st, err := f.Stat(); err != nil || n != size || st.Size() != size || !st.ModTime().Equal(modTime) {
		return "", &InputError{File: path, Msg: "dataset changed while planting"}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mixed(got, want Format) string {
	return fmt.Sprintf("record is %s, earlier records are %s: one format per file", got, want)
}

// readChunks reads lines in chunks of whole lines and hands each chunk to emit until emit
// returns false. get gives each chunk's buffer (of chunkSize bytes or more), which the chunk then
// holds.
func readChunks(lb *lineBlocks, get func() []byte, emit func(*chunk) bool) error {
	lb.fresh = get
	for {
		line := lb.lines + 1
		b, err := lb.next()
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if !emit(&chunk{data: b, firstLine: line, res: make(chan chunkResult, 1)}) {
			return nil
		}
	}
}

// readArrayChunks reads a JSON array in chunks of whole elements and hands each to emit until emit
// returns false. It returns the separator for inserted records (datasetScan.sep). get gives each
// chunk's buffer, which the chunk then holds; put takes back the one a last, empty chunk did not
// use.
func readArrayChunks(a *arrayReader, get func() []byte, put func([]byte), emit func(*chunk) bool) (sep []byte, err error) {
	for more := true; more; {
		c := &chunk{data: get()[:0], res: make(chan chunkResult, 1)}
		for len(c.data) < chunkSize {
			if more = a.next(); !more {
				break
			}
			switch a.index {
			case 1: // the gap is '[' and white space around it
				sep = append([]byte{','}, bytes.TrimLeft(a.gap, " \t\r\n")[1:]...)
			case 2:
				sep = bytes.Clone(a.gap)
			}
			c.elems = append(c.elems, elemSpan{len(c.data), len(c.data) + len(a.elem), a.elemLine})
			c.data = append(c.data, a.elem...)
		}
		if len(c.elems) == 0 {
			put(c.data)
			break
		}
		c.firstLine = c.elems[0].line
		if !emit(c) {
			return sep, nil
		}
	}
	return sep, a.err
}

// validateChunk checks every record of a chunk and reads its answer.
func validateChunk(path string, c *chunk, pools *scanPools) chunkResult {
	b := pools.batches.Get()
	b.length, b.hash, b.start, b.line = b.length[:0], b.hash[:0], b.start[:0], b.line[:0]
	r := chunkResult{answers: b}
	var fs recordFields
	var ar answerReader
	check := func(rec []byte, line int) bool {
		ft, err := detectFormat(rec, &fs)
		switch {
		case err != nil:
			r.err = &InputError{File: path, Line: line, Msg: err.Error()}
			return false
		case r.records == 0:
			r.format, r.firstLine = ft, line
		case ft != r.format:
			r.err = &InputError{File: path, Line: line, Msg: mixed(ft, r.format)}
			return false
		}
		r.records++
		b.add(ar.answer(Record{Raw: rec, Format: ft}, &fs))
		return true
	}
	if c.elems != nil {
		for _, e := range c.elems {
			if !check(c.data[e.start:e.end], e.line) {
				break
			}
		}
		return r
	}
	data, line := c.data, c.firstLine
	for len(data) > 0 {
		l, start := data, len(c.data)-len(data)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if !blank(l) {
			b.start = append(b.start, uint32(start))
			b.line = append(b.line, int32(line-c.firstLine))
			if !check(l, line) {
				break
			}
		}
		line++
	}
	return r
}
