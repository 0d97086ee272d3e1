package verifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
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
func stringValues(doc []byte) (map[string]stringSpan, error) {
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
// unchanged. spans are doc's string values (stringValues); every path must name one of them.
func editStrings(doc []byte, spans map[string]stringSpan, edits map[string]string) ([]byte, error) {
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
		enc, err := marshalString(e.val)
		if err != nil {
			return nil, err
		}
		out = append(out[:e.span.start], append(enc, out[e.span.end:]...)...)
	}
	return out, nil
}

// marshalString encodes s as a JSON string without HTML escaping, as most dataset writers do.
func marshalString(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
