package verifier

import (
	"bytes"
	"hash/maphash"
	"math"
	"unicode"
	"unicode/utf8"
)

// The whole-data draw weighs every record by its answer's length, and counts near-duplicates by a
// hash of its normalised answer (records.go). Decoding each record with encoding/json to get its
// answer was most of planting's time on a large file, so the scan reads answers in place for the
// layouts that almost all records have, and leaves the rest to Conversation.

// answerReader finds records' answers; its buffer holds an answer that needed unescaping.
type answerReader struct {
	buf []byte
}

// answer returns what Conversation returns as the answer of the record, and false when
// Conversation refuses the record. fs is the walk over its members (detectFormat). The answer is
// valid until the next call.
func (ar *answerReader) answer(rec Record, fs *recordFields) ([]byte, bool) {
	span, has, sure := answerSpan(rec.Raw, rec.Format, fs)
	if !sure {
		_, a, err := rec.Conversation()
		ar.buf = append(ar.buf[:0], a...)
		return ar.buf, err == nil
	}
	if !has || span[0] == span[1] {
		return nil, has
	}
	quoted := rec.Raw[span[0]:span[1]]
	if s := quoted[1 : len(quoted)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return s, true
	}
	ar.buf = appendUnquoted(ar.buf[:0], quoted)
	return ar.buf, true
}

// answerSpan finds the answer of a valid record in place: the span of its string, quotes
// included (empty for an absent value, which decodes to ""), and whether Conversation would
// give one. sure is false when the record is laid out in a way that only a full decode reads
// right (a key encoding/json would match in another spelling, a field given twice or not a
// string, a ShareGPT record); the caller then asks Conversation.
func answerSpan(b []byte, f Format, fs *recordFields) (span [2]int, has, sure bool) {
	if fs.odd {
		return span, false, false
	}
	switch f {
	case Chat:
		return chatAnswer(b, fs)
	case Alpaca:
		return stringFields(b, fs, 1<<fieldInstruction|1<<fieldInput|1<<fieldOutput, fieldOutput)
	case PromptCompletion:
		return stringFields(b, fs, 1<<fieldPrompt|1<<fieldCompletion, fieldCompletion)
	}
	return span, false, false
}

// stringFields reads a record that decodes into a struct of string fields (a set of fields):
// each present field must be a string, given once in that spelling; the answer is answer's.
func stringFields(b []byte, fs *recordFields, fields fieldSet, answer field) (span [2]int, has, sure bool) {
	if fs.folded&fields != 0 || fs.twice&fields != 0 {
		return span, false, false
	}
	for f := range numFields {
		if fields.has(f) && fs.keys.has(f) && b[fs.value[f]] != '"' {
			return span, false, false
		}
	}
	if fs.keys.has(answer) {
		v := int(fs.value[answer])
		span = [2]int{v, skipString(b, v)}
	}
	return span, true, true
}

// chatAnswer reads a chat record's messages: the answer is the last message's content when its
// role is "assistant" and an earlier message's is "user", as Conversation says. Every message
// must be an object whose role and content, when present, are strings given once, the role
// without escapes.
func chatAnswer(b []byte, fs *recordFields) (span [2]int, has, sure bool) {
	span, _, has, sure = chatTurns(b, fs)
	return span, has, sure
}

// chatTurns is chatAnswer, also giving the span of the last user turn's content (empty for an
// absent one, which decodes to "").
func chatTurns(b []byte, fs *recordFields) (span, user [2]int, has, sure bool) {
	if fs.folded.has(fieldMessages) || fs.twice.has(fieldMessages) {
		return span, user, false, false
	}
	i := int(fs.value[fieldMessages])
	if b[i] != '[' {
		return span, user, false, false
	}
	n, hasUser := 0, false
	var role []byte
	for i = skipSpace(b, i+1); b[i] != ']'; {
		if b[i] != '{' {
			return span, user, false, false
		}
		if n > 0 && string(role) == "user" {
			hasUser, user = true, span // a user turn before this one
		}
		n++
		if role, span, i = chatMessage(b, i); i < 0 {
			return span, user, false, false
		}
		if i = skipSpace(b, i); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	if n < 2 || string(role) != "assistant" || !hasUser {
		return [2]int{}, [2]int{}, false, true
	}
	return span, user, true, true
}

// UserAndAnswer returns what Conversation gives of the record as the content of the prompt's last
// user turn ("" when it has none) and as the answer, and false when Conversation refuses the
// record. The layouts almost all records have are read in place, as planting reads answers
// (answerSpan), and only the rest are decoded by Conversation: for a scan of every record
// (the audit), decoding is most of the cost.
func (r Record) UserAndAnswer() (user, answer string, ok bool) {
	var fs recordFields
	_, err := detectFormat(r.Raw, &fs)
	return r.userAndAnswer(&fs, err == nil)
}

// userAndAnswer is UserAndAnswer, given what validating the record found (valid: the record is
// valid JSON, and fs holds its top-level members).
func (r Record) userAndAnswer(fs *recordFields, valid bool) (user, answer string, ok bool) {
	if valid {
		a, u, has, sure := turnSpans(r.Raw, r.Format, fs)
		if sure {
			if !has {
				return "", "", false
			}
			var buf []byte
			if r.Format == Alpaca {
				if input := unquoted(r.Raw, u[1], &buf); input != "" {
					return unquoted(r.Raw, u[0], &buf) + "\n\n" + input, unquoted(r.Raw, a, &buf), true
				}
			}
			return unquoted(r.Raw, u[0], &buf), unquoted(r.Raw, a, &buf), true
		}
	}
	prompt, answer, err := r.Conversation()
	if err != nil {
		return "", "", false
	}
	if i := lastUser(prompt); i >= 0 {
		user = prompt[i].Content
	}
	return user, answer, true
}

// turnSpans is answerSpan, also giving the spans of the user text: the last user turn's content
// for chat, the prompt, or Alpaca's instruction and input, which Conversation joins.
func turnSpans(b []byte, f Format, fs *recordFields) (answer [2]int, user [2][2]int, has, sure bool) {
	if fs.odd {
		return answer, user, false, false
	}
	str := func(f field) [2]int {
		if !fs.keys.has(f) {
			return [2]int{}
		}
		v := int(fs.value[f])
		return [2]int{v, skipString(b, v)}
	}
	switch f {
	case Chat:
		answer, user[0], has, sure = chatTurns(b, fs)
	case Alpaca:
		if answer, has, sure = answerSpan(b, f, fs); sure {
			user = [2][2]int{str(fieldInstruction), str(fieldInput)}
		}
	case PromptCompletion:
		if answer, has, sure = answerSpan(b, f, fs); sure {
			user[0] = str(fieldPrompt)
		}
	}
	return answer, user, has, sure
}

// unquoted decodes the JSON string at span of b ("" for an empty span); buf is scratch space.
func unquoted(b []byte, span [2]int, buf *[]byte) string {
	if span[0] == span[1] {
		return ""
	}
	quoted := b[span[0]:span[1]]
	if s := quoted[1 : len(quoted)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
		return string(s)
	}
	*buf = appendUnquoted((*buf)[:0], quoted)
	return string(*buf)
}

// chatMessage reads the valid message object at b[i]: its role, the span of its content, and the
// index after it; -1 when the message is not one chatAnswer is sure of.
func chatMessage(b []byte, i int) (role []byte, content [2]int, end int) {
	seen := 0
	for i = skipSpace(b, i+1); b[i] != '}'; {
		k := i
		i = skipString(b, i)
		key := b[k+1 : i-1]
		v := skipSpace(b, skipSpace(b, i)+1) // past the colon
		bit := 0
		switch {
		case string(key) == "role":
			bit = 1
		case string(key) == "content":
			bit = 2
		case !plainASCII(key) || bytes.EqualFold(key, []byte("role")) || bytes.EqualFold(key, []byte("content")):
			return nil, content, -1
		}
		if bit == 0 {
			i = skipValue(b, v)
		} else {
			if seen&bit != 0 || b[v] != '"' {
				return nil, content, -1
			}
			seen |= bit
			i = skipString(b, v)
			if bit == 2 {
				content = [2]int{v, i}
			} else if role = b[v+1 : i-1]; bytes.IndexByte(role, '\\') >= 0 {
				return nil, content, -1
			}
		}
		if i = skipSpace(b, i); b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return role, content, i + 1
}

// hashSeed seeds the answer hashes: they are compared within one run only.
var hashSeed = maphash.MakeSeed()

// normalHash hashes an answer lowercased, with punctuation dropped and white space collapsed, so
// that answers differing only in case, spacing or punctuation collide: near-duplicates. It is
// never 0, which marks "no answer". buf is scratch space for the normalised text; the grown
// buffer is returned, holding that text.
func normalHash(answer, buf []byte) (uint64, []byte) {
	// ASCII text normalises to at most its own length: written by index, without branches on
	// the bytes (which letters, spaces and punctuation would mispredict), up to the first other
	// byte. Each step may write one byte past what it keeps, hence the spare byte.
	if cap(buf) < len(answer)+1 {
		buf = make([]byte, 0, 2*len(answer)+1)
	}
	out := buf[:len(answer)+1]
	j, space, i := 0, 0, 0
	for ; i < len(answer) && answer[i] < utf8.RuneSelf; i++ {
		c := answer[i]
		keep := int(asciiKeep[c])
		out[j] = ' '
		j += space & keep
		out[j] = asciiLower[c]
		j += keep
		space = (space | int(asciiSpace[c])) &^ keep
	}
	buf = out[:j]
	pending := space == 1
	for i < len(answer) {
		r, size := utf8.DecodeRune(answer[i:])
		i += size
		r = unicode.ToLower(r)
		switch {
		case unicode.IsSpace(r):
			pending = true
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if pending {
				buf = append(buf, ' ')
				pending = false
			}
			buf = utf8.AppendRune(buf, r)
		}
	}
	return maphash.Bytes(hashSeed, buf) | 1, buf
}

// normalHash's tables for ASCII: a byte's lower case, 1 for a letter or digit (kept), 1 for white
// space (unicode.IsSpace).
var asciiLower, asciiKeep, asciiSpace = func() (lower, keep, space [utf8.RuneSelf]byte) {
	for c := range lower {
		r := unicode.ToLower(rune(c))
		lower[c] = byte(r)
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			keep[c] = 1
		}
		if unicode.IsSpace(r) {
			space[c] = 1
		}
	}
	return
}()

// answerSketch is a 16-bit hash of an answer's letters and digits, lowercased, in any order: two
// answers with the same normalised form (normalHash) have the same sketch, so the sketch picks the
// candidates among which normalHash finds the near-duplicates. A sum of one random-looking weight
// a kept character costs about a cycle a byte, where normalising the text costs several. It is
// never 0, which marks "no answer": a sum whose top 16 bits are 0 gets 1, so that the sketch
// takes 65,535 values and a sent record is a candidate by chance half as often as with its low
// bit forced to 1.
func answerSketch(answer []byte) uint16 {
	var h uint64
	for i := 0; i < len(answer); {
		if c := answer[i]; c < utf8.RuneSelf {
			h += sketchASCII[c]
			i++
			continue
		}
		r, size := utf8.DecodeRune(answer[i:])
		i += size
		if r = unicode.ToLower(r); unicode.IsLetter(r) || unicode.IsDigit(r) {
			h += sketchWeight(r)
		}
	}
	return max(uint16(h>>48), 1)
}

// sketchWeight is a kept character's weight in answerSketch: splitmix64's finaliser of the rune.
func sketchWeight(r rune) uint64 {
	z := uint64(r) + 0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// sketchASCII is answerSketch's weight of each ASCII byte: that of its lower case when it is a
// letter or a digit, else 0.
var sketchASCII = func() (t [utf8.RuneSelf]uint64) {
	for c := range t {
		if asciiKeep[c] == 1 {
			t[c] = sketchWeight(rune(asciiLower[c]))
		}
	}
	return
}()

// answers is what the whole-data draw needs to know of every record of a file: its answer's
// length in bytes (0 for a record that cannot be drawn) and its answerSketch (0 for none), which
// picks the candidates for near-duplicates (dupCheck). 4 bytes a record, in
// columns that grow without copying: for a file of millions of records, these and the draw's
// shuffle are most of what planting holds in memory.
type answers struct {
	length column[uint16] // the length, or maxShort for one at least that long, which long holds
	long   map[int]uint32
	hash   column[uint16]
}

// maxShort marks a length kept in answers.long: answers of 64 KiB and more are rare.
const maxShort = math.MaxUint16

func (a *answers) len() int { return a.length.len() }

// at returns record i's answer length: answers serve as drawWeighted's weights.
func (a *answers) at(i int) uint32 {
	if n := a.length.at(i); n < maxShort {
		return uint32(n)
	}
	return a.long[i]
}

// exclude sets record i's length to 0: it is never drawn.
func (a *answers) exclude(i int) {
	a.length.set(i, 0)
	delete(a.long, i)
}

// answerBatch is the answers of a run of records, for answers, and, for a chunk of JSON Lines,
// where the records start in it and on which line after its first, for the recordIndex.
type answerBatch struct {
	length []uint32
	hash   []uint16
	start  []uint32
	line   []int32
}

// add appends a record's answer.
func (a *answerBatch) add(answer []byte, has bool) {
	var n uint32
	var h uint16
	if has {
		n, h = uint32(min(uint64(len(answer)), math.MaxUint32)), answerSketch(answer)
	}
	a.length = append(a.length, n)
	a.hash = append(a.hash, h)
}

// appendBatch appends a batch's records.
func (a *answers) appendBatch(b *answerBatch) {
	for i, n := range b.length {
		if n >= maxShort {
			if a.long == nil {
				a.long = map[int]uint32{}
			}
			a.long[a.length.len()] = n
			n = maxShort
		}
		a.length.append(uint16(n))
		a.hash.append(b.hash[i])
	}
}

// columnPage is the number of values in a page of a column.
const columnPage = 1 << 16

// column is a growing array kept in fixed-size pages: a slice grown by append copies itself,
// holding twice its size at that moment, and one of millions of values would need megabytes in
// one piece, which a heap full of freed smaller pieces may not have. Pages fit in what earlier
// steps freed.
type column[T uint16 | uint32] struct {
	pages [][]T
	n     int
}

func (c *column[T]) append(v T) {
	if c.n%columnPage == 0 {
		c.pages = append(c.pages, make([]T, columnPage))
	}
	c.pages[c.n/columnPage][c.n%columnPage] = v
	c.n++
}

func (c *column[T]) len() int       { return c.n }
func (c *column[T]) at(i int) T     { return c.pages[i/columnPage][i%columnPage] }
func (c *column[T]) set(i int, v T) { c.pages[i/columnPage][i%columnPage] = v }

func (c *column[T]) swap(i, j int) {
	pi, pj := &c.pages[i/columnPage][i%columnPage], &c.pages[j/columnPage][j%columnPage]
	*pi, *pj = *pj, *pi
}
