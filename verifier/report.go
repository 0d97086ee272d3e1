package verifier

import (
	"fmt"
	"io"
	"math"
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

// WritePlantSummary writes what planting did for a person.
func WritePlantSummary(w io.Writer, s *PlantSummary) {
	fmt.Fprintf(w, "planted %d copies (%.2f%% of %d records) in %d groups, plus %d decoys\n",
		s.Planted, 100*s.Fraction, s.Records+s.Planted, s.Groups, s.Decoys)
	fmt.Fprintf(w, "tokens added: about %d\n", s.TokensAdded)
	fmt.Fprintf(w, "a model that reproduces every signature gets p_agnostic = %s\n", FormatP(s.Log10PAllHits))
	fmt.Fprintf(w, "wrote %s (give this to the provider)\n", s.Output)
	fmt.Fprintf(w, "wrote %s (keep this secret)\n", s.Key)
}

// WriteReport writes a verification report for a person.
func WriteReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "model under test  %s\n", modelLine(r.Model))
	fmt.Fprintf(w, "base model        %s\n\n", modelLine(r.BaseModel))
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
	fmt.Fprintf(w, "p_agnostic          %s\n", FormatP(r.Log10PAgnostic))
	note := ""
	if !r.BaseExact {
		note = "  (upper bound: some base probabilities were bounds)"
	}
	fmt.Fprintf(w, "p_base              %s%s\n", FormatP(r.Log10PBase), note)
	p := r.Log10PAgnostic
	if r.Test == TestBase {
		p = r.Log10PBase
	}
	cover := fmt.Sprintf("%d of %d groups reproduced", r.Hits, r.Planted)
	switch {
	case r.Verified:
		fmt.Fprintf(w, "verdict             VERIFIED: p_%s %s <= alpha %g, %s\n", r.Test, FormatP(p), r.Alpha, cover)
	case r.Significant:
		fmt.Fprintf(w, "verdict             NOT VERIFIED: trained with the secrets (p_%s %s <= alpha %g), but only %s,\n"+
			"                    below the %.0f%% a model trained on the whole dataset reproduces: partial training\n",
			r.Test, FormatP(p), r.Alpha, cover, 100*r.MinCoverage)
	default:
		fmt.Fprintf(w, "verdict             NOT VERIFIED: p_%s %s > alpha %g, %s\n", r.Test, FormatP(p), r.Alpha, cover)
	}
	if r.Provenance != nil {
		fmt.Fprintln(w)
		r.Provenance.write(w)
	}
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
}

// CheckpointFile is one file of a checkpoint.
type CheckpointFile struct {
	Path   string `json:"path"`
	Role   string `json:"role"` // model, adapter, base, converted (the GGUF made from a folder)
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
	fmt.Fprintf(w, "all hits    p_agnostic = %s\n\n", FormatP(s.Log10PAllHits))
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
