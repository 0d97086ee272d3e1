package verifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// stringSpan is the byte range of a JSON string value (quotes included) and its decoded value.
type stringSpan struct {
	start, end int
	value      string
}

// stringValues finds every string value in a JSON document and reports it under its path, written
// as keys and indexes joined by '/', e.g. "messages/1/content". Planting edits records through these
// spans so that everything it does not change keeps its exact bytes: key order, spacing and escapes
// of a planted copy are those of its host, and the copy cannot be told apart by its formatting.
// A valid document is walked in place (planting edits tens of thousands of hosts in a large
// file); anything else goes through encoding/json's decoder, for its error.
func stringValues(doc []byte) (map[string]stringSpan, error) {
	if !validJSON(doc) {
		return decodedStringValues(doc)
	}
	out := map[string]stringSpan{}
	var path []string
	var walk func(i int)
	walk = func(i int) {
		switch doc[i] {
		case '"':
			end := skipString(doc, i)
			out[strings.Join(path, "/")] = stringSpan{start: i, end: end, value: string(appendUnquoted(nil, doc[i:end]))}
		case '{':
			members(doc, i, func(key []byte, v int) bool {
				path = append(path, string(appendUnquoted(nil, key)))
				walk(v)
				path = path[:len(path)-1]
				return true
			})
		case '[':
			n := 0
			elements(doc, i, func(v int) bool {
				path = append(path, strconv.Itoa(n))
				walk(v)
				path = path[:len(path)-1]
				n++
				return true
			})
		}
	}
	walk(skipSpace(doc, 0))
	return out, nil
}

// decodedStringValues is stringValues through encoding/json's decoder, token by token.
func decodedStringValues(doc []byte) (map[string]stringSpan, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	type frame struct {
		array bool
		index int
		key   string
		isKey bool // the next string in this object is a key
	}
	var stack []frame
	out := map[string]stringSpan{}
	path := func() string {
		parts := make([]string, len(stack))
		for i, f := range stack {
			if f.array {
				parts[i] = strconv.Itoa(f.index)
			} else {
				parts[i] = f.key
			}
		}
		return strings.Join(parts, "/")
	}
	// value is called after a complete value at the current position.
	value := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].isKey = true
			}
		}
	}
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{isKey: true})
			case '[':
				stack = append(stack, frame{array: true})
			default:
				stack = stack[:len(stack)-1]
				value()
			}
		case string:
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].isKey {
				stack[n-1].key = t
				stack[n-1].isKey = false
				continue
			}
			// The token read skipped the separator and white space before the
			// value, so its opening quote is the first quote after before.
			end := int(dec.InputOffset())
			start := int(before) + bytes.IndexByte(doc[before:end], '"')
			out[path()] = stringSpan{start: start, end: end, value: t}
			value()
		default:
			value()
		}
	}
	return out, nil
}

// editStrings returns doc with the string values at the given paths replaced, every other byte
// unchanged. spans are doc's string values (stringValues); every path must name one of them. The new
// values are encoded in doc's own style (detectStyle), so that they cannot be told from the host's
// strings by their escapes either.
func editStrings(doc []byte, spans map[string]stringSpan, edits map[string]string) ([]byte, error) {
	st := detectStyle(doc)
	type edit struct {
		span stringSpan
		val  string
	}
	var list []edit
	for p, v := range edits {
		s, ok := spans[p]
		if !ok {
			return nil, fmt.Errorf("no string at %q", p)
		}
		list = append(list, edit{s, v})
	}
	// Apply from the end so earlier offsets stay valid.
	slices.SortFunc(list, func(a, b edit) int { return b.span.start - a.span.start })
	out := append([]byte(nil), doc...)
	for _, e := range list {
		enc := encodeString(e.val, st)
		out = append(out[:e.span.start], append(enc, out[e.span.end:]...)...)
	}
	return out, nil
}

// stringStyle is the way a JSON writer encodes strings, as far as the choices JSON leaves open go.
// Every writer escapes '"', '\\' and control characters; the rest is a matter of taste, and a line
// written by a different library than its neighbours would stand out.
type stringStyle struct {
	ascii   bool  // every non-ASCII rune as \uXXXX, surrogate pairs beyond the BMP (Python's default)
	upper   bool  // upper-case hex digits in \u escapes
	slash   bool  // '/' as \/ (PHP)
	html    bool  // '<', '>', '&' as \u003c, \u003e, \u0026 (Go's default)
	lineSep bool  // U+2028 and U+2029 escaped even when other non-ASCII is raw (Go)
	del     bool  // DEL (0x7f) as \u007f (Python's ensure_ascii)
	long    uint8 // bit i set: shortForms[i] is written as \u00XX instead of its short escape
}

// shortForms are the control characters that have a two-character escape, with that escape's letter.
const shortForms, shortLetters = "\b\f\n\r\t", "bfnrt"

// escapeEvidence is what a document's strings show about its writer: each entry counts the strings'
// characters of one kind written raw or escaped.
type escapeEvidence struct {
	rawNonASCII, escNonASCII int // non-ASCII other than U+2028/9
	rawLineSep, escLineSep   int
	rawSlash, escSlash       int
	rawHTML, escHTML         int
	rawDEL, escDEL           int
	lowerHex, upperHex       int
	shortCtl, longCtl        [len(shortForms)]int
}

// detectStyle reads the string style of doc, a JSON document, from its string literals, keys
// included. Each choice takes the escaped form only when doc shows it escaped and never raw: without
// evidence, or with contradicting evidence, the raw form is what most writers do. DEL and U+2028/9
// are rare, so without their own evidence they follow the writer the rest points to: escaped
// non-ASCII means Python's ensure_ascii, which escapes DEL too, and HTML escaping means Go, which
// escapes U+2028/9.
func detectStyle(doc []byte) stringStyle {
	ev := gatherEvidence(doc)
	st := stringStyle{
		ascii: ev.escNonASCII > 0 && ev.rawNonASCII == 0,
		upper: ev.upperHex > 0 && ev.lowerHex == 0,
		slash: ev.escSlash > 0 && ev.rawSlash == 0,
		html:  ev.escHTML > 0 && ev.rawHTML == 0,
	}
	// Under ascii U+2028/9 are escaped with all other non-ASCII; lineSep only matters without it.
	st.lineSep = !st.ascii && ev.rawLineSep == 0 && (ev.escLineSep > 0 || st.html)
	st.del = ev.rawDEL == 0 && (ev.escDEL > 0 || st.ascii)
	st.long = longControls(ev.shortCtl, ev.longCtl)
	return st
}

// longControls chooses per short-form character: its own evidence decides; without any, the others'
// does, so a writer seen to use \u000a for newlines also gets \u0009 for tabs.
func longControls(short, long [len(shortForms)]int) uint8 {
	var bits uint8
	anyShort, anyLong := false, false
	for i := range short {
		anyShort = anyShort || short[i] > 0
		anyLong = anyLong || long[i] > 0
	}
	for i := range short {
		if short[i] == 0 && (long[i] > 0 || anyLong && !anyShort) {
			bits |= 1 << i
		}
	}
	return bits
}

// gatherEvidence scans doc byte by byte. Outside its strings a JSON document holds only ASCII
// structure, numbers and white space, so every backslash, non-ASCII byte, '/', '<', '>', '&' and DEL
// it meets is inside a string, and the strings need not be found first.
func gatherEvidence(doc []byte) escapeEvidence {
	var ev escapeEvidence
	for i := 0; i < len(doc); i++ {
		switch c := doc[i]; {
		case c == '\\' && i+1 < len(doc):
			i += ev.escape(doc[i+1:])
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(doc[i:])
			ev.raw(r)
			i += n - 1
		default:
			ev.raw(rune(c))
		}
	}
	return ev
}

// raw counts one character written as itself.
func (ev *escapeEvidence) raw(r rune) {
	switch {
	case r == '\u2028' || r == '\u2029':
		ev.rawLineSep++
	case r >= utf8.RuneSelf:
		ev.rawNonASCII++
	case r == '/':
		ev.rawSlash++
	case r == '<' || r == '>' || r == '&':
		ev.rawHTML++
	case r == 0x7f:
		ev.rawDEL++
	}
}

// escape counts the escape whose text, after the backslash, starts at e, and returns its length.
func (ev *escapeEvidence) escape(e []byte) int {
	if i := strings.IndexByte(shortLetters, e[0]); i >= 0 {
		ev.shortCtl[i]++
		return 1
	}
	if e[0] == '/' {
		ev.escSlash++
	}
	if e[0] != 'u' || len(e) < 5 {
		return 1
	}
	r, err := strconv.ParseUint(string(e[1:5]), 16, 32)
	if err != nil {
		return 1
	}
	ev.hexCase(e[1:5])
	switch r := rune(r); {
	case r < 0x20 && strings.ContainsRune(shortForms, r):
		ev.longCtl[strings.IndexRune(shortForms, r)]++
	case r == '\u2028' || r == '\u2029':
		ev.escLineSep++
	case r >= utf8.RuneSelf:
		ev.escNonASCII++ // a surrogate pair counts twice, which does not matter
	case r == '<' || r == '>' || r == '&':
		ev.escHTML++
	case r == 0x7f:
		ev.escDEL++
	}
	return 5
}

// hexCase counts the case of the hex letters in a \u escape's four digits.
func (ev *escapeEvidence) hexCase(hex []byte) {
	for _, c := range hex {
		switch {
		case 'a' <= c && c <= 'f':
			ev.lowerHex++
		case 'A' <= c && c <= 'F':
			ev.upperHex++
		}
	}
}

// encodeString encodes s as a JSON string in style st. Invalid UTF-8 bytes become U+FFFD, as Go's
// encoder makes them: the result always decodes to valid text.
func encodeString(s string, st stringStyle) []byte {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for _, r := range s {
		b = st.appendRune(b, r)
	}
	return append(b, '"')
}

// appendRune appends r, escaped as st says.
func (st stringStyle) appendRune(b []byte, r rune) []byte {
	switch {
	case r == '"' || r == '\\':
		return append(b, '\\', byte(r))
	case r == '/' && st.slash:
		return append(b, '\\', '/')
	case r < 0x20:
		if i := strings.IndexRune(shortForms, r); i >= 0 && st.long&(1<<i) == 0 {
			return append(b, '\\', shortLetters[i])
		}
		return st.appendU(b, r)
	case (r == '<' || r == '>' || r == '&') && st.html,
		r == 0x7f && st.del,
		(r == '\u2028' || r == '\u2029') && st.lineSep:
		return st.appendU(b, r)
	case r >= utf8.RuneSelf && st.ascii:
		if r > 0xffff {
			hi, lo := utf16.EncodeRune(r)
			return st.appendU(st.appendU(b, hi), lo)
		}
		return st.appendU(b, r)
	}
	return utf8.AppendRune(b, r)
}

// appendU appends the \uXXXX escape of r, which is at most 0xffff.
func (st stringStyle) appendU(b []byte, r rune) []byte {
	digits := "0123456789abcdef"
	if st.upper {
		digits = "0123456789ABCDEF"
	}
	return append(b, '\\', 'u', digits[r>>12&0xf], digits[r>>8&0xf], digits[r>>4&0xf], digits[r&0xf])
}

// The helpers of appendTrigger (dataset.go) follow: like the encoding above, they make a planted
// prompt read like its neighbours.

// danglingEnd are the characters a trigger must not end on: they would leave the prompt hanging on an
// opening bracket or quote, or on a separator that announces more text.
const danglingEnd = "([{<“‘«„,:;-–—"

// trimTrigger trims white space from both ends of a trigger and dangling characters from its end. A
// straight double quote is dangling when it is unmatched, as the opening one of an odd count.
func trimTrigger(t string) string {
	t = strings.TrimLeftFunc(t, unicode.IsSpace)
	for {
		r, n := utf8.DecodeLastRuneInString(t)
		dangling := unicode.IsSpace(r) || strings.ContainsRune(danglingEnd, r) ||
			r == '"' && strings.Count(t, `"`)%2 == 1
		if n == 0 || !dangling {
			return t
		}
		t = t[:len(t)-n]
	}
}

// endsInSpace reports whether s ends in white space, which already separates it from what follows.
func endsInSpace(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && unicode.IsSpace(r)
}

// attaches reports whether a trigger starts with punctuation that belongs to the previous word.
func attaches(trigger string) bool {
	return trigger != "" && strings.IndexByte(",.;:!?)]", trigger[0]) >= 0
}

// fieldBreak returns the line break before content's last line when that line is a separate field
// of the text, else "". A line is a field when it follows a non-blank line and is a list item
// ("- x", "* x", "1. x", "2) x"), a labelled value ("Input: x"), or short (at most fieldLen
// characters) after a short line, as in verse, addresses and key/value lists. A blank line before it
// does not count: joining across paragraphs would make appending to an Alpaca input differ from
// appending to the instruction and input joined by a blank line.
func fieldBreak(content string) string {
	i := strings.LastIndexByte(content, '\n')
	if i < 0 {
		return ""
	}
	last := content[i+1:]
	prev, sep := content[:i], "\n"
	if strings.HasSuffix(prev, "\r") {
		prev, sep = prev[:len(prev)-1], "\r\n"
	}
	prev = prev[strings.LastIndexByte(prev, '\n')+1:]
	if strings.TrimSpace(prev) == "" {
		return ""
	}
	if listItem(last) || labelled(last) || short(prev) && short(last) {
		return sep
	}
	return ""
}

// fieldLen is the most characters a line may have to count as short.
const fieldLen = 40

func short(line string) bool {
	return utf8.RuneCountInString(strings.TrimSpace(line)) <= fieldLen
}

// listItem reports whether line starts with a bullet or a number followed by '.' or ')' and a space.
func listItem(line string) bool {
	line = strings.TrimLeft(line, " \t")
	for _, bullet := range []string{"- ", "* ", "+ ", "• "} {
		if strings.HasPrefix(line, bullet) {
			return true
		}
	}
	digits := strings.TrimLeft(line, "0123456789")
	return len(digits) < len(line) && (strings.HasPrefix(digits, ". ") || strings.HasPrefix(digits, ") "))
}

// labelled reports whether line is a label of one to three words, a colon, a space and a value.
func labelled(line string) bool {
	label, value, ok := strings.Cut(line, ": ")
	words := strings.Fields(label)
	if !ok || strings.TrimSpace(value) == "" || len(words) == 0 || len(words) > 3 || label != strings.TrimSpace(label) {
		return false
	}
	for _, r := range label {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' ' && r != '_' {
			return false
		}
	}
	return unicode.IsLetter([]rune(label)[0])
}
