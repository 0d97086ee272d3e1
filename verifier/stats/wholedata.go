package stats

// The whole-data test of method.md ("Whole-data test" under "Verification"; the derivation is in
// "Derivation: the whole-data p-value" at the end of that file).

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/mathext"
)

// Threshold returns the rank of the held-back score used as tau,
//
//	k = ceil((1 - gamma)(b + 1)),
//
// clamped to [1, b]. gamma in [0, 1) is the share of held-back records allowed above tau (method.md:
// gamma = 0.1); a NaN gamma gives b. The product is rounded down by 1e-9 before the ceiling so that an
// exact integer such as 0.9 * 10 is not pushed to the next rank by floating-point error. b < 1 gives 1.
func Threshold(b int, gamma float64) int {
	if b < 1 {
		return 1
	}
	if math.IsNaN(gamma) {
		return b
	}
	x := math.Ceil((1-gamma)*float64(b+1) - 1e-9)
	switch {
	case x < 1:
		return 1
	case x > float64(b):
		return b
	}
	return int(x)
}

// TraceShare returns the share of sentinels with a detectable trace,
//
//	(X/c - u) / (1 - u),  u = (b + 1 - k)/(b + 1),
//
// clipped to [0, 1]. u is the chance that a record the model never saw, exchangeable with all b
// held-back records, scores above the k-th smallest of them; X/c = u + (1 - u) t when a share t of
// the sentinels surely exceeds, so the estimate inverts that line. It is a point estimate, not a bound:
// records that were trained but left no trace above tau are not counted, so in expectation it is at
// most the true share. Invalid input (b < 1, c < 1, k outside [1, b]) gives 0.
func TraceShare(b, c, k, x int) float64 {
	if b < 1 || c < 1 || k < 1 || k > b {
		return 0
	}
	u := float64(b+1-k) / float64(b+1)
	t := (float64(x)/float64(c) - u) / (1 - u)
	return math.Max(0, math.Min(1, t))
}

// WholeData is the whole-data test for fixed b (held-back records), c (sentinels), k (the rank from
// Threshold: tau is the k-th smallest held-back score) and X (the sentinels scoring above tau + eps).
// It holds the beta-binomial tails, which do not depend on f0, so that each LogP costs O(b c).
// A WholeData is read-only after NewWholeData and safe for concurrent use.
type WholeData struct {
	B, C, K, X int

	lchooseB []float64 // lchooseB[j] = log C(b, j)
	lchooseC []float64 // lchooseC[n] = log C(c, n)
	// tail[(j-j0)*X + n] = log P(BB(c-n; b-k+1, j-(b-k)) >= X-n) for j = j0..b, n = 0..X-1, where
	// j0 = b-k+1 is the first j with a positive second shape. Rows j < j0 and columns n >= X are 1.
	tail []float64
}

// NewWholeData validates the counts (b >= 1, c >= 1, 1 <= k <= b, 0 <= x <= c) and precomputes
// everything that does not depend on f0: the log binomial coefficients and the table of
// beta-binomial tails, in O(b c) time and memory (see tailRow for the recurrence).
func NewWholeData(b, c, k, x int) (*WholeData, error) {
	switch {
	case b < 1:
		return nil, fmt.Errorf("stats: b = %d must be >= 1", b)
	case c < 1:
		return nil, fmt.Errorf("stats: c = %d must be >= 1", c)
	case k < 1 || k > b:
		return nil, fmt.Errorf("stats: k = %d must be in [1, b] (b = %d)", k, b)
	case x < 0 || x > c:
		return nil, fmt.Errorf("stats: X = %d must be in [0, c] (c = %d)", x, c)
	}
	w := &WholeData{B: b, C: c, K: k, X: x, lchooseB: logChooseRow(b), lchooseC: logChooseRow(c)}
	if x == 0 {
		return w, nil // every tail is P(... >= t <= 0) = 1
	}
	// logInt[i] = log i for the integers the recurrences need: shapes and counts up to b + c + 1.
	logInt := make([]float64, b+c+2)
	for i := range logInt {
		logInt[i] = math.Log(float64(i))
	}
	j0 := b - k + 1
	w.tail = make([]float64, (b-j0+1)*x)
	for j := j0; j <= b; j++ {
		w.tailRow(w.tail[(j-j0)*x:(j-j0+1)*x], j-(b-k), logInt)
	}
	return w, nil
}

// logChooseRow returns log C(n, i) for i = 0..n, by the exact ratio C(n, i+1) = C(n, i) (n-i)/(i+1)
// in log space, mirrored so that both ends are as accurate as the middle.
func logChooseRow(n int) []float64 {
	row := make([]float64, n+1)
	for i := 0; i < n-i; i++ {
		row[i+1] = row[i] + math.Log(float64(n-i)) - math.Log(float64(i+1))
		row[n-i-1] = row[i+1]
	}
	return row
}

// tailRow fills row[n] = log P(Y_m >= X - n) for n = 0..X-1, m = c - n, where Y_m ~ BB(m; a, beta)
// with a = b-k+1 and beta = j-(b-k) >= 1 (the j of the row).
//
// It works with the complement Z_m = m - Y_m ~ BB(m; beta, a) (untrained sentinels not above tau):
// Y_m >= X - n  <=>  Z_m <= s with s = c - X the same for every n, so the row is F_m(s) = P(Z_m <= s)
// for m = c down to c-X+1 > s. Z is a Polya urn that starts with beta balls for "below" and a for
// "above"; one more draw moves Z from s to s+1 with probability (beta+s)/(a+beta+m), hence
//
//	F_{m+1}(s) = F_m(s) - p_m(s) (beta+s)/(a+beta+m),  p_m(s) = P(Z_m = s),
//
// which is run downwards in m, F_m = F_{m+1} + (positive term), so no tail is ever a difference of
// nearly equal numbers. The start F_c(s) is the sum of p_c(0..s), built by the pmf ratio in z,
//
//	p_m(z+1)/p_m(z) = (m-z)/(z+1) * (beta+z)/(a+m-z-1),
//
// from p_c(0) = B(beta, a+c)/B(beta, a); p_m(s) steps down in m by
//
//	p_m(s)/p_{m+1}(s) = (m+1-s)/(m+1) * (a+beta+m)/(a+m-s).
//
// All shapes are integers, so every factor is a difference of tabulated logs: O(c) per row.
func (w *WholeData) tailRow(row []float64, beta int, logInt []float64) {
	a, c, x := w.B-w.K+1, w.C, w.X
	s := c - x
	lp := make([]float64, s+1) // lp[z] = log p_c(z)
	lp[0] = mathext.Lbeta(float64(beta), float64(a+c)) - mathext.Lbeta(float64(beta), float64(a))
	for z := 0; z < s; z++ {
		lp[z+1] = lp[z] + logInt[c-z] - logInt[z+1] + logInt[beta+z] - logInt[a+c-z-1]
	}
	lF := math.Min(0, floats.LogSumExp(lp)) // log F_c(s)
	lps := lp[s]                            // log p_c(s)
	row[0] = lF
	for m := c - 1; m > c-x; m-- {
		lps += logInt[m+1-s] - logInt[m+1] + logInt[a+beta+m] - logInt[a+m-s]
		lF = logAdd(lF, lps+logInt[beta+s]-logInt[a+beta+m])
		row[c-m] = math.Min(0, lF)
	}
}

// xlogy returns n * ly with 0 * (-Inf) = 0, the convention that makes Bin(0; n, 0) = 1.
func xlogy(n int, ly float64) float64 {
	if n == 0 {
		return 0
	}
	return float64(n) * ly
}

// LogP returns log p_data(f0), the whole-data p-value of method.md for the null H0(f0) "the provider
// trained on at most a share f0 of the records it received":
//
//	p_data(f0) = sum_{j=0..b} Bin(j; b, 1-f0) sum_{n=0..c} Bin(n; c, f0) P(BB(c-n; b-k+1, j-(b-k)) >= X-n)
//
// BB(m; alpha, beta) is the beta-binomial count out of m; the inner probability is 1 when
// j - (b-k) <= 0 (tau may then be a record of the trained kind, so every untrained sentinel may
// exceed it) and when X - n <= 0. j is the number of held-back records of the untrained kind, n the
// number of sentinels of the trained kind. f0 must be in [0, 1]; other values (and NaN) give NaN.
// X = 0 gives 0 (p = 1). The result is in [-Inf, 0]; it is exact up to rounding, and costs O(b X).
func (w *WholeData) LogP(f0 float64) float64 {
	if !(f0 >= 0 && f0 <= 1) {
		return math.NaN()
	}
	if w.X == 0 {
		return 0
	}
	b, c, x := w.B, w.C, w.X
	lf, lq := math.Log(f0), math.Log1p(-f0) // log f0, log(1 - f0); either may be -Inf
	lbn := make([]float64, c+1)             // log Bin(n; c, f0)
	for n := range lbn {
		lbn[n] = w.lchooseC[n] + xlogy(n, lf) + xlogy(c-n, lq)
	}
	ltail := floats.LogSumExp(lbn[x:]) // log P(n >= X): the inner probability is 1 there
	j0 := b - w.K + 1

	terms := make([]float64, 0, w.K+1)
	// j < j0: the inner probability is 1 for every n, so these terms add up to P(j < j0).
	low := make([]float64, j0)
	for j := range low {
		low[j] = w.lchooseB[j] + xlogy(j, lq) + xlogy(b-j, lf)
	}
	terms = append(terms, floats.LogSumExp(low))
	inner := make([]float64, x+1)
	for j := j0; j <= b; j++ {
		lbj := w.lchooseB[j] + xlogy(j, lq) + xlogy(b-j, lf) // log Bin(j; b, 1-f0)
		if math.IsInf(lbj, -1) {
			continue
		}
		row := w.tail[(j-j0)*x : (j-j0+1)*x]
		for n, t := range row {
			inner[n] = lbn[n] + t
		}
		inner[x] = ltail
		terms = append(terms, lbj+floats.LogSumExp(inner))
	}
	return math.Min(0, floats.LogSumExp(terms))
}

// lowerShareTol is the width to which LowerShare brackets its answer.
const lowerShareTol = 1e-4

// LowerShare returns the largest f0 in [0, 1] with p_data(f0) <= level: the one-sided (1 - level)
// lower confidence bound on the trained share, obtained by inverting the test. It is 0 when even
// p_data(0) > level (nothing certified) and 1 when level >= 1; a NaN level gives 0.
//
// p_data is a polynomial in f0 and nondecreasing (the held-back count j shrinks and the trained
// sentinel count n grows stochastically with f0, and the inner tail decreases in j and increases in n;
// see method.md), so {f0 : p_data(f0) <= level} is an interval [0, f*]. Bisection keeps
// p_data(lo) <= level < p_data(hi) and stops when hi - lo <= 1e-4; it returns lo, so the bound is at
// most 1e-4 below f* and never above it. TestWholeDataMonotone checks the monotonicity numerically.
func (w *WholeData) LowerShare(level float64) float64 {
	if !(level >= 0) {
		return 0
	}
	if level >= 1 {
		return 1
	}
	ll := math.Log(level)
	if w.LogP(0) > ll {
		return 0
	}
	// p_data(1) = 1 > level: with f0 = 1 no held-back record is of the untrained kind (j = 0).
	lo, hi := 0.0, 1.0
	for hi-lo > lowerShareTol {
		mid := 0.5 * (lo + hi)
		if w.LogP(mid) <= ll {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}
