package stats

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat/distuv"
)

// bruteTail enumerates all 2^n outcomes.
func bruteTail(p []float64, h int) float64 {
	n := len(p)
	total := 0.0
	for mask := 0; mask < 1<<n; mask++ {
		pr, k := 1.0, 0
		for i := range n {
			if mask&(1<<i) != 0 {
				pr *= p[i]
				k++
			} else {
				pr *= 1 - p[i]
			}
		}
		if k >= h {
			total += pr
		}
	}
	return total
}

func logs(p []float64) []float64 {
	out := make([]float64, len(p))
	for i, v := range p {
		out[i] = math.Log(v)
	}
	return out
}

func TestPoissonBinomialMatchesEnumeration(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 10; n++ {
		for trial := 0; trial < 20; trial++ {
			p := make([]float64, n)
			for i := range p {
				p[i] = r.Float64()
				if trial%3 == 0 {
					p[i] *= 1e-3
				}
			}
			for h := 0; h <= n+1; h++ {
				want := bruteTail(p, h)
				got := math.Exp(LogPoissonBinomialTail(logs(p), h))
				if math.Abs(got-want) > 1e-12*math.Max(1, want) && math.Abs(got-want)/want > 1e-9 {
					t.Fatalf("n=%d h=%d p=%v: got %g, want %g", n, h, p, got, want)
				}
			}
		}
	}
}

func TestPoissonBinomialMatchesBinomial(t *testing.T) {
	// Binomial(10, 0.5): P(X >= 8) = (45+10+1)/1024.
	p := make([]float64, 10)
	for i := range p {
		p[i] = math.Log(0.5)
	}
	if got, want := math.Exp(LogPoissonBinomialTail(p, 8)), 56.0/1024; math.Abs(got-want) > 1e-15 {
		t.Fatalf("Binomial(10,.5) tail at 8: got %v, want %v", got, want)
	}
	// Against sums of gonum's binomial probabilities for other parameters.
	for _, c := range []struct {
		n int
		p float64
	}{{20, 0.1}, {30, 0.7}, {8, 1e-4}} {
		lp := make([]float64, c.n)
		for i := range lp {
			lp[i] = math.Log(c.p)
		}
		b := distuv.Binomial{N: float64(c.n), P: c.p}
		for h := 1; h <= c.n; h++ {
			want := 0.0
			for k := h; k <= c.n; k++ {
				want += b.Prob(float64(k))
			}
			got := math.Exp(LogPoissonBinomialTail(lp, h))
			if math.Abs(got-want) > 1e-10*want+1e-300 {
				t.Fatalf("Binomial(%d,%g) tail at %d: got %g, want %g", c.n, c.p, h, got, want)
			}
		}
	}
}

func TestPoissonBinomialFarTail(t *testing.T) {
	// 50 trials of 1e-10: P(all 50) = 1e-500, far below the smallest double.
	lp := make([]float64, 50)
	for i := range lp {
		lp[i] = math.Log(1e-10)
	}
	if got := Log10(LogPoissonBinomialTail(lp, 50)); math.Abs(got+500) > 1e-9 {
		t.Fatalf("log10 P(X>=50) = %v, want -500", got)
	}
	// P(X >= 1) = 1 - (1-1e-10)^50, about 5e-9: the log1p path must not lose it.
	want := math.Log(-math.Expm1(50 * math.Log1p(-1e-10)))
	if got := LogPoissonBinomialTail(lp, 1); math.Abs(got-want) > 1e-9 {
		t.Fatalf("P(X>=1): got %v, want %v", got, want)
	}
	// Eight groups at 8^-24 each, all hit: log10 = 8 * 24 * log10(1/8).
	g := make([]float64, 8)
	for i := range g {
		g[i] = -24 * math.Log(8)
	}
	if got, want := Log10(LogPoissonBinomialTail(g, 8)), -8*24*math.Log10(8); math.Abs(got-want) > 1e-9 {
		t.Fatalf("8 groups: got %v, want %v", got, want)
	}
	if got := LogPoissonBinomialTail(g, 0); got != 0 {
		t.Fatalf("h=0: got %v, want 0", got)
	}
	if got := LogPoissonBinomialTail(g, 9); !math.IsInf(got, -1) {
		t.Fatalf("h>n: got %v, want -Inf", got)
	}
	// Certain trials: p = 1 gives tail 1 at h = n.
	if got := LogPoissonBinomialTail([]float64{0, 0, 0}, 3); got != 0 {
		t.Fatalf("certain trials: got %v, want 0", got)
	}
}

func TestLogAgnostic(t *testing.T) {
	lq := -24 * math.Log(8) // Q = 8^-24
	groups := make([]AgnosticGroup, 8)
	for i := range groups {
		groups[i] = AgnosticGroup{LogQ: lq, Queries: 1}
	}
	if got := LogAgnostic(groups); got != 0 {
		t.Fatalf("no hits: got %v, want 0 (p = 1)", got)
	}
	for i := 0; i < 3; i++ {
		groups[i].Hit = true
	}
	// p = 255 * (8^-24)^3
	want := math.Log10(255) - 72*math.Log10(8)
	if got := Log10(LogAgnostic(groups)); math.Abs(got-want) > 1e-9 {
		t.Fatalf("3 hits: log10 p = %v, want %v", got, want)
	}
	if want > -61 || want < -63 {
		t.Fatalf("method.md says 3 hits give about 1e-61, formula gives 1e%v", want)
	}
	// Two queried prompts per group double each factor.
	for i := range groups {
		groups[i].Queries = 2
	}
	want2 := want + 3*math.Log10(2)
	if got := Log10(LogAgnostic(groups)); math.Abs(got-want2) > 1e-9 {
		t.Fatalf("m=2: got %v, want %v", got, want2)
	}
	// A weak group cannot push p above 1.
	weak := []AgnosticGroup{{LogQ: math.Log(0.9), Queries: 1, Hit: true}, {LogQ: math.Log(0.9), Queries: 1}}
	if got := LogAgnostic(weak); got != 0 {
		t.Fatalf("weak group: got %v, want 0 (capped at p = 1)", got)
	}
	// Sixty-four groups: 2^64 - 1 does not overflow in log space.
	many := make([]AgnosticGroup, 64)
	for i := range many {
		many[i] = AgnosticGroup{LogQ: lq, Queries: 1, Hit: true}
	}
	want64 := 64*math.Log10(2) + 64*24*math.Log10(1.0/8)
	if got := Log10(LogAgnostic(many)); math.Abs(got-want64) > 1e-6 {
		t.Fatalf("64 groups: got %v, want %v", got, want64)
	}
}

func TestLogBase(t *testing.T) {
	// Two groups with P_base = 0.1 and 0.2; both hit: p = 0.02.
	gr := []BaseGroup{
		{LogBase: []float64{math.Log(0.1)}, Hit: true},
		{LogBase: []float64{math.Log(0.2)}, Hit: true},
	}
	if got := math.Exp(LogBase(gr)); math.Abs(got-0.02) > 1e-15 {
		t.Fatalf("got %v, want 0.02", got)
	}
	// One hit: P(X >= 1) = 1 - 0.9*0.8 = 0.28.
	gr[1].Hit = false
	if got := math.Exp(LogBase(gr)); math.Abs(got-0.28) > 1e-15 {
		t.Fatalf("got %v, want 0.28", got)
	}
	// Two prompts in one group add (union bound): p_1 = 0.1 + 0.3.
	gr = []BaseGroup{{LogBase: []float64{math.Log(0.1), math.Log(0.3)}, Hit: true}}
	if got := math.Exp(LogBase(gr)); math.Abs(got-0.4) > 1e-15 {
		t.Fatalf("got %v, want 0.4", got)
	}
	// No stored base value: assume p_j = 1.
	if got := LogBase([]BaseGroup{{Hit: true}}); got != 0 {
		t.Fatalf("missing base value: got %v, want 0", got)
	}
}

func TestLog1mExp(t *testing.T) {
	for _, x := range []float64{-1e-20, -1e-5, -0.5, -1, -10, -800} {
		want := math.Log(1 - math.Exp(x))
		got := Log1mExp(x)
		if x > -1e-10 {
			want = math.Log(-x) // 1 - e^x ~ -x
		}
		if math.Abs(got-want) > 1e-9*math.Abs(want)+1e-300 {
			t.Errorf("Log1mExp(%v) = %v, want %v", x, got, want)
		}
	}
}

// A group whose m_j Q_j exceeds 1 (one token out of two, queried on 8 prompts) counts as 1, not
// more: one more hit never raises p_agnostic (FuzzLogAgnostic found the uncapped product did).
func TestLogAgnosticCapsEachGroup(t *testing.T) {
	rare := AgnosticGroup{LogQ: -30, Queries: 1, Hit: true}
	loose := AgnosticGroup{LogQ: -math.Ln2, Queries: 8}
	before := LogAgnostic([]AgnosticGroup{rare, loose})
	loose.Hit = true
	if after := LogAgnostic([]AgnosticGroup{rare, loose}); after != before || math.Abs(before-(math.Log(3)-30)) > 1e-12 {
		t.Fatalf("log p %v with the loose group hit, %v without; want both log 3 - 30", after, before)
	}
}

// Tails that are 1 up to rounding come out as log p = 0, never a few ulps above (FuzzLogBase and
// FuzzLogPoissonBinomialTail found log p = 1.6e-16 and 5.6e-17).
func TestPoissonBinomialTailNotAboveOne(t *testing.T) {
	for _, lp := range [][]float64{{-3.78125, -8, 0}, {floats.LogSumExp([]float64{-2.53125, -3.125}), 0}} {
		for h := 0; h <= len(lp); h++ {
			if got := LogPoissonBinomialTail(lp, h); got > 0 {
				t.Errorf("log P(X >= %d) for %v = %v > 0", h, lp, got)
			}
		}
	}
}
