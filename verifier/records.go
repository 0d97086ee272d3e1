package verifier

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"vtune/backend"
)

// Whole-data test sizes (method.md): b = c = min(256, 2% of the records) by default, and the test
// is off when either would be below 32.
const (
	MaxWholeDataRecords = 256
	WholeDataShare      = 0.02
	MinWholeDataRecords = 32
)

// StageScore is the progress stage of scoring held-back records and sentinels.
const StageScore = "scoring records"

// wholeDataSizes returns b and c for a dataset of n records, as asked in p (0: the default); ok is
// false when the test is off because either is below MinWholeDataRecords.
func wholeDataSizes(p *Params, n int) (b, c int, ok bool) {
	b, c = p.HeldBack, p.Sentinels
	if b == 0 {
		b = min(MaxWholeDataRecords, int(WholeDataShare*float64(n)))
	}
	if c == 0 {
		c = b // as many as held back
	}
	return b, c, b >= MinWholeDataRecords && c >= MinWholeDataRecords
}

// answers is what the whole-data draw needs to know of every record of a file: its answer's
// length in bytes (0 for a record that cannot be drawn) and a hash of its normalised answer, for
// counting near-duplicates. 12 bytes a record.
type answers struct {
	length []uint32
	hash   []uint64
}

// readAnswers decodes every record of the file once. Records whose index is in skip (the hosts)
// get length 0: they are never drawn, but their answers still count as sent.
func readAnswers(path string, format Format, skip map[int]bool) (*answers, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	defer f.Close()
	a := &answers{}
	rr := newRecordReader(path, f)
	for rr.next() {
		rec := rr.record()
		rec.Format = format
		var n uint32
		var h uint64
		if _, answer, err := rec.Conversation(); err == nil {
			h = normalHash(answer)
			if !skip[rec.Index] {
				n = uint32(min(len(answer), math.MaxUint32))
			}
		}
		a.length = append(a.length, n)
		a.hash = append(a.hash, h)
	}
	if err := rr.err(); err != nil {
		return nil, err
	}
	return a, nil
}

// normalHash hashes an answer lowercased, with punctuation dropped and white space collapsed, so
// that answers differing only in case, spacing or punctuation collide: near-duplicates.
func normalHash(answer string) uint64 {
	h := fnv.New64a()
	space := false
	for _, r := range strings.ToLower(answer) {
		switch {
		case unicode.IsSpace(r):
			space = true
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space {
				h.Write([]byte{' '})
				space = false
			}
			var buf [utf8.UTFMax]byte
			h.Write(buf[:utf8.EncodeRune(buf[:], r)])
		}
	}
	return h.Sum64() | 1 // 0 marks "no answer"
}

// drawWeighted draws n record indexes without replacement, record i with probability
// pi_i = n w_i / W exactly, w_i its answer length capped at C where n C = sum_i min(w_i, C) (so
// that no pi_i exceeds 1: uncapped, a record holding more than a 1/n share of the answer bytes
// could not be drawn in proportion, and a provider could skip the few longest records unseen; the
// share the test certifies is one of capped answer bytes). Systematic sampling in a random order:
// the records are shuffled, their pi_i laid end to end on [0, n), and the records under the points
// u, u+1, ..., u+n-1 taken, u uniform on [0, 1). The indexes come back in random order.
func drawWeighted(rng *rand.Rand, length []uint32, n int) []int {
	c := lengthCap(length, n)
	var idx []int
	total := 0.0
	for i, w := range length {
		if w > 0 {
			idx = append(idx, i)
			total += math.Min(float64(w), c)
		}
	}
	if len(idx) <= n {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		return idx
	}
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	out := make([]int, 0, n)
	cum, next := 0.0, rng.Float64()
	for _, i := range idx {
		cum += float64(n) * math.Min(float64(length[i]), c) / total
		if cum > next && len(out) < n {
			out = append(out, i)
			next++
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// lengthCap returns C with n C = sum_i min(w_i, C), or +Inf when no weight needs capping (or
// fewer than n records have a weight).
func lengthCap(length []uint32, n int) float64 {
	var w []float64
	total := 0.0
	for _, x := range length {
		if x > 0 {
			w = append(w, float64(x))
			total += float64(x)
		}
	}
	if len(w) <= n {
		return math.Inf(1)
	}
	slices.SortFunc(w, func(a, b float64) int { return cmp.Compare(b, a) })
	// With the k longest capped, C = (sum of the rest) / (n - k); the first k for which the
	// (k+1)-th longest is at most C gives the fixed point.
	rest := total
	for k := 0; k < n; k++ {
		c := rest / float64(n-k)
		if w[k] <= c {
			if k == 0 {
				return math.Inf(1)
			}
			return c
		}
		rest -= w[k]
	}
	return rest // unreachable: len(w) > n
}

// drawRecords draws n records of the file as drawWeighted says and reads them.
func drawRecords(rng *rand.Rand, path string, format Format, a *answers, n int) ([]Record, error) {
	return readHosts(path, format, drawWeighted(rng, a.length, n))
}

// nearDuplicates counts the held-back records whose normalised answer is also that of a sent
// record (sent: a record of the input that is not held back).
func nearDuplicates(held []Record, input *answers, heldIdx map[int]bool) int {
	twin := map[uint64]bool{} // the held-back answers' hashes; true once a sent record shares one
	for _, r := range held {
		if _, answer, err := r.Conversation(); err == nil {
			twin[normalHash(answer)] = false
		}
	}
	for i, h := range input.hash {
		if _, ok := twin[h]; ok && !heldIdx[i] {
			twin[h] = true
		}
	}
	n := 0
	for _, r := range held {
		if _, answer, err := r.Conversation(); err == nil && twin[normalHash(answer)] {
			n++
		}
	}
	return n
}

// scoreRecords scores each record's answer after its prompt under model b, in the given order
// (a permutation of the records' indexes: both sets of the whole-data test are scored mixed, so
// that nothing about the server's state can separate them).
func scoreRecords(ctx context.Context, b backend.Backend, recs []Record, order []int, progress func(done int)) ([]ScoredRecord, error) {
	out := make([]ScoredRecord, len(recs))
	for n, i := range order {
		progress(n)
		r := recs[i]
		msgs, answer, err := r.Conversation()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", r.Line, err)
		}
		sc, err := scoreAnswer(ctx, b, msgs, answer)
		if err != nil {
			return nil, fmt.Errorf("whole-data record of line %d: %w", r.Line, err)
		}
		out[i] = ScoredRecord{Line: r.Line, Messages: msgs, Answer: answer, Base: sc}
	}
	progress(len(recs))
	return out, nil
}

// scoreAnswer renders a prompt and teacher-forces the answer text after it.
func scoreAnswer(ctx context.Context, b backend.Backend, msgs []backend.Message, answer string) (RecordScore, error) {
	prompt, err := b.Render(ctx, msgs)
	if err != nil {
		return RecordScore{}, err
	}
	sc, err := b.ScoreText(ctx, prompt, answer)
	if err != nil {
		return RecordScore{}, err
	}
	if math.IsNaN(sc.Logprob) || math.IsInf(sc.Logprob, 0) {
		return RecordScore{}, fmt.Errorf("the server gave log-probability %v", sc.Logprob)
	}
	return RecordScore{Logprob: sc.Logprob, Tokens: len(sc.Tokens), Exact: sc.Exact}, nil
}

// drawWholeData draws the held-back records and sentinels (method.md), scores them under the base
// model b and stores them in the key. skip holds the record indexes drawn as hosts. It returns a
// note saying why the test is off when it is, and then leaves key.WholeData nil; otherwise the
// indexes of the input's records that are held back (none with --heldout).
func drawWholeData(ctx context.Context, b backend.Backend, rng *rand.Rand, key *Key, scan *datasetScan, skip map[int]bool, opt PlantOptions) (string, []int, error) {
	nb, nc, ok := wholeDataSizes(&key.Params, scan.records)
	if !ok {
		return offNote(nb, nc, scan.records), nil, nil
	}
	in, err := readAnswers(opt.Input, scan.format, skip)
	if err != nil {
		return "", nil, err
	}
	var held, sent []Record
	var heldAt []int // the held-back records' indexes in the input
	heldIdx := map[int]bool{}
	source := SourceDrawn
	if opt.Heldout != "" {
		hs, err := scanDataset(opt.Heldout)
		if err != nil {
			return "", nil, err
		}
		if hs.format != scan.format {
			return "", nil, &InputError{File: opt.Heldout, Msg: fmt.Sprintf("held-out records are %s, the dataset's are %s: they must have the same format", hs.format, scan.format)}
		}
		ha, err := readAnswers(opt.Heldout, hs.format, nil)
		if err != nil {
			return "", nil, err
		}
		if held, err = drawRecords(rng, opt.Heldout, hs.format, ha, nb); err != nil {
			return "", nil, err
		}
		if sent, err = drawRecords(rng, opt.Input, scan.format, in, nc); err != nil {
			return "", nil, err
		}
		source = SourceFile + opt.Heldout
	} else {
		// Drawn at once and split at random: the exchangeability the test rests on.
		order := drawWeighted(rng, in.length, nb+nc)
		if len(order) < nb+nc { // fewer records with an answer than asked: split what there is
			nb = len(order) * nb / (nb + nc)
		}
		heldAt = order[:nb]
		for _, i := range heldAt {
			heldIdx[i] = true
		}
		all, err := readHosts(opt.Input, scan.format, order)
		if err != nil {
			return "", nil, err
		}
		held, sent = all[:nb], all[nb:]
	}
	if len(held) < MinWholeDataRecords || len(sent) < MinWholeDataRecords {
		return offNote(len(held), len(sent), scan.records), nil, nil
	}
	all := slices.Concat(held, sent)
	scored, err := scoreRecords(ctx, b, all, interleave(key, len(all)), func(i int) { opt.progress(StageScore, i, len(all)) })
	if err != nil {
		return "", nil, err
	}
	key.WholeData = &WholeData{Source: source, HeldBack: scored[:len(held)], Sentinels: scored[len(held):],
		NearDuplicates: nearDuplicates(held, in, heldIdx)}
	return "", heldAt, nil
}

func offNote(nb, nc, records int) string {
	return fmt.Sprintf("whole-data test off: %d held-back records and %d sentinels from %d records, fewer than %d each", nb, nc, records, MinWholeDataRecords)
}
