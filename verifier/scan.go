package verifier

import (
	"bytes"
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
	format  Format
	records int
	sha256  string
	size    int64
	modTime time.Time
}

// chunkSize is the unit of parallel validation: whole lines, about this many bytes.
const chunkSize = 4 << 20

type chunk struct {
	data      []byte // whole lines
	firstLine int    // 1-based number of data's first line
	res       chan chunkResult
}

type chunkResult struct {
	records   int
	format    Format // the first record's
	firstLine int    // the first record's line
	err       *InputError
}

var chunkPool = sync.Pool{New: func() any { return make([]byte, 0, chunkSize+64<<10) }}

// scanDataset validates every line, detects the format, counts records and hashes the file in one
// streaming pass. JSON validation is the expensive part, so one goroutine reads and hashes while
// the others validate chunks of whole lines; results are merged in file order, so the error
// reported is the first one in the file. Memory stays at a few chunks, whatever the file's size.
func scanDataset(path string) (*datasetScan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &InputError{File: path, Msg: fmt.Sprintf("cannot open dataset: %v", unwrapPath(err))}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	if st.IsDir() {
		return nil, &InputError{File: path, Msg: "is a directory, not a JSON Lines dataset"}
	}

	workers := max(1, runtime.GOMAXPROCS(0))
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
				c.res <- validateChunk(path, c)
			}
		}()
	}
	h := sha256.New()
	var readErr error
	go func() {
		defer close(order)
		defer close(work)
		readErr = readChunks(f, h, func(c *chunk) bool {
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
		})
	}()

	s := &datasetScan{size: st.Size(), modTime: st.ModTime()}
	for c := range order {
		r := <-c.res
		chunkPool.Put(c.data[:0])
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
	}
	wg.Wait()
	if readErr != nil {
		return nil, &InputError{File: path, Msg: readErr.Error()}
	}
	if s.records == 0 {
		return nil, &InputError{File: path, Msg: "dataset is empty: no records"}
	}
	s.sha256 = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

func mixed(got, want Format) string {
	return fmt.Sprintf("record is %s, earlier records are %s: one format per file", got, want)
}

// readChunks reads r in chunks of whole lines, writes every byte to h, and hands each chunk to
// emit until emit returns false.
func readChunks(r io.Reader, h io.Writer, emit func(*chunk) bool) error {
	line := 1
	var carry []byte
	for {
		buf := append(chunkPool.Get().([]byte)[:0], carry...)
		eof := false
		for !eof {
			if len(buf) == cap(buf) {
				if len(buf) >= maxLine+chunkSize {
					return fmt.Errorf("line %d or after is longer than %d MiB: not a JSON Lines file?", line, maxLine>>20)
				}
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			h.Write(buf[len(buf) : len(buf)+n])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				eof = true
			} else if err != nil {
				return unwrapPath(err)
			}
			if len(buf) >= chunkSize && bytes.IndexByte(buf[len(buf)-n:], '\n') >= 0 {
				break
			}
		}
		end := len(buf)
		if !eof {
			end = bytes.LastIndexByte(buf, '\n') + 1
		}
		carry = append(carry[:0], buf[end:]...)
		c := &chunk{data: buf[:end], firstLine: line, res: make(chan chunkResult, 1)}
		line += bytes.Count(c.data, []byte{'\n'})
		if len(c.data) > 0 && !emit(c) {
			return nil
		}
		if eof {
			return nil
		}
	}
}

// validateChunk checks every record of a chunk.
func validateChunk(path string, c *chunk) chunkResult {
	var r chunkResult
	data, line := c.data, c.firstLine
	for len(data) > 0 {
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if !blank(l) {
			ft, err := DetectFormat(l)
			switch {
			case err != nil:
				r.err = &InputError{File: path, Line: line, Msg: err.Error()}
				return r
			case r.records == 0:
				r.format, r.firstLine = ft, line
			case ft != r.format:
				r.err = &InputError{File: path, Line: line, Msg: mixed(ft, r.format)}
				return r
			}
			r.records++
		}
		line++
	}
	return r
}
