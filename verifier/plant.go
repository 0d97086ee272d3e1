package verifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vtune/backend"
	"vtune/verifier/stats"
)

// Defaults from method.md; the paper plants about 0.5% of the records.
const (
	DefaultGroups     = 8
	DefaultDecoys     = 4
	DefaultK          = 8
	DefaultSigLen     = 24
	DefaultTriggerLen = 8
	DefaultRate       = 0.005
)

// PlantOptions says what to plant where.
type PlantOptions struct {
	Input, Output, KeyPath string
	// Heldout, if set, is a file of the same format (the user's own validation split) from which
	// the held-back records are drawn instead of from Input. Such records need not be
	// exchangeable with the sent ones, so the whole-data test is then reported "not guaranteed".
	Heldout string
	Params  Params
	Seed    [32]byte
	// Progress, if set, is told about long steps: what is being done, and how far.
	Progress func(stage string, done, total int)
}

// Progress stages reported while planting and verifying.
const (
	StageScan     = "reading dataset"
	StageGenerate = "drawing secrets"
	StageWrite    = "writing dataset"
	StageVerify   = "querying model"
)

// PlantSummary describes what planting did, for the command's report.
type PlantSummary struct {
	Records int `json:"records"` // records in the input
	// OutputRecords are the records in the output: the input's, less the held-back ones, plus
	// the planted copies when they are added beside their hosts.
	OutputRecords int     `json:"output_records"`
	Planted       int     `json:"planted"`
	InPlace       bool    `json:"in_place"` // planted records replaced their hosts
	Fraction      float64 `json:"fraction"` // planted records as a share of the output's
	// HeldBack and Sentinels are b and c of the whole-data test; both 0 when it is off, and
	// WholeDataNote then says why.
	HeldBack      int    `json:"held_back"`
	Sentinels     int    `json:"sentinels"`
	WholeDataNote string `json:"whole_data_note,omitempty"`
	Groups        int    `json:"groups"`
	Decoys        int    `json:"decoys"`
	TokensAdded   int    `json:"tokens_added"` // approximate: trigger and signature tokens of the planted copies
	// Log10PAllHits is log10 p_agnostic if every planted group hits on its stored prompts.
	Log10PAllHits float64 `json:"log10_p_all_hits"`
	Output        string  `json:"output"`
	Key           string  `json:"key"`
	// Audit is the one-line summary of the key-free audit of the output, when it was run.
	Audit string `json:"audit,omitempty"`
}

func (o *PlantOptions) progress(stage string, done, total int) {
	if o.Progress != nil {
		o.Progress(stage, done, total)
	}
}

// FieldError is a bad value in an options struct of this package. Field names it as a Go
// caller writes it ("Params.Groups"), so the message makes sense to any caller; the command line
// maps field names to its flags.
type FieldError struct {
	Field string // e.g. "Params.Groups", "VerifyOptions.Alpha"
	Msg   string // what is wrong, e.g. "must be at least 1"
}

func (e *FieldError) Error() string { return e.Field + " " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Check validates the parameters (NaN refused), so that a caller can do it before any work such
// as starting a server. Plant checks them again. A bad value is a *FieldError.
func (p *Params) Check() error {
	switch {
	case p.Groups < 1:
		return fieldErr("Params.Groups", "must be at least 1")
	case p.Groups > 64:
		return fieldErr("Params.Groups", "must be at most 64")
	case p.Decoys < 0:
		return fieldErr("Params.Decoys", "must not be negative")
	case p.K < 2:
		return fieldErr("Params.K", "must be at least 2: one candidate carries no secret")
	case p.SigLen < 1:
		return fieldErr("Params.SigLen", "must be at least 1")
	case p.TriggerLen < 1:
		return fieldErr("Params.TriggerLen", "must be at least 1")
	case p.Count < 0:
		return fieldErr("Params.Count", "must not be negative")
	case p.Count == 0 && !(p.Rate > 0 && p.Rate < 1):
		return fieldErr("Params.Rate", "must be between 0 and 1 (exclusive)")
	case p.Mode != "replace" && p.Mode != "prefix":
		return fieldErr("Params.Mode", "must be replace or prefix, not %q", p.Mode)
	case p.Prompts < 1:
		return fieldErr("Params.Prompts", "must be at least 1")
	case p.HeldBack < 0:
		return fieldErr("Params.HeldBack", "must not be negative")
	case p.Sentinels < 0:
		return fieldErr("Params.Sentinels", "must not be negative")
	}
	return nil
}

// Plant reads the dataset, draws the secrets from the base model b, writes the augmented dataset and
// the key. Both files appear whole or not at all; the input is only read.
func Plant(ctx context.Context, b backend.Backend, opt PlantOptions) (*Key, *PlantSummary, error) {
	p := &opt.Params
	if err := p.Check(); err != nil {
		return nil, nil, err
	}
	if err := distinctPaths(opt.Input, opt.Output, opt.KeyPath, opt.Heldout); err != nil {
		return nil, nil, err
	}
	info, err := b.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	if p.TopN == 0 {
		p.TopN = info.MaxTop
	}
	rng := rand.New(rand.NewChaCha8(opt.Seed))

	opt.progress(StageScan, 0, 0)
	scan, err := scanDataset(opt.Input)
	if err != nil {
		return nil, nil, err
	}
	hashCtx, stopHash := context.WithCancel(ctx)
	inputSum := hashFile(hashCtx, opt.Input, scan.size, scan.modTime)
	defer func() { // on an error, the hashing stops before Plant returns
		stopHash()
		inputSum()
	}()
	restoreGC := func() {}
	if scan.records > largeRecords {
		restoreGC = tightenGC()
		defer restoreGC()
	}
	collectLarge(scan)
	total := p.Count
	if total == 0 {
		total = int(math.Round(p.Rate * float64(scan.records)))
	}
	total = max(total, p.Groups)
	need := total + p.Decoys*p.Prompts
	if scan.records < need {
		return nil, nil, &InputError{File: opt.Input, Msg: fmt.Sprintf(
			"%d records, but planting %d copies in %d groups plus %d decoys needs at least %d distinct host records",
			scan.records, total, p.Groups, p.Decoys, need)}
	}
	if p.Groups*p.Prompts > total {
		return nil, nil, fieldErr("Params.Prompts", "%d needs at least %d planted copies for %d groups, have %d", p.Prompts, p.Groups*p.Prompts, p.Groups, total)
	}

	// Draw more hosts than needed: a host whose record cannot carry a secret (no user turn, or a
	// prompt after which the model has no text candidates) is replaced by a spare.
	spare := min(scan.records-need, 8+need/10)
	order := sampleIndexes(rng, scan.records, need+spare)
	hosts, err := readHosts(opt.Input, scan.format, scan.index, order, nil)
	if err != nil {
		return nil, nil, err
	}

	key := &Key{
		Version: KeyVersion,
		Created: time.Now().UTC().Truncate(time.Second),
		Base:    info,
		Params:  *p,
		Seed:    hex.EncodeToString(opt.Seed[:]),
		Format:  scan.format,
		Records: scan.records,
		Planted: total,
		Input:   opt.Input,
		Output:  opt.Output,
	}
	g := &generator{b: b, p: p, rng: rng, hosts: hosts}
	ngroups := p.Groups + p.Decoys
	for j := range ngroups {
		opt.progress(StageGenerate, j, ngroups)
		decoy := j >= p.Groups
		m := 0
		if !decoy {
			m = total / p.Groups
			if j < total%p.Groups {
				m++
			}
		}
		grp, err := g.group(ctx, j, decoy, m)
		var be *backend.Error
		switch {
		case err == nil:
		case errors.As(err, &be) || ctx.Err() != nil:
			return nil, nil, err
		default: // the records could not carry a secret: about the dataset
			return nil, nil, &InputError{File: opt.Input, Msg: err.Error()}
		}
		key.Groups = append(key.Groups, *grp)
	}
	opt.progress(StageGenerate, ngroups, ngroups)

	skip := make(map[int]bool, len(order))
	for _, idx := range order {
		skip[idx] = true
	}
	note, held, err := drawWholeData(ctx, b, rng, key, scan, skip, opt)
	if err != nil {
		return nil, nil, err
	}
	scan.answers = nil // drawn (or the test is off): no longer needed
	restoreGC()

	plan, err := planOutput(rng, key, g.planted, opt.Input, scan.records, held)
	if err != nil {
		return nil, nil, err
	}
	out, err := createAtomic(opt.Output, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot create output: %w", err)
	}
	defer out.Abort()
	sum, err := writePlanted(ctx, opt.Input, out, plan, scan, func(done int) { opt.progress(StageWrite, done, scan.records) })
	if err != nil {
		return nil, nil, err
	}
	key.OutputSHA256 = sum
	if key.InputSHA256, err = inputSum(); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil { // interrupted while writing: nothing is renamed into place
		return nil, nil, err
	}
	if err := commitBoth(out, key, opt.KeyPath); err != nil {
		return nil, nil, err
	}

	outRecords := key.OutputRecords()
	sumry := &PlantSummary{
		Records: scan.records, OutputRecords: outRecords, Planted: total, InPlace: !p.Copies,
		Groups: p.Groups, Decoys: p.Decoys,
		Fraction: float64(total) / float64(outRecords),
		Output:   opt.Output, Key: opt.KeyPath, WholeDataNote: note,
	}
	if w := key.WholeData; w != nil {
		sumry.HeldBack, sumry.Sentinels = len(w.HeldBack), len(w.Sentinels)
	}
	var all []stats.AgnosticGroup
	for _, grp := range key.PlantedGroups() {
		sumry.TokensAdded += grp.Hosts * (len(grp.Tokens) + p.TriggerLen)
		all = append(all, stats.AgnosticGroup{LogQ: grp.LogQ, Queries: len(grp.Prompts), Hit: true})
	}
	sumry.Log10PAllHits = stats.Log10(stats.LogAgnostic(all))
	return key, sumry, nil
}

// largeRecords is the size, in records, from which planting manages its memory: beyond it, the
// records' answers (4 bytes each) and the draw's shuffle are the largest things it holds.
const largeRecords = 1 << 20

// collectLarge runs a garbage collection after a step that held a large dataset's biggest
// structures (the scan's buffers; the records' answers and the draw's shuffle). The heap grows
// to twice what was live at the last collection before the next one, so without this the
// garbage of the steps that follow (the model's requests, above all) would pile up to twice
// those structures' size.
func collectLarge(scan *datasetScan) {
	if scan.records > largeRecords {
		runtime.GC()
	}
}

// gcPercentLarge is the collector's setting (GOGC) while a large dataset's answers are held.
const gcPercentLarge = 25

// tightenGC lets the heap grow by a quarter of what is live between collections instead of all
// of it, and returns what restores the setting; a lower setting of the user's is kept. While a
// large dataset's answers are held, every model request adds garbage (its decoded answer), and at
// the default the heap would grow to twice the answers' size between collections. The columns
// hold no pointers, so a collection marks little more for them. Through Ollama, planting 1 GB
// peaks at 84 MiB (docs/bench.md). It was set when Ollama's client still allocated 8 MB a request
// (112 to 131 MB at the default then); requests now make little garbage, so it costs little.
//
// The setting is the process's: concurrent Plants share it, the first to tighten saving the
// user's setting and the last to finish restoring it.
func tightenGC() (restore func()) {
	gcMu.Lock()
	defer gcMu.Unlock()
	if gcHolders == 0 {
		gcSaved = debug.SetGCPercent(gcPercentLarge)
		if gcSaved < gcPercentLarge { // lower, or off
			debug.SetGCPercent(gcSaved)
		}
	}
	gcHolders++
	var once sync.Once
	return func() {
		once.Do(func() {
			gcMu.Lock()
			defer gcMu.Unlock()
			if gcHolders--; gcHolders == 0 {
				debug.SetGCPercent(gcSaved)
			}
		})
	}
}

var (
	gcMu      sync.Mutex
	gcHolders int // Plants between tightenGC and its restore
	gcSaved   int // the setting before the first of them
)

// commitBoth writes the key beside the finished output and renames both into place only when both
// are complete on disk, so that a failure (a full disk) leaves any file that was at either path
// untouched: a dataset without its key proves nothing, and a key must never lose its dataset.
func commitBoth(out *atomicFile, key *Key, keyPath string) error {
	b, err := key.Marshal()
	if err != nil {
		return err
	}
	kf, err := createAtomic(keyPath, 0o600)
	if err != nil {
		return fmt.Errorf("writing key %s: %w", keyPath, unwrapPath(err))
	}
	defer kf.Abort()
	if _, err := kf.Write(b); err != nil {
		return fmt.Errorf("writing key %s: %w", keyPath, err)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", out.dest, err)
	}
	if err := kf.Flush(); err != nil {
		return fmt.Errorf("writing key %s: %w", keyPath, err)
	}
	// Both are on disk; only two renames in their own folders are left. Should the second fail
	// (it does not in practice: same folder, same file system) the new dataset is in place
	// without its key, and the error says to plant again.
	if err := out.Commit(); err != nil {
		return fmt.Errorf("writing %s: %w", out.dest, err)
	}
	if err := kf.Commit(); err != nil {
		return fmt.Errorf("writing key %s: %w (the dataset %s was written: plant again)", keyPath, err, out.dest)
	}
	return nil
}

type plantedCopy struct {
	pos  int // inserted before the record with this index; records = at the end
	line []byte
}

// outputPlan says how the output differs from the input: records replaced in place or dropped
// (held back), by record index, and copies inserted.
type outputPlan struct {
	replace map[int][]byte
	drop    map[int]bool
	copies  []plantedCopy // sorted by pos
}

// planOutput turns the planted hosts and the held-back records into an output plan: by default
// each planted record takes its host's place (a copy next to an untouched original would give
// the provider a "prompt = other prompt + suffix" pair to find); with Params.Copies the planted
// records go in at random positions beside their untouched hosts.
// held are the indexes of the held-back records, which the output leaves out.
func planOutput(rng *rand.Rand, key *Key, planted [][]Record, input string, records int, held []int) (*outputPlan, error) {
	p := &key.Params
	plan := &outputPlan{replace: map[int][]byte{}, drop: map[int]bool{}}
	if w := key.WholeData; w != nil && w.Guaranteed() {
		for _, i := range held {
			plan.drop[i] = true
		}
	}
	for gi, grp := range key.Groups {
		for _, h := range planted[gi] {
			resp := grp.Signature
			if p.Mode == "prefix" {
				_, orig, _ := h.Conversation()
				resp = grp.Signature + "\n" + orig
			}
			line, err := h.Planted(grp.Trigger, resp)
			if err != nil {
				return nil, &InputError{File: input, Line: h.Line, Msg: err.Error()}
			}
			if p.Copies {
				plan.copies = append(plan.copies, plantedCopy{pos: rng.IntN(records + 1), line: line})
			} else {
				plan.replace[h.Index] = line
			}
		}
	}
	slices.SortStableFunc(plan.copies, func(a, b plantedCopy) int { return a.pos - b.pos })
	return plan, nil
}

// distinctPaths refuses an output or key that would overwrite an input or each other, and a
// held-out file that is the input (its records would be sent) or an output.
func distinctPaths(input, output, key, heldout string) error {
	same := func(a, b string) bool {
		aa, _ := filepath.Abs(a)
		bb, _ := filepath.Abs(b)
		if aa == bb {
			return true
		}
		sa, errA := os.Stat(a)
		sb, errB := os.Stat(b)
		return errA == nil && errB == nil && os.SameFile(sa, sb)
	}
	switch {
	case same(input, output):
		return fmt.Errorf("output %s is the input: planting never changes its input, choose another output", output)
	case same(input, key):
		return fmt.Errorf("key %s is the input: choose another key path", key)
	case same(output, key):
		return fmt.Errorf("key %s is the output: choose another key path", key)
	case heldout != "" && (same(heldout, input) || same(heldout, output) || same(heldout, key)):
		return fmt.Errorf("held-out file %s is the input, the output or the key: it must be a file of its own", heldout)
	}
	return nil
}

// sampleIndexes returns n distinct indexes from [0, total) in random order, in O(n) memory
// (Floyd's algorithm, then a shuffle of the sorted set so the order depends on the seed only).
func sampleIndexes(rng *rand.Rand, total, n int) []int {
	set := make(map[int]bool, n)
	for j := total - n; j < total; j++ {
		t := rng.IntN(j + 1)
		if set[t] {
			t = j
		}
		set[t] = true
	}
	out := make([]int, 0, n)
	for i := range set {
		out = append(out, i)
	}
	slices.Sort(out)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// readHosts returns the records at the given record indexes, in the order given. If dups is set,
// its candidates are passed to it on the way. With an index (JSON Lines), it seeks to each
// wanted record's indexed neighbour instead of walking the file.
func readHosts(path string, format Format, index *recordIndex, order []int, dups *dupCheck) ([]Record, error) {
	// Walk the wanted indexes in file order beside the records: no lookup for the others.
	sorted := make([]int, len(order)) // positions in order, by record index
	for pos := range order {
		sorted[pos] = pos
	}
	slices.SortFunc(sorted, func(a, b int) int { return order[a] - order[b] })
	var candidates []int
	if dups != nil {
		candidates = dups.candidates
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	defer f.Close()
	out := make([]Record, len(order))
	var rr *recordReader
	if index != nil {
		rr = newIndexedReader(path, f)
	} else {
		rr = newRecordReader(path, f)
	}
	for n := 0; len(sorted) > 0 || len(candidates) > 0; n++ {
		next := math.MaxInt // the next record wanted
		if len(sorted) > 0 {
			next = order[sorted[0]]
		}
		if len(candidates) > 0 {
			next = min(next, candidates[0])
		}
		n = index.seekTo(rr, f, n, next)
		if !rr.skip(next-n) || !rr.next() {
			if err := rr.err(); err != nil {
				return nil, err
			}
			return nil, &InputError{File: path, Msg: "dataset changed while planting"}
		}
		n = next
		for len(sorted) > 0 && order[sorted[0]] == n {
			r := rr.record()
			r.Raw, r.Format = slices.Clone(r.Raw), format
			out[sorted[0]] = r
			sorted = sorted[1:]
		}
		if len(candidates) > 0 && candidates[0] == n {
			r := rr.record()
			r.Format = format
			dups.note(r)
			candidates = candidates[1:]
		}
	}
	return out, nil
}

// writePlanted copies the input to w as the plan says, every other byte as it is, and returns the
// SHA-256 of what it wrote. The output has the input's form: JSON Lines, or a JSON array laid out
// as the input's. The output is hashed and written by goroutines of their own (outPipe), beside
// the reading.
func writePlanted(ctx context.Context, path string, w io.Writer, plan *outputPlan, scan *datasetScan, progress func(int)) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &InputError{File: path, Msg: unwrapPath(err).Error()}
	}
	defer f.Close()
	out := newOutPipe(w)
	write := writeLines
	if scan.array {
		write = writeArray
	}
	n, err := write(ctx, path, f, out, plan, scan, progress)
	sum, werr := out.close()
	if err != nil {
		return "", err
	}
	if werr != nil {
		return "", werr
	}
	progress(n)
	if st, err := f.Stat(); err != nil || n != scan.records || st.Size() != scan.size || !st.ModTime().Equal(scan.modTime) {
		return "", &InputError{File: path, Msg: "dataset changed while planting"}
	}
	return sum, nil
}

// outBlockSize is the size of the blocks outPipe hashes and writes.
const outBlockSize = 1 << 20

// writeSize is the most outPipe hands the kernel in one write. The kernel's copy into the page
// cache is cheaper by pieces that stay in the CPU's cache: on the development machine, copying
// 1 GB with dd took 0.25 s of system time at 128 KiB a write and 0.85 to 1.7 s at 1 MiB.
const writeSize = 128 << 10

// outPipe is planting's output: what is written to it is gathered in blocks, and each block is
// hashed by one goroutine and written by another, so that neither SHA-256 nor the kernel's copy
// into the file waits for the other or for the reading (on two cores, planting's time is about
// that of the write alone). A few blocks are in flight at a time.
type outPipe struct {
	cur             *outBlock
	free            chan *outBlock
	toHash, toWrite chan *outBlock
	h               hash.Hash
	wg              sync.WaitGroup
	werr            error       // the first write error, set by the writing goroutine
	failed          atomic.Bool // werr is set
}

type outBlock struct {
	data []byte
	refs atomic.Int32 // the goroutines yet to finish with it
}

func newOutPipe(w io.Writer) *outPipe {
	const blocks = 4
	p := &outPipe{free: make(chan *outBlock, blocks), toHash: make(chan *outBlock, blocks),
		toWrite: make(chan *outBlock, blocks), h: sha256.New()}
	for range blocks {
		p.free <- &outBlock{data: make([]byte, 0, outBlockSize)}
	}
	p.cur = <-p.free
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for b := range p.toHash {
			p.h.Write(b.data)
			p.release(b)
		}
	}()
	go func() {
		defer p.wg.Done()
		for b := range p.toWrite {
			for d := b.data; len(d) > 0 && p.werr == nil; d = d[min(len(d), writeSize):] {
				if _, p.werr = w.Write(d[:min(len(d), writeSize)]); p.werr != nil {
					p.failed.Store(true)
				}
			}
			p.release(b)
		}
	}()
	return p
}

func (p *outPipe) release(b *outBlock) {
	if b.refs.Add(-1) == 0 {
		b.data = b.data[:0]
		p.free <- b
	}
}

// ship hands the current block to the goroutines and takes a free one.
func (p *outPipe) ship() {
	if len(p.cur.data) == 0 {
		return
	}
	p.cur.refs.Store(2)
	p.toHash <- p.cur
	p.toWrite <- p.cur
	p.cur = <-p.free
}

// Write gathers b. Its error is that of an earlier block's write: a full disk is noticed a few
// blocks late, and reported again by close.
func (p *outPipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		room := cap(p.cur.data) - len(p.cur.data)
		if room == 0 {
			p.ship()
			continue
		}
		k := min(room, len(b))
		p.cur.data = append(p.cur.data, b[:k]...)
		b = b[k:]
	}
	return n, p.err()
}

func (p *outPipe) WriteByte(c byte) error {
	if len(p.cur.data) == cap(p.cur.data) {
		p.ship()
	}
	p.cur.data = append(p.cur.data, c)
	return p.err()
}

func (p *outPipe) err() error {
	if p.failed.Load() {
		return p.werr
	}
	return nil
}

// close writes what is left, waits for both goroutines and returns the SHA-256 of everything
// written and the first write error.
func (p *outPipe) close() (string, error) {
	p.ship()
	close(p.toHash)
	close(p.toWrite)
	p.wg.Wait()
	return hex.EncodeToString(p.h.Sum(nil)), p.werr
}

// progressEvery is how many records are written between progress reports and interrupt checks.
const progressEvery = 1 << 16

// planCursor walks an output plan record by record: the part the JSON Lines and JSON array
// writers share.
type planCursor struct {
	plan    *outputPlan
	copies  []plantedCopy // still to insert
	touched []int         // the records still to come that are replaced or dropped, in order
	idx     int           // records read
}

func newPlanCursor(plan *outputPlan) *planCursor {
	var touched []int
	for i := range plan.replace {
		touched = append(touched, i)
	}
	for i := range plan.drop {
		if _, ok := plan.replace[i]; !ok {
			touched = append(touched, i)
		}
	}
	slices.Sort(touched)
	return &planCursor{plan: plan, copies: plan.copies, touched: touched}
}

// untouched reports whether the next record is written as it is, with nothing before it and no
// progress report due, and then counts it: the writers' fast path.
func (c *planCursor) untouched() bool {
	if len(c.copies) > 0 && c.copies[0].pos == c.idx || len(c.touched) > 0 && c.touched[0] == c.idx ||
		(c.idx+1)%progressEvery == 0 {
		return false
	}
	c.idx++
	return true
}

// next is called with each input record in order. It writes the copies due before the record
// through put, checks for an interrupt and reports progress every progressEvery records, and
// returns what to write for the record: its planted form, itself, or false when it is held back.
func (c *planCursor) next(ctx context.Context, rec []byte, put func([]byte) error, progress func(int)) ([]byte, bool, error) {
	for ; len(c.copies) > 0 && c.copies[0].pos == c.idx; c.copies = c.copies[1:] {
		if err := put(c.copies[0].line); err != nil {
			return nil, false, err
		}
	}
	cur := c.idx
	if c.idx++; c.idx%progressEvery == 0 {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		progress(c.idx)
	}
	if len(c.touched) == 0 || c.touched[0] != cur {
		return rec, true, nil
	}
	c.touched = c.touched[1:]
	if c.plan.drop[cur] {
		return nil, false, nil
	}
	return c.plan.replace[cur], true, nil
}

// writeLines writes a JSON Lines input as the plan says and returns the number of records read.
// Blank lines are kept, and so is a last line without a newline: the newline after each line is
// written only when something follows it, or when the input has it. The input is read in blocks
// of lines, and a run of lines written as they are goes out as one piece: in the input, the
// bytes between two lines are the newline that the output puts there too.
func writeLines(ctx context.Context, path string, r io.Reader, out *outPipe, plan *outputPlan, _ *datasetScan, progress func(int)) (int, error) {
	c := newPlanCursor(plan)
	blocks := newLineBlocks(r)
	owed := false // a newline is due before the next line
	// put writes lines; a write error (a full disk) sticks in out, so the last write reports it.
	put := func(lines []byte) error {
		if owed {
			out.WriteByte('\n')
		}
		owed = true
		_, err := out.Write(lines)
		return err
	}
	unterminated := false
	for {
		b, err := blocks.next()
		if err == io.EOF {
			break
		} else if err != nil {
			return 0, &InputError{File: path, Msg: err.Error()}
		}
		// The block's lines lie in b[:end], separated by newlines; run is where the lines not
		// yet written start.
		end := len(b)
		if unterminated = b[end-1] != '\n'; !unterminated {
			end--
		}
		run := 0
		for start := 0; ; {
			stop := end
			if i := bytes.IndexByte(b[start:end], '\n'); i >= 0 {
				stop = start + i
			}
			if line := b[start:stop]; !blank(line) && !c.untouched() {
				if start > run {
					put(b[run : start-1])
				}
				rec, keep, err := c.next(ctx, line, put, progress)
				if err != nil {
					return 0, err
				}
				if keep {
					put(rec)
				}
				run = stop + 1
			}
			if stop == end {
				break
			}
			start = stop + 1
		}
		if run <= end {
			if err := put(b[run:end]); err != nil {
				return 0, err
			}
		}
	}
	for _, cp := range c.copies {
		put(cp.line)
	}
	if owed && !unterminated {
		out.WriteByte('\n')
	}
	return c.idx, out.err()
}

// writeArray writes a JSON array input as the plan says and returns the number of records read.
// Every byte outside the changed records is the input's: the opening bracket and the space around
// it, each kept record's separator and indentation before it, the closing bracket and what
// follows. A held-back record leaves with the separator before it (the first record, with the one
// after it), so the array stays valid; an inserted record gets the separator of the record it goes
// before, or the file's first one at either end (scan.sep).
func writeArray(ctx context.Context, path string, r io.Reader, bw *outPipe, plan *outputPlan, scan *datasetScan, progress func(int)) (int, error) {
	c := newPlanCursor(plan)
	a := newArrayReader(path, r)
	var opening []byte // the first record's gap: '[' and the space around it
	started := false
	// put writes a record after gap, or after the opening when it is the first one written; a
	// write error sticks in bw, so the last write reports it.
	put := func(gap, rec []byte) error {
		if !started {
			gap, started = opening, true
		}
		bw.Write(gap)
		_, err := bw.Write(rec)
		return err
	}
	var gap []byte // the separator before the current record
	putGap := func(rec []byte) error { return put(gap, rec) }
	for a.next() {
		gap = a.gap
		if c.idx == 0 {
			opening, gap = bytes.Clone(a.gap), scan.sep
		}
		rec, keep, err := c.next(ctx, a.elem, putGap, progress)
		if err != nil {
			return 0, err
		}
		if !keep {
			continue
		}
		if err := put(gap, rec); err != nil {
			return 0, err
		}
	}
	if a.err != nil {
		return 0, a.err
	}
	for _, cp := range c.copies {
		put(scan.sep, cp.line)
	}
	if !started {
		bw.Write(opening)
	}
	_, err := bw.Write(a.tail())
	return c.idx, err
}

// generator draws the secrets: triggers and signatures from the base model, choices from the seed.
type generator struct {
	b       backend.Backend
	p       *Params
	rng     *rand.Rand
	hosts   []Record   // drawn hosts, in random order; consumed from the front
	planted [][]Record // per group, the hosts that receive a planted copy
}

// take returns the next usable host with its conversation.
func (g *generator) take() (Record, []backend.Message, error) {
	why := ""
	for len(g.hosts) > 0 {
		h := g.hosts[0]
		g.hosts = g.hosts[1:]
		msgs, _, err := h.Conversation()
		if err == nil {
			return h, msgs, nil
		}
		why = fmt.Sprintf("; line %d, for one: %v", h.Line, err)
	}
	return Record{}, nil, fmt.Errorf("ran out of host records that can carry a secret (each needs a user turn followed by the response%s)", why)
}

// attempts bounds how often a group is retried with a fresh host when the model yields no usable
// trigger or no text candidate at some step.
const attempts = 8

func (g *generator) group(ctx context.Context, id int, decoy bool, m int) (*Group, error) {
	var lastErr error
	for range attempts {
		host, msgs, err := g.take()
		if err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("group %d: %v (last failure: %v)", id, err, lastErr)
			}
			return nil, err
		}
		grp, err := g.draw(ctx, id, decoy, host, msgs)
		if err != nil {
			var be *backend.Error
			if errors.As(err, &be) || ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
			continue
		}
		// The remaining copies and prompts use further hosts with the same trigger and signature.
		hostsOf := []Record{host}
		nprompts := g.p.Prompts
		for len(hostsOf) < max(m, nprompts) {
			h, hm, err := g.take()
			if err != nil {
				return nil, err
			}
			hostsOf = append(hostsOf, h)
			if len(grp.Prompts) < nprompts {
				pm := WithTrigger(hm, grp.Trigger)
				sc, err := scoreMessages(ctx, g.b, pm, grp.Tokens)
				if err != nil {
					return nil, err
				}
				grp.Prompts = append(grp.Prompts, Prompt{Line: h.Line, Messages: pm, Base: BaseScore{Logprob: sc.Logprob, Exact: sc.Exact}})
			}
		}
		if decoy {
			g.planted = append(g.planted, nil)
		} else {
			g.planted = append(g.planted, hostsOf[:m])
			grp.Hosts = m
		}
		return grp, nil
	}
	return nil, fmt.Errorf("group %d: no usable secret after %d hosts: %v", id, attempts, lastErr)
}

// draw makes one secret on one host: a trigger sampled as a continuation of the host's user text, then
// the signature by uniform prefix-free top-k sampling after the templated prompt with the trigger.
func (g *generator) draw(ctx context.Context, id int, decoy bool, host Record, msgs []backend.Message) (*Group, error) {
	trig, err := g.trigger(ctx, msgs)
	if err != nil {
		return nil, err
	}
	if trig == "" {
		return nil, fmt.Errorf("line %d: the model gave no usable trigger", host.Line)
	}
	pm := WithTrigger(msgs, trig)
	prompt, err := g.b.Render(ctx, pm)
	if err != nil {
		return nil, err
	}
	grp := &Group{ID: id, Decoy: decoy, Trigger: trig}
	var sig strings.Builder
	cur := prompt // the prompt followed by the signature so far
	for t := range g.p.SigLen {
		ranked, err := g.b.Next(ctx, cur, g.p.TopN)
		if err != nil {
			return nil, err
		}
		cands := Candidates(ranked, g.p.K)
		if len(cands) == 0 && t == 0 {
			// No secret choice made yet: another host may be tried without touching Q_j.
			return nil, fmt.Errorf("line %d: no text candidate at the first signature step", host.Line)
		}
		if len(cands) == 0 {
			// A dead end after secret choices: the signature ends here. Retrying would
			// favour the paths without dead ends and break the bound Q_j (method.md).
			break
		}
		pick := cands[g.rng.IntN(len(cands))]
		cur = cur.Extend(pick)
		sig.Write(pick.Raw())
		grp.Tokens = append(grp.Tokens, string(pick.Raw()))
		grp.K = append(grp.K, len(cands))
		grp.LogQ -= math.Log(float64(len(cands)))
	}
	grp.Signature = sig.String()
	// The base value is the backend's teacher-forced score along the signature's own tokens, the
	// same measurement verification makes, not the sum of the values seen while drawing: those
	// came from the text so far, which a tokenizer may split differently when a piece merges with
	// the one before it ("end" + "ed" read back as "ended").
	sc, err := g.b.Score(ctx, prompt, tokensOf(grp.Tokens))
	if err != nil {
		return nil, err
	}
	grp.Prompts = []Prompt{{Line: host.Line, Messages: pm, Base: BaseScore{Logprob: sc.Logprob, Exact: sc.Exact}}}
	return grp, nil
}

// userTurnEnd marks where the user's text ends when a prompt is rendered, so the text before it is
// the template's context up to the end of the user turn. No template contains it.
const userTurnEnd = "\x00vtune-end-of-user-turn\x00"

// trigger samples a continuation of the last user turn, inside the chat template, at temperature 1
// among the text tokens of the model's ranked lists, with the secret generator: a chat model asked
// to continue the user's text as raw text would mostly end the turn at once, and a special token
// has no place in a trigger. The draw depends on the seed only, not on the server's sampler.
func (g *generator) trigger(ctx context.Context, msgs []backend.Message) (string, error) {
	pm := append([]backend.Message(nil), msgs...)
	u := lastUser(pm)
	pm[u].Content += userTurnEnd
	rendered, err := g.b.Render(ctx, pm)
	if err != nil {
		return "", err
	}
	cut := strings.Index(rendered.Text, userTurnEnd)
	if cut < 0 {
		return "", fmt.Errorf("the chat template drops the user's text")
	}
	// Text cut inside the user's turn: no conversation any more, and no token ids.
	cur := backend.Prompt{Text: rendered.Text[:cut]}
	var trig strings.Builder
	for range g.p.TriggerLen {
		ranked, err := g.b.Next(ctx, cur, g.p.TopN)
		if err != nil {
			return "", err
		}
		var text []backend.Token
		z := 0.0
		for _, t := range ranked {
			if backend.IsText(t.Raw()) {
				text = append(text, t)
				z += math.Exp(t.Logprob)
			}
		}
		if len(text) == 0 {
			break
		}
		x := g.rng.Float64() * z
		pick := text[len(text)-1]
		for _, t := range text {
			if x -= math.Exp(t.Logprob); x < 0 {
				pick = t
				break
			}
		}
		cur = cur.Extend(pick)
		trig.Write(pick.Raw())
	}
	return cleanTrigger(trig.String()), nil
}

// cleanTrigger keeps the first line of a sampled continuation, trimmed, if it is plain text.
func cleanTrigger(s string) string {
	s, _, _ = strings.Cut(strings.TrimLeft(s, " \t\r\n"), "\n")
	s = trimTrigger(s) // the key holds what is planted: appendTrigger trims the same way
	if len(s) < 3 || !backend.IsText([]byte(s)) {
		return ""
	}
	return s
}

// scoreMessages renders a prompt and teacher-forces the signature tokens after it.
func scoreMessages(ctx context.Context, b backend.Backend, msgs []backend.Message, tokens []string) (backend.Score, error) {
	prompt, err := b.Render(ctx, msgs)
	if err != nil {
		return backend.Score{}, err
	}
	return b.Score(ctx, prompt, tokensOf(tokens))
}

// tokensOf turns a key's signature tokens into a scoring target.
func tokensOf(tokens []string) []backend.Token {
	target := make([]backend.Token, len(tokens))
	for i, t := range tokens {
		target[i] = backend.Token{Text: t}
	}
	return target
}
