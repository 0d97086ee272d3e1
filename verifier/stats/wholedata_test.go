package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// slowBBTail returns P(BB(m; alpha, beta) >= t) by summing the pmf
// C(m, y) B(y+alpha, m-y+beta) / B(alpha, beta) term by term, with the conventions of LogP: 1 when
// beta <= 0 or t <= 0.
func slowBBTail(m, alpha, beta, t int) float64 {
	if beta <= 0 || t <= 0 {
		return 1
	}
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x)); return v }
	lbeta := func(x, y int) float64 { return lg(x) + lg(y) - lg(x+y) }
	sum := 0.0
	for y := t; y <= m; y++ {
		sum += math.Exp(lg(m+1) - lg(y+1) - lg(m-y+1) + lbeta(y+alpha, m-y+beta) - lbeta(alpha, beta))
	}
	return sum
}

// slowP is the formula of method.md written out directly: plain float64 sums, O(b c^2).
// f0 must be in (0, 1) (distuv.Binomial gives NaN at the ends).
func slowP(b, c, k, x int, f0 float64) float64 {
	bj := distuv.Binomial{N: float64(b), P: 1 - f0}
	bn := distuv.Binomial{N: float64(c), P: f0}
	p := 0.0
	for j := 0; j <= b; j++ {
		pj := bj.Prob(float64(j))
		for n := 0; n <= c; n++ {
			p += pj * bn.Prob(float64(n)) * slowBBTail(c-n, b-k+1, j-(b-k), x-n)
		}
	}
	return p
}

func mustWholeData(t testing.TB, b, c, k, x int) *WholeData {
	t.Helper()
	w, err := NewWholeData(b, c, k, x)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		b     int
		gamma float64
		want  int
	}{
		{256, 0.1, 232}, // ceil(231.3)
		{64, 0.1, 59},   // ceil(58.5)
		{9, 0.1, 9},     // 0.9 * 10 = 9 exactly: not 10
		{10, 0.1, 10},   // ceil(9.9)
		{99, 0.2, 80},   // 0.8 * 100 = 80 exactly
		{5, 0.99, 1},    // ceil(0.06)
		{5, 0, 5},       // 6, clamped to b
		{5, 1, 1},       // 0, clamped to 1
		{0, 0.1, 1},
		{7, math.NaN(), 7},
	} {
		if got := Threshold(tc.b, tc.gamma); got != tc.want {
			t.Errorf("Threshold(%d, %g) = %d, want %d", tc.b, tc.gamma, got, tc.want)
		}
	}
}

func TestTraceShare(t *testing.T) {
	b, c := 256, 256
	k := Threshold(b, 0.1)
	u := float64(b+1-k) / float64(b+1)
	if got := TraceShare(b, c, k, c); got != 1 {
		t.Errorf("X = c: got %g, want 1", got)
	}
	if got := TraceShare(b, c, k, 0); got != 0 {
		t.Errorf("X = 0: got %g, want 0 (clipped)", got)
	}
	if got := TraceShare(b, c, k, 10); got != 0 { // 10/256 < u: clipped
		t.Errorf("X = 10: got %g, want 0 (clipped)", got)
	}
	if got, want := TraceShare(b, c, k, 184), (184.0/256-u)/(1-u); math.Abs(got-want) > 1e-15 {
		t.Errorf("X = 184: got %g, want %g", got, want)
	}
	if got := TraceShare(b, 2*c, k, 2*c+5); got != 1 {
		t.Errorf("X > c: got %g, want 1 (clipped)", got)
	}
	for _, bad := range [][4]int{{0, 1, 1, 0}, {5, 0, 1, 0}, {5, 5, 0, 1}, {5, 5, 6, 1}} {
		if got := TraceShare(bad[0], bad[1], bad[2], bad[3]); got != 0 {
			t.Errorf("TraceShare%v = %g, want 0", bad, got)
		}
	}
}

func TestNewWholeDataErrors(t *testing.T) {
	for _, tc := range []struct {
		b, c, k, x int
		want       string
	}{
		{0, 5, 1, 0, "b = 0"},
		{-3, 5, 1, 0, "b = -3"},
		{5, 0, 1, 0, "c = 0"},
		{5, 5, 0, 0, "k = 0 must be in [1, b]"},
		{5, 5, 6, 0, "k = 6 must be in [1, b]"},
		{5, 5, 3, -1, "X = -1 must be in [0, c]"},
		{5, 5, 3, 6, "X = 6 must be in [0, c]"},
	} {
		w, err := NewWholeData(tc.b, tc.c, tc.k, tc.x)
		if err == nil || w != nil {
			t.Errorf("NewWholeData(%d, %d, %d, %d): no error", tc.b, tc.c, tc.k, tc.x)
			continue
		}
		if !strings.HasPrefix(err.Error(), "stats: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewWholeData(%d, %d, %d, %d): error %q does not name %q", tc.b, tc.c, tc.k, tc.x, err, tc.want)
		}
	}
	for _, ok := range [][4]int{{1, 1, 1, 0}, {1, 1, 1, 1}, {5, 3, 5, 3}, {5, 3, 1, 0}} {
		if _, err := NewWholeData(ok[0], ok[1], ok[2], ok[3]); err != nil {
			t.Errorf("NewWholeData%v: %v", ok, err)
		}
	}
}

// TestWholeDataMatchesSlow checks LogP against the direct O(b c^2) sum for small b and c.
func TestWholeDataMatchesSlow(t *testing.T) {
	sizes := []int{5, 12, 33}
	for _, b := range sizes {
		for _, c := range sizes {
			ks := []int{1, Threshold(b, 0.3), Threshold(b, 0.1), b}
			xs := []int{1, c / 3, c / 2, (3 * c) / 4, c - 1, c}
			for _, k := range ks {
				for _, x := range xs {
					w := mustWholeData(t, b, c, k, x)
					for _, f0 := range []float64{0.02, 0.1, 0.3, 0.5, 0.77, 0.95} {
						want := slowP(b, c, k, x, f0)
						got := math.Exp(w.LogP(f0))
						if math.Abs(got-want) > 1e-9*want {
							t.Errorf("b=%d c=%d k=%d X=%d f0=%g: got %.15g, want %.15g (rel %.2g)",
								b, c, k, x, f0, got, want, math.Abs(got-want)/want)
						}
					}
					// The ends: f0 = 1 leaves no held-back record of the untrained kind (p = 1); f0 = 0
					// leaves j = b, n = 0.
					if got := w.LogP(1); got != 0 {
						t.Errorf("b=%d c=%d k=%d X=%d: LogP(1) = %g, want 0", b, c, k, x, got)
					}
					want := slowBBTail(c, b-k+1, k, x)
					if got := math.Exp(w.LogP(0)); math.Abs(got-want) > 1e-9*want {
						t.Errorf("b=%d c=%d k=%d X=%d: p(0) = %.15g, want %.15g", b, c, k, x, got, want)
					}
				}
			}
		}
	}
}

// TestWholeDataKnownValues checks the figures quoted in method.md ("Power") at b = c = 256, gamma =
// 0.1 (k = 232), and, outside -short, the same points against the slow direct sum.
//
// The specification (shared/method.md) says f0 = 0.5 needs X >= 184 at alpha-data 1e-3. The exact formula gives a smaller
// threshold: log10 p_data(0.5) is -3.035 at X = 182 and -2.877 at X = 181, so X >= 182 suffices
// (and X = 184, at -3.366, certainly does). A brute-force Monte Carlo of the worst-case model
// (4e6 runs of explicit held-back and sentinel draws, no beta-binomial) gave P(X >= 182) = 9.17e-4
// +- 1.5e-5, P(X >= 183) = 6.21e-4 +- 1.2e-5 and P(X >= 184) = 4.23e-4 +- 1.0e-5, against 9.22e-4,
// 6.33e-4 and 4.30e-4 here; TestWholeDataWorstCaseModel repeats that check at b = c = 64. The test
// pins the exact threshold, 182, and keeps the quoted X = 256 figures, which agree.
func TestWholeDataKnownValues(t *testing.T) {
	b, c := 256, 256
	k := Threshold(b, 0.1)
	if k != 232 {
		t.Fatalf("Threshold(256, 0.1) = %d, want 232", k)
	}
	la := math.Log(1e-3)
	lp := func(x int) float64 { return mustWholeData(t, b, c, k, x).LogP(0.5) }
	p181, p182, p183, p184 := lp(181), lp(182), lp(183), lp(184)
	w256 := mustWholeData(t, b, c, k, 256)
	p256 := w256.LogP(0.5)
	lb := w256.LowerShare(0.05)
	t.Logf("log10 p_data(0.5): X=181 %.4f, X=182 %.4f, X=183 %.4f, X=184 %.4f, X=256 %.4f; LowerShare(0.05) at X=256: %.5f",
		Log10(p181), Log10(p182), Log10(p183), Log10(p184), Log10(p256), lb)
	if !(p184 <= la) {
		t.Errorf("X = 184: log10 p_data(0.5) = %.4f, want <= -3", Log10(p184))
	}
	if !(p182 <= la && p181 > la) {
		t.Errorf("smallest X with p_data(0.5) <= 1e-3 moved: log10 p at X = 181, 182: %.4f, %.4f (want > -3, <= -3)",
			Log10(p181), Log10(p182))
	}
	if math.Abs(Log10(p256)-(-37.4)) > 0.5 {
		t.Errorf("X = 256: log10 p_data(0.5) = %.4f, want -37.4 +- 0.5", Log10(p256))
	}
	if math.Abs(lb-0.86) > 0.01 {
		t.Errorf("X = 256: LowerShare(0.05) = %.5f, want 0.86 +- 0.01", lb)
	}
	if testing.Short() {
		return
	}
	for _, x := range []int{181, 182, 256} {
		for _, f0 := range []float64{0.5, lb} {
			want := slowP(b, c, k, x, f0)
			got := math.Exp(mustWholeData(t, b, c, k, x).LogP(f0))
			if math.Abs(got-want) > 1e-9*want {
				t.Errorf("b=c=256 X=%d f0=%g: got %.15g, slow sum %.15g", x, f0, got, want)
			}
		}
	}
}

// TestWholeDataWorstCaseModel checks the formula itself, not just its arithmetic: it simulates the
// worst case of the derivation with explicit draws (j ~ Bin(b, 1-f0) held-back records of the
// untrained kind with iid scores, the other b - j below everything; n ~ Bin(c, f0) trained
// sentinels above everything; c - n untrained sentinels iid like the j) and compares the frequency
// of X >= x with p_data(f0) at x. Under the worst case p_data is the exact tail, so they must agree
// within sampling error; a wrong shape in the beta-binomial fails here.
func TestWholeDataWorstCaseModel(t *testing.T) {
	const b, c = 64, 64
	k := Threshold(b, 0.1)
	runs := 200000
	if testing.Short() {
		runs = 40000
	}
	r := rand.New(rand.NewPCG(11, 12))
	held := make([]float64, b)
	for _, f0 := range []float64{0.2, 0.5} {
		counts := make([]int, c+1)
		for range runs {
			for i := range held {
				held[i] = math.Inf(-1)
				if r.Float64() < 1-f0 {
					held[i] = r.Float64()
				}
			}
			slices.Sort(held)
			tau := held[k-1]
			x := 0
			for range c {
				if r.Float64() < f0 || r.Float64() > tau {
					x++
				}
			}
			counts[x]++
		}
		tail := 0
		for x := c; x >= 1; x-- {
			tail += counts[x]
			want := math.Exp(mustWholeData(t, b, c, k, x).LogP(f0))
			got := float64(tail) / float64(runs)
			sd := math.Sqrt(want * (1 - want) / float64(runs))
			if math.Abs(got-want) > 4.5*sd+1.0/float64(runs) {
				t.Errorf("f0=%g X>=%d: frequency %.5g, p_data %.5g (sd %.2g)", f0, x, got, want, sd)
			}
		}
	}
}

// TestWholeDataMonotone checks, on a fine grid, the property LowerShare relies on: p_data is
// nondecreasing in f0; and that it is nonincreasing in X. It also checks that the bisection finds the
// largest grid point with p_data <= level.
func TestWholeDataMonotone(t *testing.T) {
	for _, cf := range []struct{ b, c, grid, xstep int }{
		{5, 5, 1000, 1}, {12, 33, 1000, 2}, {33, 12, 1000, 1}, {64, 64, 1000, 4}, {256, 256, 250, 32},
	} {
		b, c, grid := cf.b, cf.c, cf.grid
		ks := []int{1, Threshold(b, 0.1), b}
		if b > 64 {
			ks = []int{Threshold(b, 0.1)}
		}
		for _, k := range ks {
			prevX := make([]float64, grid+1) // log p_data at the previous X; X = 0 gives 0
			xs := []int{}
			for x := 0; x <= c; x += cf.xstep {
				xs = append(xs, x)
			}
			if xs[len(xs)-1] != c {
				xs = append(xs, c)
			}
			for _, x := range xs {
				w := mustWholeData(t, b, c, k, x)
				lps := make([]float64, grid+1)
				for i := range lps {
					lps[i] = w.LogP(float64(i) / float64(grid))
					if i > 0 && lps[i] < lps[i-1]-1e-10*math.Max(1, -lps[i-1]) {
						t.Fatalf("b=%d c=%d k=%d X=%d: log p_data(%g) = %.17g < log p_data(%g) = %.17g",
							b, c, k, x, float64(i)/float64(grid), lps[i], float64(i-1)/float64(grid), lps[i-1])
					}
					if lps[i] > prevX[i]+1e-10*math.Max(1, -lps[i]) {
						t.Fatalf("b=%d c=%d k=%d f0=%g: log p_data rises with X at X=%d: %.17g > %.17g",
							b, c, k, float64(i)/float64(grid), x, lps[i], prevX[i])
					}
				}
				prevX = lps
				for _, level := range []float64{0.05, 1e-3} {
					got := w.LowerShare(level)
					best := 0.0
					for i, lp := range lps {
						if lp <= math.Log(level) {
							best = float64(i) / float64(grid)
						}
					}
					if got < best-lowerShareTol-1e-12 || got > best+1.0/float64(grid) {
						t.Errorf("b=%d c=%d k=%d X=%d: LowerShare(%g) = %.5f, grid says %.3f", b, c, k, x, level, got, best)
					}
					if got > 0 && w.LogP(got) > math.Log(level) {
						t.Errorf("b=%d c=%d k=%d X=%d: p_data(LowerShare(%g) = %g) > level", b, c, k, x, level, got)
					}
				}
			}
		}
	}
}

func TestWholeDataEdges(t *testing.T) {
	// X = 0: p = 1 whatever f0.
	for _, bc := range [][3]int{{1, 1, 1}, {10, 7, 9}, {256, 256, 232}} {
		w := mustWholeData(t, bc[0], bc[1], bc[2], 0)
		for _, f0 := range []float64{0, 0.01, 0.5, 0.99, 1} {
			if got := w.LogP(f0); got != 0 {
				t.Errorf("b=%d c=%d k=%d X=0: LogP(%g) = %g, want 0", bc[0], bc[1], bc[2], f0, got)
			}
		}
		if got := w.LowerShare(0.05); got != 0 {
			t.Errorf("X = 0: LowerShare = %g, want 0", got)
		}
	}
	w := mustWholeData(t, 20, 20, 18, 15)
	for _, f0 := range []float64{-0.1, 1.1, math.NaN(), math.Inf(1)} {
		if got := w.LogP(f0); !math.IsNaN(got) {
			t.Errorf("LogP(%g) = %g, want NaN", f0, got)
		}
	}
	if got := w.LowerShare(1); got != 1 {
		t.Errorf("LowerShare(1) = %g, want 1", got)
	}
	if got := w.LowerShare(0); got != 0 {
		t.Errorf("LowerShare(0) = %g, want 0", got)
	}
	if got := w.LowerShare(math.NaN()); got != 0 {
		t.Errorf("LowerShare(NaN) = %g, want 0", got)
	}
	// Random valid inputs: a log-probability, never NaN.
	r := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		b, c := 1+r.IntN(80), 1+r.IntN(80)
		k, x := 1+r.IntN(b), r.IntN(c+1)
		w := mustWholeData(t, b, c, k, x)
		for _, f0 := range []float64{r.Float64(), r.Float64() * 1e-6, 1 - r.Float64()*1e-6, 0, 1} {
			lp := w.LogP(f0)
			if math.IsNaN(lp) || lp > 0 {
				t.Fatalf("b=%d c=%d k=%d X=%d: LogP(%g) = %g", b, c, k, x, f0, lp)
			}
		}
		if s := w.LowerShare(0.05); !(s >= 0 && s <= 1) {
			t.Fatalf("b=%d c=%d k=%d X=%d: LowerShare = %g", b, c, k, x, s)
		}
	}
}

// mcRecord is one record as the simulation sees it: its score if the model did not train on it, and
// whether it is of the kind the provider trains (when the provider receives it, i.e. as a sentinel).
type mcRecord struct {
	score   float64
	trained bool
}

// mcScenario draws one record from the data for a provider that trains a share f0.
type mcScenario struct {
	name string
	draw func(r *rand.Rand, f0 float64) mcRecord
}

var mcScenarios = []mcScenario{
	// (a) A random share: the provider trains each record it receives with probability f0, whatever
	// its content (a random f0 share of a large dataset). Untrained scores are iid.
	{"random", func(r *rand.Rand, f0 float64) mcRecord {
		return mcRecord{score: r.NormFloat64(), trained: r.Float64() < f0}
	}},
	// (b) By content: answer lengths are log-normal (median e^6 bytes); the provider trains the
	// shortest records, those below the f0 quantile of the length distribution (the shortest f0
	// share of a large dataset). Untrained scores grow with length, so the short held-back records,
	// which the provider would have trained, sit at the bottom and pull tau down: the worst case.
	{"shortest", func(r *rand.Rand, f0 float64) mcRecord {
		length := math.Exp(6 + r.NormFloat64())
		cut := math.Exp(6 + distuv.UnitNormal.Quantile(f0))
		return mcRecord{score: math.Log(length) + 0.1*r.NormFloat64(), trained: length < cut}
	}},
	// (c) One topic: topic 0 holds a share f0 of the records, four others share the rest; the
	// provider trains topic 0, whose untrained scores are the lowest.
	{"one topic", func(r *rand.Rand, f0 float64) mcRecord {
		mu := [...]float64{-3, 0, 0.5, 1, 1.5}
		topic := 1 + r.IntN(4)
		if r.Float64() < f0 {
			topic = 0
		}
		return mcRecord{score: mu[topic] + r.NormFloat64(), trained: topic == 0}
	}},
}

// mcX simulates one verification: b + c records drawn, split at random into b held-back records and
// c sentinels; the provider trains the sentinels of the trained kind (held-back records it never
// sees), which then score far above everything; X counts sentinels above tau + 1e-3 with tau the
// k-th smallest held-back score.
func mcX(r *rand.Rand, sc mcScenario, b, c, k int, f0 float64, recs []mcRecord, held []float64) int {
	for i := range recs {
		recs[i] = sc.draw(r, f0)
	}
	r.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	for i := range held {
		held[i] = recs[i].score
	}
	slices.Sort(held)
	tau := held[k-1]
	x := 0
	for _, rec := range recs[b:] {
		s := rec.score
		if rec.trained {
			s += 100
		}
		if s > tau+1e-3 {
			x++
		}
	}
	return x
}

// TestWholeDataMonteCarlo checks the method's requirement: at the boundary of H0(f0) (the provider
// trains exactly the kind that makes up a share f0), P(p_data(f0) <= a) <= a, for random and
// content-based choices.
func TestWholeDataMonteCarlo(t *testing.T) {
	const b, c = 64, 64
	k := Threshold(b, 0.1)
	runs := 20000
	if testing.Short() {
		runs = 3000
	}
	f0s := []float64{0.3, 0.5}
	levels := []float64{0.05, 0.01}
	// logP[i][x] = log p_data(f0s[i]) at X = x, filled on first use.
	logP := make([][]float64, len(f0s))
	for i := range logP {
		logP[i] = make([]float64, c+1)
		for x := range logP[i] {
			logP[i][x] = math.NaN()
		}
	}
	tests := make([]*WholeData, c+1)
	r := rand.New(rand.NewPCG(20240611, 7))
	recs := make([]mcRecord, b+c)
	held := make([]float64, b)
	for _, sc := range mcScenarios {
		for i, f0 := range f0s {
			rejected := make([]int, len(levels))
			sumX := 0
			for range runs {
				x := mcX(r, sc, b, c, k, f0, recs, held)
				sumX += x
				if math.IsNaN(logP[i][x]) {
					if tests[x] == nil {
						tests[x] = mustWholeData(t, b, c, k, x)
					}
					logP[i][x] = tests[x].LogP(f0)
				}
				for l, a := range levels {
					if logP[i][x] <= math.Log(a) {
						rejected[l]++
					}
				}
			}
			for l, a := range levels {
				rate := float64(rejected[l]) / float64(runs)
				allow := a + 3*math.Sqrt(a*(1-a)/float64(runs))
				// size: the rate in the exact worst case, p_data at the smallest X that rejects (<= a).
				size := 0.0
				for x := c; x >= 0; x-- {
					if lp := mustWholeData(t, b, c, k, x).LogP(f0); lp <= math.Log(a) {
						size = math.Exp(lp)
					} else {
						break
					}
				}
				t.Logf("%-9s f0=%.1f a=%.2f: false-positive rate %.4f (%d of %d, mean X %.1f); worst-case size %.4f, allowed %.4f",
					sc.name, f0, a, rate, rejected[l], runs, float64(sumX)/float64(runs), size, allow)
				if rate > allow {
					t.Errorf("%s f0=%g a=%g: false-positive rate %.4f > %.4f", sc.name, f0, a, rate, allow)
				}
			}
		}
	}
}

func BenchmarkWholeDataLowerShare(bm *testing.B) {
	const b, c = 256, 256
	k := Threshold(b, 0.1)
	for bm.Loop() {
		w, err := NewWholeData(b, c, k, 220)
		if err != nil {
			bm.Fatal(err)
		}
		w.LowerShare(0.05)
	}
}

func BenchmarkWholeDataNew(bm *testing.B) {
	const b, c = 256, 256
	k := Threshold(b, 0.1)
	for bm.Loop() {
		if _, err := NewWholeData(b, c, k, 184); err != nil {
			bm.Fatal(err)
		}
	}
}

func BenchmarkWholeDataLogP(bm *testing.B) {
	const b, c = 256, 256
	w, err := NewWholeData(b, c, Threshold(b, 0.1), 220)
	if err != nil {
		bm.Fatal(err)
	}
	for bm.Loop() {
		w.LogP(0.5)
	}
}
