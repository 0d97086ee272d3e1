package verifier

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// A hand-written JSON syntax checker and a few helpers that walk a document already known to be
// valid. Planting checks every record of the dataset, and encoding/json's validator, one state
// function call a byte, was what bounded planting's time on large files. validJSON accepts
// exactly what json.Valid accepts (fuzz_test.go checks the two against each other), and neither
// it nor the walkers allocate.

// maxJSONDepth is encoding/json's nesting limit: a document nested deeper is not valid to it.
const maxJSONDepth = 10000

// validJSON reports whether b is one JSON value with optional white space around it, as
// json.Valid does: strings may hold any bytes but control characters (invalid UTF-8 and lone
// surrogate escapes included), and objects and arrays may nest maxJSONDepth deep.
func validJSON(b []byte) bool { return validate(b, nil) }

// validate is validJSON that also calls member, if set, with each member of a top-level object:
// where its key starts and ends (quotes included) and where its value starts and ends. A record's
// fields are found on the way, without a second walk over it. member may be called before a
// syntax error further on is found.
func validate(b []byte, member func(key, keyEnd, value, end int)) bool {
	var object nesting
	depth := 0
	key, keyEnd, value := 0, 0, 0 // the top-level member being read
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth == maxJSONDepth {
				return false
			}
			isObj := c == '{'
			object.set(depth, isObj)
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']': empty
				depth--
				i++
				break
			}
			if isObj {
				k := i
				ke := 0
				if ke, i = objectKey(b, i); i < 0 {
					return false
				}
				if depth == 1 {
					key, keyEnd, value = k, ke, i
				}
			}
			continue
		case c == '"':
			i = stringEnd(b, i)
		case c == '-' || '0' <= c && c <= '9':
			i = numberEnd(b, i)
		case c == 't':
			i = literalEnd(b, i, "true")
		case c == 'f':
			i = literalEnd(b, i, "false")
		case c == 'n':
			i = literalEnd(b, i, "null")
		default:
			return false
		}
		if i < 0 {
			return false
		}
		// A value ended at i: close containers, or find the next value.
		for next := false; !next; {
			if depth == 1 && member != nil && object.get(0) {
				member(key, keyEnd, value, i)
			}
			i = skipSpace(b, i)
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			isObj := object.get(depth - 1)
			switch c := b[i]; {
			case c == ',':
				i = skipSpace(b, i+1)
				if isObj {
					k := i
					ke := 0
					if ke, i = objectKey(b, i); i < 0 {
						return false
					}
					if depth == 1 {
						key, keyEnd, value = k, ke, i
					}
				}
				next = true
			case isObj && c == '}' || !isObj && c == ']':
				depth--
				i++
			default:
				return false
			}
		}
	}
}

// nesting records, for each open container, whether it is an object. Most records nest a few
// levels deep, so the first 64 levels live in one word and a deeper document pays for the rest.
type nesting struct {
	low  uint64
	deep []uint64
}

func (n *nesting) set(depth int, object bool) {
	w, bit := &n.low, uint64(1)<<(depth%64)
	if depth >= 64 {
		if n.deep == nil {
			n.deep = make([]uint64, maxJSONDepth/64+1)
		}
		w = &n.deep[depth/64]
	}
	if object {
		*w |= bit
	} else {
		*w &^= bit
	}
}

func (n *nesting) get(depth int) bool {
	w := n.low
	if depth >= 64 {
		w = n.deep[depth/64]
	}
	return w&(1<<(depth%64)) != 0
}

// objectKey checks a key and its colon at b[i:] and returns where the key ends and where the
// member's value starts (after white space), or -1.
func objectKey(b []byte, i int) (keyEnd, value int) {
	if i >= len(b) || b[i] != '"' {
		return 0, -1
	}
	if keyEnd = stringEnd(b, i); keyEnd < 0 {
		return 0, -1
	}
	i = skipSpace(b, keyEnd)
	if i >= len(b) || b[i] != ':' {
		return 0, -1
	}
	return keyEnd, skipSpace(b, i+1)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && jsonSpace(b[i]) {
		i++
	}
	return i
}

func jsonSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// SWAR constants: a byte repeated in each of a word's 8 bytes.
const (
	lows  = 0x0101010101010101
	highs = 0x8080808080808080
)

// stringSpecial returns a word with the high bit set in the lowest byte of x that is a quote, a
// backslash or a control character, and possibly in bytes above it; 0 when there is none. The
// subtractions borrow only upwards, so the lowest flagged byte is always a true one.
func stringSpecial(x uint64) uint64 {
	q := x ^ ('"' * lows)
	s := x ^ ('\\' * lows)
	return ((q - lows) &^ q & highs) | ((s - lows) &^ s & highs) | ((x - 0x20*lows) &^ x & highs)
}

// stringEnd checks the string whose opening quote is at b[i] and returns the index after its
// closing quote, or -1 if it is not a valid JSON string. Eight bytes are looked at a time: the
// text of a record is almost all strings.
func stringEnd(b []byte, i int) int {
	i++
	for {
		for i+8 <= len(b) {
			m := stringSpecial(binary.LittleEndian.Uint64(b[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(b) && b[i] >= 0x20 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i = escapeEnd(b, i); i < 0 {
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

// escapeEnd checks the escape whose backslash is at b[i] and returns the index after it, or -1.
func escapeEnd(b []byte, i int) int {
	if i+1 >= len(b) {
		return -1
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
		if i+6 > len(b) {
			return -1
		}
		for _, h := range b[i+2 : i+6] {
			if hexVal(h) < 0 {
				return -1
			}
		}
		return i + 6
	}
	return -1
}

func hexVal(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// numberEnd checks the number that starts at b[i] and returns the index after it, or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digitsEnd(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := digitsEnd(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digitsEnd(b, i); j > i {
			i = j
		} else {
			return -1
		}
	}
	return i
}

func digitsEnd(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// literalEnd checks that lit (true, false or null) is at b[i] and returns the index after it, or -1.
func literalEnd(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// The walkers below assume a valid document (validJSON): they find where things end, and check
// nothing.

// skipString returns the index after the closing quote of the valid string whose opening quote
// is at b[i].
func skipString(b []byte, i int) int {
	i++
	for {
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q, s := x^('"'*lows), x^('\\'*lows)
			if m := ((q - lows) &^ q & highs) | ((s - lows) &^ s & highs); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for b[i] != '"' && b[i] != '\\' {
			i++
		}
		if b[i] == '"' {
			return i + 1
		}
		i += 2 // an escape; a \u's hex digits are skipped as plain bytes
	}
}

// skipValue returns the index after the valid value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(b) && !jsonSpace(b[i]) && b[i] != ',' && b[i] != '}' && b[i] != ']' {
		i++
	}
	return i
}

// members calls fn with each member of the valid object whose '{' is at b[i]: the key, quotes
// included, and where its value starts. It stops early when fn returns false, and returns the
// index after the object's '}' (or where it stopped).
func members(b []byte, i int, fn func(key []byte, value int) bool) int {
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return i + 1
	}
	for {
		k := skipString(b, i)
		v := skipSpace(b, skipSpace(b, k)+1) // past the colon
		if !fn(b[i:k], v) {
			return v
		}
		i = skipSpace(b, skipValue(b, v))
		if b[i] == '}' {
			return i + 1
		}
		i = skipSpace(b, i+1) // past the comma
	}
}

// elements calls fn with where each element of the valid array whose '[' is at b[i] starts,
// until fn returns false.
func elements(b []byte, i int, fn func(value int) bool) {
	i = skipSpace(b, i+1)
	if b[i] == ']' {
		return
	}
	for {
		if !fn(i) {
			return
		}
		i = skipSpace(b, skipValue(b, i))
		if b[i] == ']' {
			return
		}
		i = skipSpace(b, i+1)
	}
}

// appendUnquoted appends the value of the valid JSON string quoted (quotes included) to dst, as
// encoding/json decodes it: invalid UTF-8 and unpaired surrogate escapes become U+FFFD.
func appendUnquoted(dst, quoted []byte) []byte {
	s := quoted[1 : len(quoted)-1]
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			var r rune
			r, i = unescape(s, i)
			dst = utf8.AppendRune(dst, r)
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			dst = utf8.AppendRune(dst, r) // U+FFFD for an invalid byte
			i += size
		}
	}
	return dst
}

// unescape decodes the valid escape at s[i] and returns its rune and the index after it. A high
// surrogate escape followed by a low one decodes as a pair; any other surrogate is U+FFFD.
func unescape(s []byte, i int) (rune, int) {
	switch c := s[i+1]; c {
	case 'b':
		return '\b', i + 2
	case 'f':
		return '\f', i + 2
	case 'n':
		return '\n', i + 2
	case 'r':
		return '\r', i + 2
	case 't':
		return '\t', i + 2
	case 'u':
	default: // '"', '\\', '/'
		return rune(c), i + 2
	}
	r := hex4(s[i+2:])
	if !utf16.IsSurrogate(r) {
		return r, i + 6
	}
	if i+12 <= len(s) && s[i+6] == '\\' && s[i+7] == 'u' {
		if dec := utf16.DecodeRune(r, hex4(s[i+8:])); dec != utf8.RuneError {
			return dec, i + 12
		}
	}
	return utf8.RuneError, i + 6
}

func hex4(s []byte) rune {
	return hexVal(s[0])<<12 | hexVal(s[1])<<8 | hexVal(s[2])<<4 | hexVal(s[3])
}
