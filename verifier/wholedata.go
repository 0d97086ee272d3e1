package verifier

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strings"

	"vtune/backend"
	"vtune/verifier/stats"
)

// Whole-data test settings (method.md). Gamma fixes the threshold's rank; Eps is the margin a
// sentinel must clear, so that ties and tiny numeric offsets never count as evidence.
const (
	WholeDataGamma   = 0.1
	WholeDataEps     = 1e-3 // nats per token
	DefaultMinShare  = 0.5
	DefaultAlphaData = 1e-3
	// ShareLevel is the level of the reported lower confidence bound on the trained share.
	ShareLevel = 0.05
)

// WholeDataResult is the outcome of the whole-data test: did the provider train on the data, or
// only on the planted records?
type WholeDataResult struct {
	Available bool `json:"available"`
	// Note says why the test is not available, or what limits it.
	Note string `json:"note,omitempty"`
	// Guaranteed is false when the held-back records came from the user's own file, which
	// need not be exchangeable with the records sent.
	Guaranteed bool `json:"guaranteed"`
	// Exact is false when some score came from ranked lists alone (an approximation; the test
	// stays valid, only its power suffers).
	Exact bool `json:"exact"`

	HeldBack  int     `json:"held_back"` // b
	Sentinels int     `json:"sentinels"` // c
	K         int     `json:"k"`         // rank of tau among the held-back scores
	Tau       float64 `json:"tau"`       // nats per token
	Eps       float64 `json:"eps"`
	X         int     `json:"x"` // sentinels scoring above tau + eps

	MinShare   float64 `json:"min_share"`
	AlphaData  float64 `json:"alpha_data"`
	Log10PData float64 `json:"log10_p_data"` // log10 p_data(MinShare)
	// ShareLower95 and ShareLowerDecision are lower confidence bounds on the trained share of
	// the data (in answer bytes), at 95% and at 1 - AlphaData.
	ShareLower95       float64 `json:"share_lower_95"`
	ShareLowerDecision float64 `json:"share_lower_decision"`
	// TraceShare is the share with a detectable trace, at most the true share.
	TraceShare float64 `json:"trace_share"`
	// NearDuplicates counts held-back records with a near-duplicate among the sent ones.
	NearDuplicates int `json:"near_duplicates"`
	// Certified: p_data(MinShare) <= AlphaData.
	Certified bool `json:"certified"`

	HeldBackScores []float64 `json:"held_back_scores,omitempty"`
	SentinelScores []float64 `json:"sentinel_scores,omitempty"`
}

// wholeDataTest scores the key's held-back records and sentinels under the model under test and
// computes the test. Both sets are scored in one seeded, randomly interleaved order with the same
// requests, so that nothing about the server's numerics can separate them.
func wholeDataTest(ctx context.Context, b backend.Backend, info backend.ModelInfo, key *Key, opt VerifyOptions) (*WholeDataResult, error) {
	res := &WholeDataResult{MinShare: opt.MinShare, AlphaData: opt.AlphaData, Eps: WholeDataEps, Exact: true}
	w := key.WholeData
	switch {
	case w == nil && key.Version < 2:
		res.Note = fmt.Sprintf("not available: a version %d key has no held-back records (plant again with this vtune)", key.Version)
		return res, nil
	case w == nil:
		res.Note = "not available: the dataset was too small to hold records back when it was planted"
		return res, nil
	case hosted(info):
		res.Note = "not available against a hosted endpoint: it knows which records it received and could treat them apart; serve the returned weights yourself"
		return res, nil
	}
	res.Available, res.Guaranteed, res.NearDuplicates = true, w.Guaranteed(), w.NearDuplicates
	if !res.Guaranteed {
		res.Note = "not guaranteed: the held-back records came from " + strings.TrimPrefix(w.Source, SourceFile) + ", which need not be exchangeable with the records sent"
	}
	recs := w.records()
	scores := make([]float64, len(recs))
	exact := make([]bool, len(recs))
	var progress func(int)
	if opt.Progress != nil {
		progress = func(done int) { opt.Progress(StageScore, done, len(recs)) }
	}
	err := inParallel(ctx, opt.Parallel, interleave(key, len(recs)), progress, func(ctx context.Context, i int) error {
		r := recs[i]
		sc, err := scoreAnswer(ctx, b, r.Messages, r.Answer)
		if err != nil {
			return fmt.Errorf("whole-data record of line %d: %w", r.Line, err)
		}
		scores[i] = (sc.Logprob - r.Base.Logprob) / float64(r.Base.Tokens)
		exact[i] = sc.Exact && r.Base.Exact
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Exact = !slices.Contains(exact, false)
	res.HeldBackScores, res.SentinelScores = scores[:len(w.HeldBack)], scores[len(w.HeldBack):]
	return res, res.decide()
}

// decide computes tau, X, p_data and the share bounds from the scores.
func (r *WholeDataResult) decide() error {
	r.HeldBack, r.Sentinels = len(r.HeldBackScores), len(r.SentinelScores)
	r.K = stats.Threshold(r.HeldBack, WholeDataGamma)
	if r.HeldBack == 0 || r.Sentinels == 0 {
		return fmt.Errorf("whole-data test: %d held-back and %d sentinel scores", r.HeldBack, r.Sentinels)
	}
	sorted := slices.Clone(r.HeldBackScores)
	slices.Sort(sorted)
	r.Tau = sorted[r.K-1]
	r.X = 0
	for _, s := range r.SentinelScores {
		if s > r.Tau+r.Eps {
			r.X++
		}
	}
	t, err := stats.NewWholeData(r.HeldBack, r.Sentinels, r.K, r.X)
	if err != nil {
		return err
	}
	r.Log10PData = stats.Log10(t.LogP(r.MinShare))
	r.ShareLower95 = t.LowerShare(ShareLevel)
	r.ShareLowerDecision = t.LowerShare(r.AlphaData)
	r.TraceShare = stats.TraceShare(r.HeldBack, r.Sentinels, r.K, r.X)
	r.Certified = r.Log10PData <= math.Log10(r.AlphaData)
	return nil
}

// interleave returns a random order of n records, seeded by the key, so that a run is repeatable
// and held-back records and sentinels are mixed through it.
func interleave(key *Key, n int) []int {
	seed := sha256.Sum256([]byte("vtune whole-data order " + key.Seed))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	rand.New(rand.NewChaCha8(seed)).Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	return order
}

// hosted reports whether the model is served from another network than the user's: possibly a
// provider's endpoint, which could answer the records it received differently from the others,
// whatever the serving stack. Loopback and private addresses count as the user's own server.
// (A proxy there could still cheat; the report names the URL it scored through.)
func hosted(info backend.ModelInfo) bool {
	if info.URL == "" {
		return false // an in-process model
	}
	u, err := url.Parse(info.URL)
	if err != nil {
		return true
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !(ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsLinkLocalUnicast())
}
