package verifier

import (
	"bufio"
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

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
	def := min(MaxWholeDataRecords, int(WholeDataShare*float64(n)))
	b, c = p.HeldBack, p.Sentinels
	if b == 0 {
		b = def
	}
	if c == 0 {
		c = def
	}
	return b, c, b >= MinWholeDataRecords && c >= MinWholeDataRecords
}

// weighted is one record in a weighted reservoir: its index and its Efraimidis-Spirakis key
// log(u)/w, u uniform on (0, 1), w the record's weight. The n largest keys are a weighted sample
// of n records without replacement, in one pass and O(n) memory.
type weighted struct {
	idx int
	key float64
}

// reservoir keeps the n largest keys; the smallest kept is at the root.
type reservoir []weighted

func (r reservoir) Len() int           { return len(r) }
func (r reservoir) Less(i, j int) bool { return r[i].key < r[j].key }
func (r reservoir) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
func (r *reservoir) Push(x any)        { *r = append(*r, x.(weighted)) }
func (r *reservoir) Pop() any {
	old := *r
	x := old[len(old)-1]
	*r = old[:len(old)-1]
	return x
}

// offer adds a record of weight w to a reservoir of capacity n.
func (r *reservoir) offer(rng *rand.Rand, n, idx int, w float64) {
	if w <= 0 {
		return
	}
	u := rng.Float64()
	for u == 0 {
		u = rng.Float64()
	}
	k := math.Log(u) / w
	switch {
	case r.Len() < n:
		heap.Push(r, weighted{idx, k})
	case k > (*r)[0].key:
		(*r)[0] = weighted{idx, k}
		heap.Fix(r, 0)
	}
}

// drawRecords draws n records of the file, skipping the indexes in skip, with probability
// proportional to their answer length in bytes (method.md: the share the test certifies counts
// answer bytes, so a provider cannot pass by training on many short records). Records that are not
// a prompt followed by an answer have weight 0. The records come back in random order.
func drawRecords(rng *rand.Rand, path string, format Format, n int, skip map[int]bool) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	defer f.Close()
	var res reservoir
	sc := newLineScanner(bufio.NewReaderSize(f, 1<<20))
	for idx := 0; ; {
		line, ok := sc.next()
		if !ok {
			break
		}
		if blank(line) {
			continue
		}
		if !skip[idx] {
			r := Record{Line: sc.line, Raw: line, Format: format}
			if _, answer, err := r.Conversation(); err == nil {
				res.offer(rng, n, idx, float64(len(answer)))
			}
		}
		idx++
	}
	if err := sc.err(); err != nil {
		return nil, &InputError{File: path, Msg: err.Error()}
	}
	order := make([]int, len(res))
	for i, w := range res {
		order[i] = w.idx
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	return readHosts(path, format, order)
}

// scoreRecords scores each record's answer after its prompt under model b.
func scoreRecords(ctx context.Context, b backend.Backend, recs []Record, progress func(done int)) ([]ScoredRecord, error) {
	out := make([]ScoredRecord, len(recs))
	for i, r := range recs {
		progress(i)
		msgs, answer, err := r.Conversation()
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", r.Line, err)
		}
		sc, err := scoreAnswer(ctx, b, msgs, answer)
		if err != nil {
			return nil, err
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
	return RecordScore{Logprob: sc.Logprob, Tokens: len(sc.Tokens), Exact: sc.Exact}, nil
}

// drawWholeData draws the held-back records and sentinels (method.md), scores them under the base
// model b and stores them in the key. skip holds the record indexes drawn as hosts. It returns a
// note saying why the test is off when it is, and then leaves key.WholeData nil.
func drawWholeData(ctx context.Context, b backend.Backend, rng *rand.Rand, key *Key, scan *datasetScan, skip map[int]bool, opt PlantOptions) (string, error) {
	nb, nc, ok := wholeDataSizes(&key.Params, scan.records)
	if !ok {
		return offNote(nb, nc, scan.records), nil
	}
	var held, sent []Record
	source := SourceDrawn
	if opt.Heldout != "" {
		hs, err := scanDataset(opt.Heldout)
		if err != nil {
			return "", err
		}
		if hs.format != scan.format {
			return "", &InputError{File: opt.Heldout, Msg: fmt.Sprintf("held-out records are %s, the dataset's are %s: they must have the same format", hs.format, scan.format)}
		}
		if held, err = drawRecords(rng, opt.Heldout, hs.format, nb, nil); err != nil {
			return "", err
		}
		if sent, err = drawRecords(rng, opt.Input, scan.format, nc, skip); err != nil {
			return "", err
		}
		source = opt.Heldout
	} else {
		// Drawn at once and split at random: the exchangeability the test rests on.
		all, err := drawRecords(rng, opt.Input, scan.format, nb+nc, skip)
		if err != nil {
			return "", err
		}
		if len(all) < nb+nc { // fewer records with an answer than asked: split what there is
			nb = len(all) * nb / (nb + nc)
		}
		held, sent = all[:nb], all[nb:]
	}
	if len(held) < MinWholeDataRecords || len(sent) < MinWholeDataRecords {
		return offNote(len(held), len(sent), scan.records), nil
	}
	total := len(held) + len(sent)
	hb, err := scoreRecords(ctx, b, held, func(i int) { opt.progress(StageScore, i, total) })
	if err != nil {
		return "", err
	}
	sb, err := scoreRecords(ctx, b, sent, func(i int) { opt.progress(StageScore, len(held)+i, total) })
	if err != nil {
		return "", err
	}
	key.WholeData = &WholeData{Source: source, HeldBack: hb, Sentinels: sb}
	return "", nil
}

func offNote(nb, nc, records int) string {
	return fmt.Sprintf("whole-data test off: %d held-back records and %d sentinels from %d records, fewer than %d each", nb, nc, records, MinWholeDataRecords)
}
