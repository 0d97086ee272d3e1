package verifier

import (
	"context"
	"fmt"
	"math"
	"strings"

	"vtune/backend"
	"vtune/verifier/stats"
)

// Tests a decision can rest on.
const (
	TestAgnostic = "agnostic" // p_agnostic: any model made without the secrets (the default)
	TestBase     = "base"     // p_base: the paper's null, the base model's own probabilities
)

// DefaultAlpha is the significance level of the decision.
const DefaultAlpha = 1e-6

// Verdicts (method.md): each says what it proves.
const (
	Verified     = "VERIFIED"     // the secrets came back and the whole-data test certified the share
	NotVerified  = "NOT VERIFIED" // with every reason that applies
	Inconclusive = "INCONCLUSIVE" // a decoy hit: the key leaked or matching is broken
)

// Reasons a model is not verified.
const (
	ReasonNoSecret = "no secret reproduced"
	ReasonNoData   = "secrets reproduced but no evidence of training on the rest of the data"
	ReasonNeither  = "no evidence of training on the data"
	ReasonDecoy    = "a decoy hit: a decoy was never planted, so the key leaked or matching is broken; no other figure can be trusted"
)

// VerifyOptions control verification.
type VerifyOptions struct {
	// Queries is the number of stored prompts to query per group; 0 queries all stored ones.
	Queries int
	Alpha   float64
	Test    string
	// MinShare is f0 of the whole-data test: the share of the data the provider must be shown
	// to have trained on, at level AlphaData. 0 decides on the secrets alone.
	MinShare  float64
	AlphaData float64
	// LLR also teacher-forces every signature under the model under test, to report the
	// log-likelihood ratio against the base model.
	LLR bool
	// Reveal puts the model's outputs in the report (they contain the signatures on a hit).
	Reveal bool
	// Parallel is how many requests may be in flight at once (queries, then record scores);
	// below 2, one at a time. The backend must be safe for concurrent use. Results do not depend
	// on it, only the order in which the server sees the requests.
	Parallel int
	// Progress, if set, is told how far the long steps are; it is called from one goroutine
	// at a time.
	Progress func(stage string, done, total int)
}

// Report is the outcome of verification.
type Report struct {
	Model     backend.ModelInfo `json:"model"`
	BaseModel backend.ModelInfo `json:"base_model"`
	Groups    []GroupResult     `json:"groups"`
	Planted   int               `json:"planted_groups"`
	Hits      int               `json:"hits"`
	DecoyHits int               `json:"decoy_hits"`
	Decoys    int               `json:"decoys"`
	Queries   int               `json:"queries"` // prompts queried on planted groups
	// Records, Copies and OutputRecords describe the planted dataset: records of the input, planted
	// records (in place of their hosts, or copies beside them), records of the output.
	Records       int     `json:"records"`
	Copies        int     `json:"planted_copies"`
	OutputRecords int     `json:"output_records"`
	Activation    float64 `json:"activation"` // fraction of those that reproduced the signature

	Log10PAgnostic float64 `json:"log10_p_agnostic"`
	Log10PBase     float64 `json:"log10_p_base"`
	// BaseExact is false when some base probability in the key is an upper bound, which makes
	// p_base conservative (too large), never too small.
	BaseExact bool `json:"base_exact"`

	// MeanLLRPlanted and MeanLLRDecoy are the mean log-likelihood ratios over planted groups and
	// decoys, when LLR was asked for; LLRExact says whether every score behind them was exact.
	MeanLLRPlanted *float64 `json:"mean_llr_planted,omitempty"`
	MeanLLRDecoy   *float64 `json:"mean_llr_decoy,omitempty"`
	LLRExact       bool     `json:"llr_exact,omitempty"`

	Test  string  `json:"test"`
	Alpha float64 `json:"alpha"`
	// Significant: the chosen p-value is at most Alpha, so the model was made with knowledge of
	// the secrets.
	Significant bool `json:"significant"`
	// Coverage is the share of planted groups that hit: reported, not a rule (with 8 groups its
	// error rates are 4 to 19%).
	Coverage float64 `json:"coverage"`

	// WholeData is the whole-data test: did the provider train on the data, or only on the
	// planted records?
	WholeData *WholeDataResult `json:"whole_data"`

	// Verdict is Verified, NotVerified or Inconclusive; Reasons say why it is not Verified.
	Verdict string   `json:"verdict"`
	Reasons []string `json:"reasons,omitempty"`
	// Verified is Verdict == Verified, for scripts.
	Verified bool `json:"verified"`

	// Provenance says which checkpoint files were verified and where they ran, when verify loaded
	// them itself (--checkpoint); nil for a model already on a server.
	Provenance *Provenance `json:"provenance,omitempty"`
}

// GroupResult is one group's outcome.
type GroupResult struct {
	ID      int            `json:"id"`
	Decoy   bool           `json:"decoy"`
	Hosts   int            `json:"hosts"`
	Prompts []PromptResult `json:"prompts"`
	Hit     bool           `json:"hit"`
	Log10Q  float64        `json:"log10_q"`
	// LLR is log P_model(S_j) - log P_base(S_j) on the first prompt, natural log.
	LLR      *float64 `json:"llr,omitempty"`
	LLRExact bool     `json:"llr_exact,omitempty"`
}

// PromptResult is one query's outcome.
type PromptResult struct {
	Line   int     `json:"line"` // host record's line in the input dataset
	Hit    bool    `json:"hit"`
	Output *string `json:"output,omitempty"`
	// Score is log P_model(S_j | prompt), natural log, when LLR was asked for.
	Score *backend.Score `json:"score,omitempty"`
}

// Check validates the options (NaN and infinities refused), so that a caller can do it before any
// work such as loading a checkpoint. Verify checks them again. A bad value is a *FieldError.
func (opt *VerifyOptions) Check() error {
	switch {
	case !(opt.Alpha > 0 && opt.Alpha < 1):
		return fieldErr("VerifyOptions.Alpha", "must be between 0 and 1 (exclusive), not %g", opt.Alpha)
	case opt.Test != "" && opt.Test != TestAgnostic && opt.Test != TestBase:
		return fieldErr("VerifyOptions.Test", "must be %s or %s, not %q", TestAgnostic, TestBase, opt.Test)
	case opt.Queries < 0:
		return fieldErr("VerifyOptions.Queries", "must not be negative")
	case opt.Parallel < 0:
		return fieldErr("VerifyOptions.Parallel", "must not be negative")
	case !(opt.MinShare >= 0 && opt.MinShare < 1):
		return fieldErr("VerifyOptions.MinShare", "must be in [0, 1), not %g", opt.MinShare)
	case !(opt.AlphaData > 0 && opt.AlphaData < 1):
		return fieldErr("VerifyOptions.AlphaData", "must be between 0 and 1 (exclusive), not %g", opt.AlphaData)
	}
	return nil
}

// Verify queries the model under test with every group's prompts and decides.
func Verify(ctx context.Context, b backend.Backend, key *Key, opt VerifyOptions) (*Report, error) {
	if err := opt.Check(); err != nil {
		return nil, err
	}
	if opt.Test == "" {
		opt.Test = TestAgnostic
	}
	info, err := b.Info(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Model: info, BaseModel: key.Base, Records: key.Records, Copies: key.Planted, OutputRecords: key.OutputRecords(),
		Test: opt.Test, Alpha: opt.Alpha, BaseExact: true, LLRExact: opt.LLR}

	results, err := queryAll(ctx, b, key, opt)
	if err != nil {
		return nil, err
	}
	var agn []stats.AgnosticGroup
	var base []stats.BaseGroup
	var llrPlanted, llrDecoy []float64
	for gi, g := range key.Groups {
		gr := GroupResult{ID: g.ID, Decoy: g.Decoy, Hosts: g.Hosts, Log10Q: stats.Log10(g.LogQ)}
		var logBase []float64
		for i, res := range results[gi] {
			pr := g.Prompts[i]
			gr.Hit = gr.Hit || res.Hit
			logBase = append(logBase, pr.Base.Logprob)
			rep.BaseExact = rep.BaseExact && (pr.Base.Exact || g.Decoy)
			if i == 0 && res.Score != nil {
				llr := res.Score.Logprob - pr.Base.Logprob
				gr.LLR, gr.LLRExact = &llr, res.Score.Exact && pr.Base.Exact
				rep.LLRExact = rep.LLRExact && gr.LLRExact
				if g.Decoy {
					llrDecoy = append(llrDecoy, llr)
				} else {
					llrPlanted = append(llrPlanted, llr)
				}
			}
			if !g.Decoy {
				rep.Queries++
				if res.Hit {
					rep.Activation++
				}
			}
			gr.Prompts = append(gr.Prompts, res)
		}
		if g.Decoy {
			rep.Decoys++
			if gr.Hit {
				rep.DecoyHits++
			}
		} else {
			rep.Planted++
			if gr.Hit {
				rep.Hits++
			}
			agn = append(agn, stats.AgnosticGroup{LogQ: g.LogQ, Queries: len(gr.Prompts), Hit: gr.Hit})
			base = append(base, stats.BaseGroup{LogBase: logBase, Hit: gr.Hit})
		}
		rep.Groups = append(rep.Groups, gr)
	}
	if rep.Queries > 0 {
		rep.Activation /= float64(rep.Queries)
	}
	rep.Log10PAgnostic = stats.Log10(stats.LogAgnostic(agn))
	rep.Log10PBase = stats.Log10(stats.LogBase(base))
	rep.MeanLLRPlanted, rep.MeanLLRDecoy = mean(llrPlanted), mean(llrDecoy)
	p := rep.Log10PAgnostic
	if opt.Test == TestBase {
		p = rep.Log10PBase
	}
	rep.Significant = p <= math.Log10(opt.Alpha)
	if rep.Planted > 0 {
		rep.Coverage = float64(rep.Hits) / float64(rep.Planted)
	}
	if rep.DecoyHits > 0 { // INCONCLUSIVE whatever the test says: no other figure can be trusted
		rep.WholeData = &WholeDataResult{Note: "not run: a decoy hit", MinShare: opt.MinShare, AlphaData: opt.AlphaData}
	} else if rep.WholeData, err = wholeDataTest(ctx, b, info, key, opt); err != nil {
		return nil, err
	}
	rep.decide()
	return rep, nil
}

// decide sets the verdict and its reasons (method.md, "Decision"). A decoy hit overrides
// everything: no other figure can be trusted then.
func (r *Report) decide() {
	data := r.WholeData.Certified || r.WholeData.MinShare == 0
	switch {
	case r.DecoyHits > 0:
		r.Verdict, r.Reasons = Inconclusive, []string{ReasonDecoy}
	case r.Significant && data:
		r.Verdict = Verified
	default:
		r.Verdict = NotVerified
		if !r.Significant {
			r.Reasons = append(r.Reasons, ReasonNoSecret)
		}
		if !data {
			reason := ReasonNoData
			if !r.Significant {
				reason = ReasonNeither
			}
			if !r.WholeData.Available {
				reason += " (whole-data test " + r.WholeData.Note + ")"
			}
			r.Reasons = append(r.Reasons, reason)
		}
	}
	r.Verified = r.Verdict == Verified
}

// queryAll queries every group's prompts (opt.Queries of each), opt.Parallel at a time, and
// returns the results by group and prompt, in the key's order whatever the parallelism.
func queryAll(ctx context.Context, b backend.Backend, key *Key, opt VerifyOptions) ([][]PromptResult, error) {
	type job struct{ group, prompt int }
	var jobs []job
	results := make([][]PromptResult, len(key.Groups))
	for gi, g := range key.Groups {
		results[gi] = make([]PromptResult, queries(g, opt.Queries))
		for pi := range results[gi] {
			jobs = append(jobs, job{gi, pi})
		}
	}
	var progress func(int)
	if opt.Progress != nil {
		progress = func(done int) { opt.Progress(StageVerify, done, len(jobs)) }
	}
	err := inParallel(ctx, opt.Parallel, indexes(len(jobs)), progress, func(ctx context.Context, j int) error {
		g := key.Groups[jobs[j].group]
		res, err := query(ctx, b, g, g.Prompts[jobs[j].prompt], opt)
		if err != nil {
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
		results[jobs[j].group][jobs[j].prompt] = res
		return nil
	})
	return results, err
}

// indexes returns 0, 1, ..., n-1.
func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func queries(g Group, n int) int {
	if n == 0 || n > len(g.Prompts) {
		return len(g.Prompts)
	}
	return n
}

// query decodes one prompt greedily and checks whether the output starts with the signature, byte
// for byte.
func query(ctx context.Context, b backend.Backend, g Group, pr Prompt, opt VerifyOptions) (PromptResult, error) {
	prompt, err := b.Render(ctx, pr.Messages)
	if err != nil {
		return PromptResult{}, err
	}
	// A model that learned the signature may tokenize it differently from the sampled pieces,
	// into more tokens; leave room.
	gen, err := b.Greedy(ctx, prompt, len(g.Tokens)*3/2+8)
	if err != nil {
		return PromptResult{}, err
	}
	res := PromptResult{Line: pr.Line, Hit: strings.HasPrefix(gen, g.Signature)}
	if opt.Reveal {
		res.Output = &gen
	}
	if opt.LLR {
		sc, err := b.Score(ctx, prompt, tokensOf(g.Tokens))
		if err != nil {
			return PromptResult{}, err
		}
		sc.Tokens = nil // per-token detail is noise in a report
		res.Score = &sc
	}
	return res, nil
}

func mean(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	s := 0.0
	for _, x := range xs {
		s += x
	}
	s /= float64(len(xs))
	return &s
}
