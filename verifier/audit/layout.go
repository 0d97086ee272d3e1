package audit

import (
	"bytes"
	"slices"
)

// style is the formatting evidence of one record's line: for each dimension, which of its two
// ways of writing the same JSON the line uses (1 or 2, 3 for both, 0 when the line writes nothing
// the dimension is about). Two bits per dimension.
type style uint16

// dimension is one optional choice a JSON writer makes.
type dimension uint

const (
	dimNonASCII dimension = iota // non-ASCII text: raw UTF-8 (1) or \u00e9 escapes (2, Python's default)
	dimSlash                     // '/': raw (1) or "\/" (2)
	dimHTML                      // '<', '>', '&': raw (1) or \u003c escapes (2, Go's default)
	dimControl                   // newline, tab...: short "\n" (1) or "\u000a" (2)
	dimHexCase                   // hex digits of \u escapes: lower case (1) or upper case (2)
	dimColon                     // key separator: ": " (1, Python's default) or ":" (2)
	dimComma                     // value separator: ", " (1, Python's default) or "," (2)
	numDims
)

var dimNames = [numDims]string{"non-ASCII escapes", "slash escapes", "HTML escapes", "control escapes", "hex case", "colon spacing", "comma spacing"}

func (s style) get(d dimension) uint8 { return uint8(s>>(2*d)) & 3 }

func (s *style) mark(d dimension, way uint8) { *s |= style(way) << (2 * d) }

// scanLayout reads a valid JSON line byte by byte, without decoding it, and returns its formatting
// evidence and two signatures of its keys: order, the top-level keys in the order written (and
// each turn's keys in the array under the top-level key turns, "messages" for chat, runs of equal
// lists written once), and keys, the same with each list sorted, which groups records that hold the
// same fields whatever their order.
func scanLayout(b []byte, turns string) (st style, order, keys string) {
	var l layoutScanner
	st, o, k := l.scan(b, turns)
	return st, string(o), string(k)
}

// layoutScanner is scanLayout with buffers kept from one record to the next: the audit scans
// millions.
type layoutScanner struct {
	stack       []frame
	top         [][]byte   // top-level keys
	msgs        [][][]byte // each message's keys
	sorted      [][]byte
	order, keys []byte
}

type frame struct {
	object    bool
	expectKey bool // the next string in this object is a key
	messages  bool // this array is the value of the top-level key turns
}

// scan is scanLayout; the signatures are valid until the next call.
func (l *layoutScanner) scan(b []byte, turns string) (st style, order, keys []byte) {
	stack := l.stack[:0]
	top, msgs := l.top[:0], l.msgs[:0]
	var lastTop []byte
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			j := scanString(b, i, &st)
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
				stack[n-1].expectKey = false
				key := b[i+1 : j]
				switch {
				case n == 1:
					top, lastTop = append(top, key), key
				case n == 3 && stack[1].messages:
					msgs[len(msgs)-1] = append(msgs[len(msgs)-1], key)
				}
			}
			i = j
		case '{':
			if len(stack) == 2 && stack[1].messages {
				if len(msgs) < cap(msgs) { // reuse the list this slot had
					msgs = msgs[:len(msgs)+1]
					msgs[len(msgs)-1] = msgs[len(msgs)-1][:0]
				} else {
					msgs = append(msgs, nil)
				}
			}
			stack = append(stack, frame{object: true, expectKey: true})
		case '[':
			stack = append(stack, frame{messages: turns != "" && len(stack) == 1 && string(lastTop) == turns})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expectKey = true
			}
			st.mark(dimComma, spacing(b, i))
		case ':':
			st.mark(dimColon, spacing(b, i))
		}
	}
	l.stack, l.top, l.msgs = stack, top, msgs
	l.order = l.signature(l.order[:0], top, msgs, false)
	l.keys = l.signature(l.keys[:0], top, msgs, true)
	return st, l.order, l.keys
}

// spacing tells whether the separator at b[i] is followed by white space (1) or not (2); a line
// break counts, for the records of a pretty-printed JSON array.
func spacing(b []byte, i int) uint8 {
	if i+1 < len(b) && (b[i+1] == ' ' || b[i+1] == '\t' || b[i+1] == '\n' || b[i+1] == '\r') {
		return 1
	}
	return 2
}

// scanString notes the escaping evidence of the string starting at b[i] and returns the index of
// its closing quote.
func scanString(b []byte, i int, st *style) int {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j
		case c == '\\' && j+1 < len(b):
			switch b[j+1] {
			case 'u':
				if j+6 <= len(b) {
					markEscape(b[j+2:j+6], st)
				}
				j += 5
			case '/':
				st.mark(dimSlash, 2)
				j++
			case 'b', 'f', 'n', 'r', 't':
				st.mark(dimControl, 1)
				j++
			default: // \" and \\ must be escaped: no choice, no evidence
				j++
			}
		case c >= 0x80:
			st.mark(dimNonASCII, 1)
		case c == '/':
			st.mark(dimSlash, 1)
		case c == '<' || c == '>' || c == '&':
			st.mark(dimHTML, 1)
		}
	}
	return len(b) - 1
}

// markEscape notes what a \uXXXX escape (hex: its four digits) shows: an escape where the writer
// could have written the character itself.
func markEscape(hex []byte, st *style) {
	v := 0
	for _, h := range hex {
		switch {
		case h >= '0' && h <= '9':
			v = v<<4 | int(h-'0')
		case h >= 'a' && h <= 'f':
			v = v<<4 | int(h-'a'+10)
			st.mark(dimHexCase, 1)
		case h >= 'A' && h <= 'F':
			v = v<<4 | int(h-'A'+10)
			st.mark(dimHexCase, 2)
		}
	}
	switch {
	case v >= 0x80:
		st.mark(dimNonASCII, 2)
	case v == '<' || v == '>' || v == '&':
		st.mark(dimHTML, 2)
	case v == '/':
		st.mark(dimSlash, 2)
	case v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t':
		st.mark(dimControl, 2)
	}
}

// signature appends key lists to out as one string: top-level keys, then each run of messages with
// equal key lists once, in brackets. sorted sorts each list first.
func (l *layoutScanner) signature(out []byte, top [][]byte, msgs [][][]byte, sorted bool) []byte {
	list := func(keys [][]byte) []byte {
		if sorted {
			l.sorted = append(l.sorted[:0], keys...)
			slices.SortFunc(l.sorted, bytes.Compare)
			keys = l.sorted
		}
		at := len(out)
		for i, k := range keys {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, k...)
		}
		return out[at:]
	}
	list(top)
	var prev []byte // the last list written
	for i, m := range msgs {
		start := len(out)
		out = append(out, '[')
		cur := list(m)
		if i > 0 && bytes.Equal(cur, prev) {
			out = out[:start]
			continue
		}
		prev = cur
		out = append(out, ']')
	}
	return out
}
