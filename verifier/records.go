package verifier

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

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

// weights are the records' answer lengths, by record index.
type weights interface {
	len() int
	at(i int) uint32
}

// lengths are weights in a slice.
type lengths []uint32

func (l lengths) len() int        { return len(l) }
func (l lengths) at(i int) uint32 { return l[i] }

// drawWeighted draws n record indexes without replacement, record i with probability
// pi_i = n w_i / W exactly, w_i its answer length capped at C where n C = sum_i min(w_i, C) (so
// that no pi_i exceeds 1: uncapped, a record holding more than a 1/n share of the answer bytes
// could not be drawn in proportion, and a provider could skip the few longest records unseen; the
// share the test certifies is one of capped answer bytes). Systematic sampling in a random order:
// the records are shuffled, their pi_i laid end to end on [0, n), and the records under the points
// u, u+1, ..., u+n-1 taken, u uniform on [0, 1). The indexes come back in random order.
func drawWeighted(rng *rand.Rand, length weights, n int) []int {
	if uint64(length.len()) > math.MaxUint32 {
		panic("drawWeighted: more than 2^32 records")
	}
	c := lengthCap(length, n)
	var idx column[uint32] // 4 bytes a record: with millions, the largest thing planting holds
	total := 0.0
	for i := range length.len() {
		if w := length.at(i); w > 0 {
			idx.append(uint32(i))
			total += math.Min(float64(w), c)
		}
	}
	rng.Shuffle(idx.len(), idx.swap)
	if idx.len() <= n {
		out := make([]int, idx.len())
		for k := range out {
			out[k] = int(idx.at(k))
		}
		return out
	}
	out := make([]int, 0, n)
	cum, next := 0.0, rng.Float64()
	for k := range idx.len() {
		i := int(idx.at(k))
		cum += float64(n) * math.Min(float64(length.at(i)), c) / total
		if cum > next && len(out) < n {
			out = append(out, i)
			next++
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// lengthCap returns C with n C = sum_i min(w_i, C), or +Inf when no weight needs capping (or
// fewer than n records have a weight). Only the n longest can be capped, so only they are kept
// and sorted.
func lengthCap(length weights, n int) float64 {
	var top []float64 // the n longest so far, a min-heap
	total, count := 0.0, 0
	for i := range length.len() {
		x := length.at(i)
		if x == 0 {
			continue
		}
		count++
		total += float64(x)
		switch {
		case len(top) < n:
			heap.Push((*minHeap)(&top), float64(x))
		case n > 0 && float64(x) > top[0]:
			top[0] = float64(x)
			heap.Fix((*minHeap)(&top), 0)
		}
	}
	if count <= n {
		return math.Inf(1)
	}
	slices.SortFunc(top, func(a, b float64) int { return cmp.Compare(b, a) })
	// With the k longest capped, C = (sum of the rest) / (n - k); the first k for which the
	// (k+1)-th longest is at most C gives the fixed point.
	rest := total
	for k := 0; k < n; k++ {
		c := rest / float64(n-k)
		if top[k] <= c {
			if k == 0 {
				return math.Inf(1)
			}
			return c
		}
		rest -= top[k]
	}
	return rest // unreachable: count > n
}

type minHeap []float64

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(float64)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// drawRecords draws n records of the file as drawWeighted says and reads them; dups, if set, sees
// its candidates on the way.
func drawRecords(rng *rand.Rand, path string, s *datasetScan, n int, dups *dupCheck) ([]Record, error) {
	return readHosts(path, s.format, s.index, drawWeighted(rng, s.answers, n), dups)
}

// dupCheck counts the held-back records whose normalised answer is also that of a sent record
// (sent: a record of the input that is not held back). The scan keeps each record's 16-bit
// answerSketch; the sent records whose sketch is a held-back record's are candidates (the true
// near-duplicates and, by chance, about 0.4% of the others with 256 held-back records among
// 65,535 sketch values), and the pass that reads the drawn records hashes their
// answers in full, so that the count is that of full 64-bit normalHash values without holding
// those for every record.
type dupCheck struct {
	candidates []int               // sorted
	full       map[uint64]struct{} // the candidates' full hashes
	fs         recordFields
	ar         answerReader
	buf        []byte
}

// newDupCheck finds the candidates among the input's records: not held back (heldIdx), with an
// answer whose sketch is one of the held-back records' (want).
func newDupCheck(input *answers, want *[1 << 16]bool, heldIdx map[int]bool) *dupCheck {
	d := &dupCheck{full: map[uint64]struct{}{}}
	for i := range input.hash.len() {
		if h := input.hash.at(i); h != 0 && want[h] && !heldIdx[i] {
			d.candidates = append(d.candidates, i)
		}
	}
	return d
}

// hash returns normalHash of the record's answer, 0 when it has none.
func (d *dupCheck) hash(r Record) uint64 {
	if _, err := detectFormat(r.Raw, &d.fs); err != nil {
		return 0
	}
	a, ok := d.ar.answer(r, &d.fs)
	if !ok {
		return 0
	}
	var h uint64
	h, d.buf = normalHash(a, d.buf)
	return h
}

// note is called with each candidate record.
func (d *dupCheck) note(r Record) { d.full[d.hash(r)] = struct{}{} }

// count returns the number of held-back records whose answer a candidate shares.
func (d *dupCheck) count(held []Record) int {
	n := 0
	for _, r := range held {
		if h := d.hash(r); h != 0 {
			if _, ok := d.full[h]; ok {
				n++
			}
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
	// The model's requests for the secrets left garbage: collected now, its pages take the draw's
	// shuffle, instead of the heap growing by the shuffle's size.
	collectLarge(scan)
	in := scan.answers
	for i := range skip { // hosts are never drawn, but their answers still count as sent
		in.exclude(i)
	}
	var held, sent []Record
	var heldAt []int // the held-back records' indexes in the input
	var dups *dupCheck
	source := SourceDrawn
	if opt.Heldout != "" {
		hs, err := scanDataset(opt.Heldout)
		if err != nil {
			return "", nil, err
		}
		if hs.format != scan.format {
			return "", nil, &InputError{File: opt.Heldout, Msg: fmt.Sprintf("held-out records are %s, the dataset's are %s: they must have the same format", hs.format, scan.format)}
		}
		if held, err = drawRecords(rng, opt.Heldout, hs, nb, nil); err != nil {
			return "", nil, err
		}
		var want [1 << 16]bool
		for _, r := range held {
			want[hs.answers.hash.at(r.Index)] = true
		}
		dups = newDupCheck(in, &want, nil)
		if sent, err = drawRecords(rng, opt.Input, scan, nc, dups); err != nil {
			return "", nil, err
		}
		source = SourceFile + opt.Heldout
	} else {
		// Drawn at once and split at random: the exchangeability the test rests on.
		order := drawWeighted(rng, in, nb+nc)
		if len(order) < nb+nc { // fewer records with an answer than asked: split what there is
			nb = len(order) * nb / (nb + nc)
		}
		heldAt = order[:nb]
		heldIdx := map[int]bool{}
		var want [1 << 16]bool
		for _, i := range heldAt {
			heldIdx[i] = true
			want[in.hash.at(i)] = true
		}
		dups = newDupCheck(in, &want, heldIdx)
		all, err := readHosts(opt.Input, scan.format, scan.index, order, dups)
		if err != nil {
			return "", nil, err
		}
		held, sent = all[:nb], all[nb:]
	}
	// Drawn and read: the answers and the draw's shuffle go before the model scores the records,
	// whose requests make garbage that would otherwise pile up to twice their size.
	scan.answers = nil
	collectLarge(scan)
	if len(held) < MinWholeDataRecords || len(sent) < MinWholeDataRecords {
		return offNote(len(held), len(sent), scan.records), nil, nil
	}
	all := slices.Concat(held, sent)
	scored, err := scoreRecords(ctx, b, all, interleave(key, len(all)), func(i int) { opt.progress(StageScore, i, len(all)) })
	if err != nil {
		return "", nil, err
	}
	key.WholeData = &WholeData{Source: source, HeldBack: scored[:len(held)], Sentinels: scored[len(held):],
		NearDuplicates: dups.count(held)}
	return "", heldAt, nil
}

func offNote(nb, nc, records int) string {
	return fmt.Sprintf("whole-data test off: %d held-back records and %d sentinels from %d records, fewer than %d each", nb, nc, records, MinWholeDataRecords)
}
