package verifier

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"

	"vtune/backend"
	"vtune/verifier/stats"
)

// FormatP writes a probability given as log10 p, which may lie far below the smallest float64, in
// scientific notation: "1", "0.28", "3.1e-62".
func FormatP(log10p float64) string {
	switch {
	case log10p >= 0:
		return "1"
	case math.IsInf(log10p, -1):
		return "0"
	case log10p > -3:
		return fmt.Sprintf("%.3g", math.Pow(10, log10p))
	}
	e := math.Floor(log10p)
	m := math.Pow(10, log10p-e)
	if m >= 9.95 { // rounds up to 10.0
		m, e = 1, e+1
	}
	return fmt.Sprintf("%.1fe%d", m, int(e))
}

// MaxQuietFraction is the planted share above which planting warns (the paper plants 0.5%).
const MaxQuietFraction = 0.02

// WritePlantSummary writes what planting did for a person.
func WritePlantSummary(w io.Writer, s *PlantSummary) {
	how := "in place of their hosts"
	if !s.InPlace {
		how = "beside their hosts"
	}
	fmt.Fprintf(w, "planted %d records %s (%.2f%% of %d output records) in %d groups, plus %d decoys\n",
		s.Planted, how, 100*s.Fraction, s.OutputRecords, s.Groups, s.Decoys)
	if s.Fraction > MaxQuietFraction {
		fmt.Fprintf(w, "warning: planted records are %.1f%% of the output, above %.0f%%: they are easier to spot and weigh more in training; use a larger dataset or fewer (--count)\n",
			100*s.Fraction, 100*MaxQuietFraction)
	}
	if s.WholeDataNote != "" {
		fmt.Fprintf(w, "%s: the verdict will rest on the secrets alone only with --min-share 0\n", s.WholeDataNote)
	} else {
		fmt.Fprintf(w, "whole-data test: %d records held back (left out of the output), %d sentinels (left in, unchanged)\n", s.HeldBack, s.Sentinels)
	}
	fmt.Fprintf(w, "tokens added: about %d\n", s.TokensAdded)
	fmt.Fprintf(w, "a model that reproduces every signature gets p_agnostic = %s\n", FormatP(s.Log10PAllHits))
	fmt.Fprintf(w, "wrote %s (give this to the provider)\n", s.Output)
	fmt.Fprintf(w, "wrote %s (keep this secret)\n", s.Key)
	if s.Audit != "" {
		fmt.Fprintln(w, s.Audit)
		fmt.Fprintln(w, "(identical answers are found while a group has several copies: the whole-data test is why that does not matter)")
	}
}

// WriteReport writes a verification report for a person: first what was proven, in plain words,
// then the figures behind it.
func WriteReport(w io.Writer, r *Report) {
	writeVerdict(w, r)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "model under test  %s\n", modelLine(r.Model))
	fmt.Fprintf(w, "base model        %s\n\n", modelLine(r.BaseModel))
	writeGroups(w, r)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "planted groups hit  %d of %d (activation %.0f%% of %d queries)\n", r.Hits, r.Planted, 100*r.Activation, r.Queries)
	fmt.Fprintf(w, "decoys hit          %d of %d", r.DecoyHits, r.Decoys)
	if r.DecoyHits > 0 {
		fmt.Fprint(w, "   WARNING: a decoy was never planted; a hit means the key leaked or matching is broken")
	}
	fmt.Fprintln(w)
	if r.MeanLLRPlanted != nil {
		fmt.Fprintf(w, "mean LLR            planted %+.1f", *r.MeanLLRPlanted)
		if r.MeanLLRDecoy != nil {
			fmt.Fprintf(w, ", decoys %+.1f", *r.MeanLLRDecoy)
		}
		if !r.LLRExact {
			fmt.Fprint(w, "  (* bounds: the server reports only its top tokens)")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "p_agnostic          %s   (any model made without the secrets)\n", FormatP(r.Log10PAgnostic))
	note := ""
	if !r.BaseExact {
		note = "; an upper bound: some base probabilities were bounds"
	}
	fmt.Fprintf(w, "p_base              %s   (the paper's statistic: the base model sampled at temperature 1%s)\n", FormatP(r.Log10PBase), note)
	writeWholeData(w, r.WholeData)
	if r.Provenance != nil {
		fmt.Fprintln(w)
		r.Provenance.write(w)
	}
}

// writeVerdict writes the verdict and what it proves: the report's first lines.
func writeVerdict(w io.Writer, r *Report) {
	scope := ""
	if r.Verified && r.WholeData.MinShare == 0 {
		scope = " (on the secrets alone: no share of the data was asked for)"
	}
	fmt.Fprintf(w, "verdict: %s%s\n", r.Verdict, scope)
	p := r.Log10PAgnostic
	if r.Test == TestBase {
		p = r.Log10PBase
	}
	secrets := "no"
	if r.Significant {
		secrets = "yes"
	}
	fmt.Fprintf(w, "  trained with your secrets: %s, p_%s = %s (%d of %d signatures reproduced; alpha %g)\n",
		secrets, r.Test, FormatP(p), r.Hits, r.Planted, r.Alpha)
	wd := r.WholeData
	switch {
	case !wd.Available:
		fmt.Fprintf(w, "  trained on your data: %s\n", wd.Note)
	case wd.Certified:
		fmt.Fprintf(w, "  trained on your data: yes, at least %.0f%% of it in answer bytes (95%% confidence; %.0f%% at %.4g%%), p_data(%.0f%%) = %s\n",
			100*wd.ShareLower95, 100*wd.ShareLowerDecision, 100*(1-wd.AlphaData), 100*wd.MinShare, FormatP(wd.Log10PData))
		if !wd.Guaranteed {
			fmt.Fprintf(w, "    %s\n", wd.Note)
		}
	default:
		fmt.Fprintf(w, "  trained on your data: not shown for %.0f%% of it, p_data(%.0f%%) = %s > %g (lower bound %.0f%% at 95%% confidence)\n",
			100*wd.MinShare, 100*wd.MinShare, FormatP(wd.Log10PData), wd.AlphaData, 100*wd.ShareLower95)
	}
	for _, reason := range r.Reasons {
		fmt.Fprintf(w, "  reason: %s\n", reason)
	}
}

func writeGroups(w io.Writer, r *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group\tkind\thosts\tqueried\thits\tlog10 Q\tLLR\t")
	for _, g := range r.Groups {
		kind := "planted"
		if g.Decoy {
			kind = "decoy"
		}
		hits := 0
		for _, p := range g.Prompts {
			if p.Hit {
				hits++
			}
		}
		llr := "-"
		if g.LLR != nil {
			llr = fmt.Sprintf("%+.1f", *g.LLR)
			if !g.LLRExact {
				llr += "*"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%.1f\t%s\t\n", g.ID, kind, g.Hosts, len(g.Prompts), hits, g.Log10Q, llr)
	}
	tw.Flush()
}

// writeWholeData writes the whole-data test's figures.
func writeWholeData(w io.Writer, wd *WholeDataResult) {
	if !wd.Available {
		fmt.Fprintf(w, "whole-data test     %s\n", wd.Note)
		return
	}
	fmt.Fprintf(w, "whole-data test     %d of %d sentinels above tau + %g; tau = %+.3f nats/token, rank %d of %d held-back scores\n",
		wd.X, wd.Sentinels, wd.Eps, wd.Tau, wd.K, wd.HeldBack)
	fmt.Fprintf(w, "                    p_data(%.0f%%) = %s; trained share >= %.0f%% (95%%), >= %.0f%% (%.4g%%); with a detectable trace %.0f%%\n",
		100*wd.MinShare, FormatP(wd.Log10PData), 100*wd.ShareLower95, 100*wd.ShareLowerDecision, 100*(1-wd.AlphaData), 100*wd.TraceShare)
	fmt.Fprintf(w, "                    score quartiles (nats/token)  held back %s   sentinels %s\n",
		quartiles(wd.HeldBackScores), quartiles(wd.SentinelScores))
	if wd.Note != "" {
		fmt.Fprintf(w, "                    %s\n", wd.Note)
	}
	if wd.NearDuplicates > 0 {
		fmt.Fprintf(w, "                    %d held-back records have a near-duplicate among the records sent (costs power, not validity)\n", wd.NearDuplicates)
	}
	if !wd.Exact {
		fmt.Fprintln(w, "                    (scores from ranked lists: approximate, the same for both sets; the test stays valid)")
	}
	if !wd.Certified && wd.TraceShare < 0.1 {
		fmt.Fprintln(w, "                    sentinels score like held-back records: no trace of training on the data, or too weak a")
		fmt.Fprintln(w, "                    per-record trace to measure (one epoch, low-rank adapters, large models), which is not")
		fmt.Fprintln(w, "                    evidence of cheating")
	}
}

// quartiles formats the 25th, 50th and 75th percentiles of xs.
func quartiles(xs []float64) string {
	if len(xs) == 0 {
		return "-"
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(f float64) float64 { return s[int(f*float64(len(s)-1))] }
	return fmt.Sprintf("%+.2f / %+.2f / %+.2f", q(0.25), q(0.5), q(0.75))
}

// Provenance records what was verified: the checkpoint's files with their SHA-256, and the server
// that ran them and where (GPU or CPU), as that server reported it. A verdict is only as good as
// the link between it and the bytes the provider returned.
type Provenance struct {
	Checkpoint    string           `json:"checkpoint"`             // --checkpoint as given
	Format        string           `json:"format"`                 // gguf, hf-safetensors, lora-safetensors, lora-gguf
	Architecture  string           `json:"architecture,omitempty"` // e.g. llama, qwen2
	Base          string           `json:"base,omitempty"`         // --base, for an adapter
	Files         []CheckpointFile `json:"files"`
	Server        string           `json:"server"`                   // ollama or llamacpp
	ServerVersion string           `json:"server_version,omitempty"` // as the server reports it
	// Placement is where the model ran, as the server reports it: "CPU", "GPU", or a split such
	// as "38% GPU, 62% CPU"; Offload adds the server's own figures (bytes in VRAM, layers).
	Placement string `json:"placement,omitempty"`
	Offload   string `json:"offload,omitempty"`
	// Quantization is the GGUF type the checkpoint was quantized to before loading, if any.
	Quantization string `json:"quantization,omitempty"`
}

// CheckpointFile is one file of a checkpoint.
type CheckpointFile struct {
	Path   string `json:"path"`
	Role   string `json:"role"` // model, adapter, base, converted (the GGUF made from a folder), merged, quantized
	Format string `json:"format"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (p *Provenance) write(w io.Writer) {
	fmt.Fprintf(w, "checkpoint          %s (%s", p.Checkpoint, p.Format)
	if p.Architecture != "" {
		fmt.Fprintf(w, ", %s", p.Architecture)
	}
	if p.Base != "" {
		fmt.Fprintf(w, ", over base %s", p.Base)
	}
	if p.Quantization != "" {
		fmt.Fprintf(w, ", loaded quantized to %s", p.Quantization)
	}
	fmt.Fprintln(w, ")")
	for _, f := range p.Files {
		fmt.Fprintf(w, "  %-9s %s  %d bytes  sha256 %s\n", f.Role, f.Path, f.Size, f.SHA256)
	}
	fmt.Fprintf(w, "server              %s %s\n", p.Server, p.ServerVersion)
	if p.Placement != "" || p.Offload != "" {
		fmt.Fprintf(w, "ran on              %s", p.Placement)
		if p.Offload != "" {
			fmt.Fprintf(w, " (%s)", p.Offload)
		}
		fmt.Fprintln(w)
	}
}

func modelLine(m backend.ModelInfo) string {
	s := fmt.Sprintf("%s (%s %s)", m.Name, m.Backend, m.URL)
	if m.Digest != "" {
		d := m.Digest
		if len(d) > 12 {
			d = d[:12]
		}
		s += " digest " + d
	}
	return s
}

// KeySummary is what inspect shows of a key.
type KeySummary struct {
	Version int               `json:"version"`
	Created time.Time         `json:"created"`
	Base    backend.ModelInfo `json:"base_model"`
	Params  Params            `json:"params"`
	Format  Format            `json:"format"`
	Records int               `json:"records"`
	Planted int               `json:"planted"`
	Input   string            `json:"input"`
	Output  string            `json:"output"`
	Groups  []GroupSummary    `json:"groups"`
	// Log10PAllHits is log10 p_agnostic when every planted group hits.
	Log10PAllHits float64 `json:"log10_p_all_hits"`
	// FileSHA256 is the SHA-256 of the key file as read: the commitment to publish before the
	// data is handed over (SECURITY.md).
	FileSHA256 string `json:"file_sha256,omitempty"`
}

// GroupSummary is one group as inspect shows it; Trigger and Signature only when revealed.
type GroupSummary struct {
	ID        int     `json:"id"`
	Decoy     bool    `json:"decoy"`
	Hosts     int     `json:"hosts"`
	Prompts   int     `json:"prompts"`
	Tokens    int     `json:"tokens"`
	Log10Q    float64 `json:"log10_q"`
	Log10Base float64 `json:"log10_base"` // base model's probability of the signature on the first prompt
	BaseExact bool    `json:"base_exact"`
	Trigger   string  `json:"trigger,omitempty"`
	Signature string  `json:"signature,omitempty"`
}

// Summarize describes a key; secrets only when reveal is set.
func Summarize(k *Key, reveal bool) *KeySummary {
	s := &KeySummary{Version: k.Version, Created: k.Created, Base: k.Base, Params: k.Params, Format: k.Format,
		Records: k.Records, Planted: k.Planted, Input: k.Input, Output: k.Output}
	s.Base.Template = ""
	var all []stats.AgnosticGroup
	for _, g := range k.Groups {
		gs := GroupSummary{ID: g.ID, Decoy: g.Decoy, Hosts: g.Hosts, Prompts: len(g.Prompts), Tokens: len(g.Tokens),
			Log10Q: stats.Log10(g.LogQ), Log10Base: stats.Log10(g.Prompts[0].Base.Logprob), BaseExact: g.Prompts[0].Base.Exact}
		if reveal {
			gs.Trigger, gs.Signature = g.Trigger, g.Signature
		}
		if !g.Decoy {
			all = append(all, stats.AgnosticGroup{LogQ: g.LogQ, Queries: len(g.Prompts), Hit: true})
		}
		s.Groups = append(s.Groups, gs)
	}
	s.Log10PAllHits = stats.Log10(stats.LogAgnostic(all))
	return s
}

// WriteKeySummary writes a key summary for a person.
func WriteKeySummary(w io.Writer, s *KeySummary) {
	fmt.Fprintf(w, "key version %d, created %s\n", s.Version, s.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "base model  %s\n", modelLine(s.Base))
	fmt.Fprintf(w, "dataset     %s (%s, %d records) -> %s (%d planted)\n", s.Input, s.Format, s.Records, s.Output, s.Planted)
	p := s.Params
	fmt.Fprintf(w, "parameters  groups %d, decoys %d, k %d, signature %d tokens, trigger %d tokens, mode %s, prompts %d\n",
		p.Groups, p.Decoys, p.K, p.SigLen, p.TriggerLen, p.Mode, p.Prompts)
	fmt.Fprintf(w, "all hits    p_agnostic = %s\n", FormatP(s.Log10PAllHits))
	if s.FileSHA256 != "" {
		fmt.Fprintf(w, "commitment  sha256 %s (publish it before handing the data over: SECURITY.md)\n", s.FileSHA256)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "group\tkind\thosts\tprompts\ttokens\tlog10 Q\tlog10 P_base")
	reveal := len(s.Groups) > 0 && s.Groups[0].Signature != ""
	if reveal {
		fmt.Fprint(tw, "\ttrigger\tsignature")
	}
	fmt.Fprintln(tw)
	for _, g := range s.Groups {
		kind := "planted"
		if g.Decoy {
			kind = "decoy"
		}
		base := fmt.Sprintf("%.1f", g.Log10Base)
		if !g.BaseExact {
			base = "<=" + base
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%.1f\t%s", g.ID, kind, g.Hosts, g.Prompts, g.Tokens, g.Log10Q, base)
		if reveal {
			fmt.Fprintf(tw, "\t%q\t%q", g.Trigger, g.Signature)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if !reveal {
		fmt.Fprintln(w, "\n(triggers and signatures hidden; --reveal shows them)")
	}
}
