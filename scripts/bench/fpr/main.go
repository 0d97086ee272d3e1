// Command fpr measures false positives of vtune's tests against real models served by llama-server
// (scripts/bench/fpr.sh starts the servers and passes their URLs). Two experiments:
//
//	fpr secrets   -base URL -model LABEL=URL ... -data SMALL.jsonl -keys DIR -n N -csv OUT.csv -md OUT.md
//
// plants N fresh keys (default shape: 8 groups, 4 decoys, 24-token signatures, k = 8, one prompt a
// group) with the base model through one long-running server, caching each key in DIR, and verifies
// every key against every model. None of the models saw these keys, so every hit, planted or decoy,
// is a false positive; the table counts the keys with p <= alpha at several alphas for p_agnostic
// and p_base, and the hits.
//
//	fpr wholedata -base URL -model LABEL=URL ... -sent SENT.jsonl -unseen A.jsonl,B.jsonl -key KEY -splits N -csv OUT.csv -md OUT.md
//
// scores, once per model, a pool of records the provider received (SENT, minus the planted records
// of KEY) and a pool of records no model here ever trained on (UNSEEN), then re-draws N whole-data
// splits in-process: b held-back records from the unseen pool and c sentinels from the sent pool,
// each drawn in proportion to its capped answer length as vtune plant draws them, and computes tau,
// X and p_data(f0) exactly as vtune verify does (verifier/wholedata.go decide()). Where the model's
// true trained share is at most f0, every split with p_data(f0) <= alpha is a false positive.
package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"vtune/backend"
	"vtune/verifier"
	"vtune/verifier/stats"
)

type modelFlag []string

func (m *modelFlag) String() string     { return strings.Join(*m, ",") }
func (m *modelFlag) Set(v string) error { *m = append(*m, v); return nil }

type model struct {
	label string
	b     backend.Backend
}

func newLlamaCpp(raw string) (*backend.LlamaCpp, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	return backend.NewLlamaCpp(u, "", nil)
}

func open(ctx context.Context, base string, specs []string) (*model, []model, error) {
	bb, err := newLlamaCpp(base)
	if err != nil {
		return nil, nil, err
	}
	if _, err := bb.Info(ctx); err != nil {
		return nil, nil, err
	}
	var ms []model
	for _, s := range specs {
		label, u, ok := strings.Cut(s, "=")
		if !ok {
			return nil, nil, fmt.Errorf("-model %q: want LABEL=URL", s)
		}
		b, err := newLlamaCpp(u)
		if err != nil {
			return nil, nil, err
		}
		if _, err := b.Info(ctx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", label, err)
		}
		ms = append(ms, model{label, b})
	}
	return &model{"base", bb}, ms, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fpr secrets|wholedata [flags] (see the source)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "secrets":
		err = secrets(os.Args[2:])
	case "wholedata":
		err = wholedata(os.Args[2:])
	default:
		err = fmt.Errorf("unknown experiment %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fpr:", err)
		os.Exit(1)
	}
}

// Significance levels tabulated.
var alphas = []float64{1e-2, 1e-3, 1e-6, 1e-10, 1e-40}

func secrets(args []string) error {
	fs := flag.NewFlagSet("secrets", flag.ExitOnError)
	base := fs.String("base", "", "llama-server URL of the base model (plants the keys; also verified)")
	var models modelFlag
	fs.Var(&models, "model", "LABEL=URL of a model to verify every key against (repeat)")
	data := fs.String("data", "", "dataset the keys are planted in (small: the records only host the secrets)")
	keys := fs.String("keys", "", "folder caching the keys (key-NNNN.json)")
	n := fs.Int("n", 1000, "fresh keys")
	topn := fs.Int("topn", 64, "ranked-list length asked of the server while drawing (the k = 8 candidates are found within it)")
	tag := fs.String("tag", "tiny-llama", "seed tag: key i has seed SHA-256(\"vtune bench fpr TAG i\")")
	results := fs.String("results", "", "folder caching each key's results (one file a key; name it after the models' contents)")
	workers := fs.Int("workers", 1, "keys planted and verified at once (give the servers as many slots)")
	budget := fs.Duration("budget", 0, "stop starting new keys after this long (0: no limit); the tables say how many keys were done")
	csvPath := fs.String("csv", "", "per key and model results")
	mdPath := fs.String("md", "", "summary table (Markdown)")
	fs.Parse(args)
	ctx := context.Background()
	bm, ms, err := open(ctx, *base, models)
	if err != nil {
		return err
	}
	ms = append([]model{*bm}, ms...)
	if err := os.MkdirAll(*keys, 0o755); err != nil {
		return err
	}

	type row struct {
		Key, Model          int
		Hits, Decoys        int
		Log10PA, Log10PBase float64
	}
	opt := verifier.VerifyOptions{Alpha: verifier.DefaultAlpha, Test: verifier.TestAgnostic, MinShare: 0, AlphaData: verifier.DefaultAlphaData}
	if *results != "" {
		if err := os.MkdirAll(*results, 0o755); err != nil {
			return err
		}
	}
	// Results from the cache first; the keys still to do go to the workers in order.
	perKey := make([][]row, *n)
	var todo []int
	cached := 0
	for i := range *n {
		if *results == "" {
			todo = append(todo, i)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(*results, fmt.Sprintf("res-%04d.json", i))); err == nil {
			var rs []row
			if err := json.Unmarshal(b, &rs); err == nil && len(rs) == len(ms) {
				perKey[i] = rs
				cached++
				continue
			}
		}
		todo = append(todo, i)
	}
	// One key at a time per worker, each planting into a file of its own; the servers run as
	// many slots as there are workers (fpr.sh), so the requests of several keys overlap.
	start := time.Now()
	var (
		mu                    sync.Mutex
		plantTime, verifyTime time.Duration
		planted, done         int
		next                  int
		stopped               bool
	)
	nw := max(*workers, 1)
	g, gctx := errgroup.WithContext(ctx)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next == len(todo) || stopped || gctx.Err() != nil { // done, out of time, or a worker failed
			return 0, false
		}
		if *budget > 0 && time.Since(start) > *budget {
			stopped = true
			fmt.Fprintf(os.Stderr, "fpr secrets: time budget %v spent after %d keys\n", *budget, cached+done)
			return 0, false
		}
		next++
		return todo[next-1], true
	}
	for w := range nw {
		g.Go(func() error {
			out := filepath.Join(*keys, fmt.Sprintf("planted-%d.jsonl", w))
			defer os.Remove(out)
			for i, ok := take(); ok; i, ok = take() {
				path := filepath.Join(*keys, fmt.Sprintf("key-%04d.json", i))
				var key *verifier.Key
				var err error
				t0 := time.Now()
				fresh := !fileExists(path)
				if fresh {
					seed := sha256.Sum256([]byte(fmt.Sprintf("vtune bench fpr %s %d", *tag, i)))
					p := verifier.Params{Groups: verifier.DefaultGroups, Decoys: verifier.DefaultDecoys, K: verifier.DefaultK,
						SigLen: verifier.DefaultSigLen, TriggerLen: verifier.DefaultTriggerLen, Rate: verifier.DefaultRate,
						Mode: "replace", Prompts: 1, HeldBack: 1, Sentinels: 1, TopN: *topn}
					if key, _, err = verifier.Plant(gctx, bm.b, verifier.PlantOptions{Input: *data,
						Output: out, KeyPath: path, Params: p, Seed: seed}); err != nil {
						return fmt.Errorf("key %d: %w", i, err)
					}
				} else if key, err = verifier.ReadKey(path); err != nil {
					return fmt.Errorf("key %d: %w", i, err)
				}
				t1 := time.Now()
				var rs []row
				for mi, m := range ms {
					rep, err := verifier.Verify(gctx, m.b, key, opt)
					if err != nil {
						return fmt.Errorf("key %d, %s: %w", i, m.label, err)
					}
					rs = append(rs, row{i, mi, rep.Hits, rep.DecoyHits, rep.Log10PAgnostic, rep.Log10PBase})
				}
				if *results != "" {
					b, _ := json.Marshal(rs)
					if err := os.WriteFile(filepath.Join(*results, fmt.Sprintf("res-%04d.json", i)), b, 0o644); err != nil {
						return err
					}
				}
				mu.Lock()
				perKey[i] = rs
				if fresh {
					planted++
					plantTime += t1.Sub(t0)
				}
				verifyTime += time.Since(t1)
				done++
				if done%25 == 0 || done == len(todo) {
					fmt.Fprintf(os.Stderr, "fpr secrets: %d of %d keys (%d from the cache; %s)\n", cached+done, *n, cached,
						costs(planted, done, plantTime, verifyTime, time.Since(start), len(ms), nw))
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var rows []row
	for _, rs := range perKey {
		rows = append(rows, rs...)
	}
	done += cached

	if *csvPath != "" {
		var b strings.Builder
		w := csv.NewWriter(&b)
		w.Write([]string{"key", "model", "hits", "decoy_hits", "log10_p_agnostic", "log10_p_base"})
		for _, r := range rows {
			w.Write([]string{strconv.Itoa(r.Key), ms[r.Model].label, strconv.Itoa(r.Hits), strconv.Itoa(r.Decoys),
				strconv.FormatFloat(r.Log10PA, 'g', 6, 64), strconv.FormatFloat(r.Log10PBase, 'g', 6, 64)})
		}
		w.Flush()
		if err := os.WriteFile(*csvPath, []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	var md strings.Builder
	fmt.Fprintf(&md, "| model | keys | planted hits (of %d) | decoy hits (of %d) |", 8*done, 4*done)
	for _, a := range alphas {
		fmt.Fprintf(&md, " p_agnostic <= %s |", fmtAlpha(a))
	}
	for _, a := range alphas {
		fmt.Fprintf(&md, " p_base <= %s |", fmtAlpha(a))
	}
	fmt.Fprintf(&md, " smallest p_agnostic | smallest p_base |\n|---|---:|---:|---:|%s\n", strings.Repeat("---:|", 2*len(alphas)+2))
	for mi, m := range ms {
		var keysN, hits, decoys int
		pa := make([]int, len(alphas))
		pb := make([]int, len(alphas))
		minA, minB := 0.0, 0.0
		for _, r := range rows {
			if r.Model != mi {
				continue
			}
			keysN++
			hits += r.Hits
			decoys += r.Decoys
			minA, minB = math.Min(minA, r.Log10PA), math.Min(minB, r.Log10PBase)
			for ai, a := range alphas {
				if r.Log10PA <= math.Log10(a) {
					pa[ai]++
				}
				if r.Log10PBase <= math.Log10(a) {
					pb[ai]++
				}
			}
		}
		fmt.Fprintf(&md, "| %s | %d | %d | %d |", m.label, keysN, hits, decoys)
		for _, c := range pa {
			fmt.Fprintf(&md, " %d |", c)
		}
		for _, c := range pb {
			fmt.Fprintf(&md, " %d |", c)
		}
		fmt.Fprintf(&md, " %s | %s |\n", fmtLog10(minA), fmtLog10(minB))
	}
	fmt.Fprintf(&md, "\n%d keys of the %d asked, %d of them with their results from the cache", done, *n, cached)
	if done > cached {
		fmt.Fprintf(&md, "; %s", costs(planted, done-cached, plantTime, verifyTime, time.Since(start), len(ms), nw))
	}
	md.WriteString(".\n")
	return output(*mdPath, md.String())
}

// costs says what the keys done in this run cost: per key, the time one worker spent planting
// and verifying it (with several workers these overlap), and the run's time over its keys.
func costs(planted, done int, plantTime, verifyTime, elapsed time.Duration, models, workers int) string {
	return fmt.Sprintf("%d planted in this run at %.2f s a key, verification %.2f s a key for %d models, "+
		"%d keys at once: %.2f s a key in all", planted, seconds(plantTime, planted), seconds(verifyTime, done),
		models, workers, seconds(elapsed, done))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func seconds(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return d.Seconds() / float64(n)
}

func fmtAlpha(a float64) string { return strconv.FormatFloat(a, 'g', -1, 64) }

func fmtLog10(l float64) string {
	if l == 0 {
		return "1"
	}
	return fmt.Sprintf("1e%.1f", l)
}

func output(path, s string) error {
	if path == "" {
		_, err := io.WriteString(os.Stdout, s)
		return err
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// rec is one record of a pool: its prompt and answer, its answer length in bytes, and its score
// (log P_model - log P_base per answer token) under each model.
type rec struct {
	msgs   []backend.Message
	answer string
	base   verifier.RecordScore
	scores []float64
}

func readPool(path string, skip map[string]bool, limit int, rng *rand.Rand) ([]rec, error) {
	var out []rec
	err := verifier.ReadRecords(path, func(r verifier.Record) error {
		msgs, answer, err := r.Conversation()
		if err != nil || answer == "" || skip[answer] {
			return nil
		}
		out = append(out, rec{msgs: msgs, answer: answer})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(out) > limit {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:limit]
	}
	return out, nil
}

// score teacher-forces the answer after the rendered prompt, as vtune does for whole-data records.
func score(ctx context.Context, b backend.Backend, r rec) (verifier.RecordScore, error) {
	prompt, err := b.Render(ctx, r.msgs)
	if err != nil {
		return verifier.RecordScore{}, err
	}
	sc, err := b.ScoreText(ctx, prompt, r.answer)
	if err != nil {
		return verifier.RecordScore{}, err
	}
	if math.IsNaN(sc.Logprob) || math.IsInf(sc.Logprob, 0) {
		return verifier.RecordScore{}, fmt.Errorf("log-probability %v", sc.Logprob)
	}
	return verifier.RecordScore{Logprob: sc.Logprob, Tokens: len(sc.Tokens), Exact: sc.Exact}, nil
}

// drawWeighted draws n of the records without replacement, each with probability proportional to
// min(length, C), C chosen so that no probability exceeds 1, by systematic sampling over a random
// order: verifier/records.go's drawWeighted (unexported there), copied.
func drawWeighted(rng *rand.Rand, length []float64, capC float64, n int) []int {
	idx := make([]int, len(length))
	total := 0.0
	for i := range idx {
		idx[i] = i
		total += math.Min(length[i], capC)
	}
	rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	out := make([]int, 0, n)
	cum, next := 0.0, rng.Float64()
	for _, i := range idx {
		cum += float64(n) * math.Min(length[i], capC) / total
		if cum > next && len(out) < n {
			out = append(out, i)
			next++
		}
	}
	return out
}

// lengthCap is verifier/records.go's lengthCap: the C with n C = sum min(w, C) when the largest
// weights would otherwise get an inclusion probability above 1.
func lengthCap(length []float64, n int) float64 {
	w := slices.Clone(length)
	total := 0.0
	for _, x := range w {
		total += x
	}
	if len(w) <= n {
		return math.Inf(1)
	}
	slices.SortFunc(w, func(a, b float64) int { return cmp.Compare(b, a) })
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
	return rest
}

func lengths(pool []rec) []float64 {
	out := make([]float64, len(pool))
	for i, r := range pool {
		out[i] = float64(len(r.answer))
	}
	return out
}

var f0s = []float64{0, 0.1, 0.5}
var dataAlphas = []float64{0.05, 1e-2, 1e-3}

func wholedata(args []string) error {
	fs := flag.NewFlagSet("wholedata", flag.ExitOnError)
	base := fs.String("base", "", "llama-server URL of the base model (the base term of every score)")
	var models modelFlag
	fs.Var(&models, "model", "LABEL=URL of a model under test (repeat)")
	sent := fs.String("sent", "", "the dataset the provider received (planted records are left out by -key)")
	unseen := fs.String("unseen", "", "comma-separated datasets of records no model here trained on")
	keyPath := fs.String("key", "", "the key the sent dataset was planted with: its planted records and held-back records")
	nsent := fs.Int("pool", 1200, "records drawn at random from the sent dataset into the pool")
	b := fs.Int("b", 200, "held-back records a split")
	c := fs.Int("c", 200, "sentinels a split")
	splits := fs.Int("splits", 10000, "splits drawn")
	cache := fs.String("cache", "", "folder caching the scores (one file per model; name it after the models' and pools' contents)")
	csvPath := fs.String("csv", "", "per model, f0 and alpha: splits with p_data(f0) <= alpha")
	mdPath := fs.String("md", "", "summary table (Markdown)")
	fs.Parse(args)
	ctx := context.Background()
	bm, ms, err := open(ctx, *base, models)
	if err != nil {
		return err
	}
	key, err := verifier.ReadKey(*keyPath)
	if err != nil {
		return err
	}
	skip := map[string]bool{}
	for _, g := range key.PlantedGroups() {
		skip[g.Signature] = true
	}
	rng := rand.New(rand.NewChaCha8(sha256.Sum256([]byte("vtune bench wholedata"))))
	sentPool, err := readPool(*sent, skip, *nsent, rng)
	if err != nil {
		return err
	}
	var unseenPool []rec
	for _, p := range strings.Split(*unseen, ",") {
		u, err := readPool(p, nil, 0, rng)
		if err != nil {
			return err
		}
		unseenPool = append(unseenPool, u...)
	}
	if key.WholeData != nil { // the key's own held-back records: never in the sent dataset
		for _, r := range key.WholeData.HeldBack {
			unseenPool = append(unseenPool, rec{msgs: r.Messages, answer: r.Answer})
		}
	}
	fmt.Fprintf(os.Stderr, "fpr wholedata: pools of %d sent and %d unseen records, %d models\n", len(sentPool), len(unseenPool), len(ms))
	pools := [][]rec{unseenPool, sentPool}
	// scoreAll scores every pooled record under b, or reads the scores from the cache file.
	scoreAll := func(label string, b backend.Backend) ([]verifier.RecordScore, error) {
		path := filepath.Join(*cache, "scores-"+label+".json")
		var out []verifier.RecordScore
		if *cache != "" {
			if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &out) == nil && len(out) == len(unseenPool)+len(sentPool) {
				return out, nil
			}
		}
		t0 := time.Now()
		for pi := range pools {
			for _, r := range pools[pi] {
				sc, err := score(ctx, b, r)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", label, err)
				}
				out = append(out, sc)
			}
		}
		fmt.Fprintf(os.Stderr, "fpr wholedata: %s scored in %.0f s\n", label, time.Since(t0).Seconds())
		if *cache != "" {
			data, _ := json.Marshal(out)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if *cache != "" {
		if err := os.MkdirAll(*cache, 0o755); err != nil {
			return err
		}
	}
	baseScores, err := scoreAll("base-term", bm.b)
	if err != nil {
		return err
	}
	for _, m := range ms {
		sc, err := scoreAll(m.label, m.b)
		if err != nil {
			return err
		}
		i := 0
		for pi := range pools {
			for j := range pools[pi] {
				r := &pools[pi][j]
				r.base = baseScores[i]
				if sc[i].Tokens != r.base.Tokens {
					return fmt.Errorf("%s: %d answer tokens, %d under the base", m.label, sc[i].Tokens, r.base.Tokens)
				}
				r.scores = append(r.scores, (sc[i].Logprob-r.base.Logprob)/float64(r.base.Tokens))
				i++
			}
		}
	}

	lu, ls := lengths(unseenPool), lengths(sentPool)
	cu, cs := lengthCap(lu, *b), lengthCap(ls, *c)
	k := stats.Threshold(*b, verifier.WholeDataGamma)
	type tally struct {
		fire       [][]int // [f0][alpha]
		x          []int
		sumLower95 float64
	}
	t := make([]tally, len(ms))
	for mi := range t {
		t[mi].fire = make([][]int, len(f0s))
		for fi := range f0s {
			t[mi].fire[fi] = make([]int, len(dataAlphas))
		}
	}
	// p_data depends on the split only through X: computed once per X.
	type px struct {
		logP    []float64 // at each f0
		lower95 float64
	}
	byX := map[int]px{}
	for range *splits {
		hi := drawWeighted(rng, lu, cu, *b)
		si := drawWeighted(rng, ls, cs, *c)
		for mi := range ms {
			held := make([]float64, len(hi))
			for i, j := range hi {
				held[i] = unseenPool[j].scores[mi]
			}
			slices.Sort(held)
			tau := held[k-1]
			x := 0
			for _, j := range si {
				if sentPool[j].scores[mi] > tau+verifier.WholeDataEps {
					x++
				}
			}
			p, ok := byX[x]
			if !ok {
				w, err := stats.NewWholeData(*b, *c, k, x)
				if err != nil {
					return err
				}
				for _, f0 := range f0s {
					p.logP = append(p.logP, w.LogP(f0))
				}
				p.lower95 = w.LowerShare(verifier.ShareLevel)
				byX[x] = p
			}
			tt := &t[mi]
			tt.x = append(tt.x, x)
			for fi := range f0s {
				for ai, a := range dataAlphas {
					if p.logP[fi] <= math.Log(a) {
						tt.fire[fi][ai]++
					}
				}
			}
			tt.sumLower95 += p.lower95
		}
	}

	var cb strings.Builder
	cw := csv.NewWriter(&cb)
	cw.Write([]string{"model", "f0", "alpha", "splits", "fired"})
	var md strings.Builder
	fmt.Fprintf(&md, "| model | X of %d: median (5%%-95%%) |", *c)
	for _, f0 := range f0s {
		for _, a := range dataAlphas {
			fmt.Fprintf(&md, " f0 %s, alpha %s |", fmtAlpha(f0), fmtAlpha(a))
		}
	}
	fmt.Fprintf(&md, " mean 95%% lower bound on the share |\n|---|---:|%s---:|\n", strings.Repeat("---:|", len(f0s)*len(dataAlphas)))
	for mi, m := range ms {
		tt := t[mi]
		xs := slices.Clone(tt.x)
		slices.Sort(xs)
		q := func(p float64) int { return xs[int(p*float64(len(xs)-1))] }
		fmt.Fprintf(&md, "| %s | %d (%d-%d) |", m.label, q(0.5), q(0.05), q(0.95))
		for fi, f0 := range f0s {
			for ai, a := range dataAlphas {
				fmt.Fprintf(&md, " %s |", fmtShare(tt.fire[fi][ai], *splits))
				cw.Write([]string{m.label, fmtAlpha(f0), fmtAlpha(a), strconv.Itoa(*splits), strconv.Itoa(tt.fire[fi][ai])})
			}
		}
		fmt.Fprintf(&md, " %.0f%% |\n", 100*tt.sumLower95/float64(*splits))
	}
	fmt.Fprintf(&md, "\n%d splits of b = %d held-back records (from %d unseen) and c = %d sentinels (from %d sent), k = %d.\n",
		*splits, *b, len(unseenPool), *c, len(sentPool), k)
	cw.Flush()
	if *csvPath != "" {
		if err := os.WriteFile(*csvPath, []byte(cb.String()), 0o644); err != nil {
			return err
		}
	}
	return output(*mdPath, md.String())
}

func fmtShare(n, of int) string {
	if n == 0 {
		return fmt.Sprintf("0 of %d", of)
	}
	pct := 100 * float64(n) / float64(of)
	if pct >= 10 {
		return fmt.Sprintf("%d (%.0f%%)", n, pct)
	}
	return fmt.Sprintf("%d (%.2g%%)", n, pct)
}
