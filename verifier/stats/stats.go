// Package stats computes the p-values of method.md in natural-log space.
//
// The probabilities involved are routinely far below the smallest float64 (8^-24 per group, and
// products over groups), so every function takes and returns natural logarithms; Log10 converts for
// reports. A log-probability is a float64 in [-Inf, 0].
package stats

import (
	"math"

	"gonum.org/v1/gonum/floats"
)

// Log10 converts a natural logarithm to base 10.
func Log10(lnp float64) float64 { return lnp / math.Ln10 }

// Log1mExp returns log(1 - exp(x)) for x <= 0, accurately at both ends (Mächler 2012): log(-expm1 x)
// near 0, log1p(-exp x) far below it. Log1mExp(0) = -Inf.
func Log1mExp(x float64) float64 {
	if x > -math.Ln2 {
		return math.Log(-math.Expm1(x))
	}
	return math.Log1p(-math.Exp(x))
}

// logAdd returns log(exp a + exp b).
func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// AgnosticGroup is one planted group as the model-agnostic test sees it.
type AgnosticGroup struct {
	LogQ    float64 // log Q_j = -sum_t log k_t, the chance a secret-free model starts with S_j on one prompt
	Queries int     // m_j, the prompts queried for the group
	Hit     bool    // some queried prompt reproduced S_j
}

// LogAgnostic returns the natural log of the model-agnostic p-value
//
//	p = min(1, (2^g - 1) * prod_{j in H} min(1, m_j Q_j))
//
// where g = len(groups) and H is the set of groups that hit. Under H0 (the model was made without the
// secrets) the secret picked S_j with probability Q_j among prefix-free candidates, so one prompt's
// output starts with S_j with probability at most Q_j, m_j prompts with at most min(1, m_j Q_j);
// independence of the secrets gives the product for a fixed H, and a union over the 2^g - 1
// non-empty sets of groups that could have been the hit set pays for choosing H after looking. No
// hit gives p = 1. The cap at 1 matters only for very short signatures queried on many prompts
// (m_j Q_j > 1), where without it one more hit would raise p.
func LogAgnostic(groups []AgnosticGroup) float64 {
	g := len(groups)
	lnp, hits := 0.0, 0
	for _, gr := range groups {
		if gr.Hit {
			hits++
			lnp += math.Min(0, math.Log(float64(max(gr.Queries, 1)))+gr.LogQ)
		}
	}
	if hits == 0 {
		return 0
	}
	// log(2^g - 1) = g log 2 + log(1 - 2^-g)
	lnp += float64(g)*math.Ln2 + math.Log1p(-math.Exp2(-float64(g)))
	return math.Min(0, lnp)
}

// LogPoissonBinomialTail returns log P(X >= h) where X is the number of successes among independent
// trials with success log-probabilities logp (each in [-Inf, 0]). It is exact: a dynamic programme
// over the count's distribution, O(n^2), carried out in log space so that tails far below 1e-308 keep
// their value. h <= 0 gives 0 (certainty); h > n gives -Inf.
func LogPoissonBinomialTail(logp []float64, h int) float64 {
	n := len(logp)
	if h <= 0 {
		return 0
	}
	if h > n {
		return math.Inf(-1)
	}
	// dist[k] = log P(k successes among the trials so far)
	dist := make([]float64, n+1)
	for k := range dist {
		dist[k] = math.Inf(-1)
	}
	dist[0] = 0
	for i, lp := range logp {
		lq := Log1mExp(math.Min(lp, 0))
		for k := i + 1; k >= 1; k-- {
			dist[k] = logAdd(dist[k]+lq, dist[k-1]+lp)
		}
		dist[0] += lq
	}
	// Rounding can put a sum of probabilities that is 1 a few ulps above it; a probability is not.
	return math.Min(0, floats.LogSumExp(dist[h:]))
}

// BaseGroup is one planted group as the base-model test sees it.
type BaseGroup struct {
	// LogBase holds, for each queried prompt, log P_base(S_j | prompt): the base model's
	// teacher-forced probability of the signature (an upper bound where the backend gave one).
	LogBase []float64
	Hit     bool
}

// LogBase returns the natural log of the base-model p-value: with p_j = min(1, sum over queried
// prompts of P_base(S_j | prompt)) (a union bound over the prompts; m_j P_base with one stored value),
// the upper tail at the observed number of hits of the Poisson-binomial distribution of p_1..p_g.
// It assumes the model under test is no likelier than the base model to produce any S_j.
func LogBase(groups []BaseGroup) float64 {
	logp := make([]float64, len(groups))
	hits := 0
	for i, gr := range groups {
		logp[i] = 0 // nothing known: assume the worst
		if len(gr.LogBase) > 0 {
			logp[i] = math.Min(0, floats.LogSumExp(gr.LogBase))
		}
		if gr.Hit {
			hits++
		}
	}
	return LogPoissonBinomialTail(logp, hits)
}
