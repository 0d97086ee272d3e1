// Package audit shows what a fine-tuning provider can see in a planted dataset without the key.
//
// The planted records can be found by their shape alone (the same answer in several records, a
// trigger phrase ending several prompts, a copy beside its host), and a provider that finds them
// can train on them alone and still reproduce every signature. The audit runs those key-free
// attacks over the dataset and counts, for each, how many planted and how many natural records it
// flags. The key serves only to label the records, never an attack.
package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"vtune/verifier"
)

// AnyName names the last row of a report: the records flagged by at least one attack.
const AnyName = "any of the above"

// Report is the audit of one dataset.
type Report struct {
	File    string `json:"file"`
	Records int    `json:"records"`
	// Planted counts the records whose answer starts with a planted group's signature; every other
	// record is natural.
	Planted int `json:"planted"`
	Natural int `json:"natural"`
	// Attacks holds one result per attack, in the order run, then AnyName.
	Attacks []Result `json:"attacks"`
}

// Result is what one attack flags.
type Result struct {
	Name           string `json:"name"`
	Description    string `json:"description"`
	FlaggedPlanted int    `json:"flagged_planted"`
	FlaggedNatural int    `json:"flagged_natural"`
	// Precision is the planted share of the flagged records, 0 when none is flagged.
	Precision float64 `json:"precision"`
	// Recall is the flagged share of the planted records, 0 when there are none.
	Recall float64 `json:"recall"`
	F1     float64 `json:"f1"`
	// Strongest marks the single attack with the best F1 on the planted records (ties go to the
	// earlier, cheaper one); none is marked when no attack flags a planted record.
	Strongest bool `json:"strongest,omitempty"`
}

// Run reads the dataset at path once, runs every key-free attack on it and labels the flagged
// records with key. A missing, unreadable or malformed dataset is a *verifier.InputError naming the
// file and, where it applies, the line. A cancelled ctx stops it at the next batch of records or
// between attacks, and Run returns ctx.Err() as it is.
func Run(ctx context.Context, path string, key *verifier.Key) (*Report, error) {
	if key == nil {
		return nil, errors.New("audit: key is nil")
	}
	s, err := collect(ctx, path, key)
	if err != nil {
		return nil, err
	}
	defer s.close()
	flags, err := runAttacks(ctx, s)
	if err != nil {
		return nil, err
	}
	return report(path, s, flags), nil
}

// runAttacks returns every attack's flags, in the order of attacks.
func runAttacks(ctx context.Context, s *spill) ([]bitset, error) {
	var flags []bitset
	for _, a := range attacks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := a.flag(s)
		if err != nil {
			return nil, err
		}
		flags = append(flags, f)
	}
	return flags, nil
}

// report scores the attacks' flags against the labels.
func report(path string, s *spill, flags []bitset) *Report {
	r := &Report{File: path, Records: s.n}
	r.Planted, _ = s.planted.countAnd(s.planted)
	r.Natural = r.Records - r.Planted
	union := newBitset(s.n)
	for i, a := range attacks {
		union.or(flags[i])
		r.Attacks = append(r.Attacks, r.score(a.name, a.description, flags[i], s.planted))
	}
	r.Attacks = append(r.Attacks, r.score(AnyName, "flagged by at least one attack above", union, s.planted))
	if s := strongest(r.Attacks[:len(r.Attacks)-1]); s >= 0 {
		r.Attacks[s].Strongest = true
	}
	return r
}

// score counts one attack's flags against the labels.
func (r *Report) score(name, desc string, flags, planted bitset) Result {
	res := Result{Name: name, Description: desc}
	res.FlaggedPlanted, res.FlaggedNatural = flags.countAnd(planted)
	if n := res.FlaggedPlanted + res.FlaggedNatural; n > 0 {
		res.Precision = float64(res.FlaggedPlanted) / float64(n)
	}
	if r.Planted > 0 {
		res.Recall = float64(res.FlaggedPlanted) / float64(r.Planted)
	}
	if res.Precision+res.Recall > 0 {
		res.F1 = 2 * res.Precision * res.Recall / (res.Precision + res.Recall)
	}
	return res
}

// strongest returns the index of the result with the best positive F1, the first on ties, or -1.
func strongest(rs []Result) int {
	best := -1
	for i, r := range rs {
		if r.F1 > 0 && (best < 0 || r.F1 > rs[best].F1) {
			best = i
		}
	}
	return best
}

// Strongest returns the attack marked strongest, or nil when no attack flags a planted record.
func (r *Report) Strongest() *Result {
	for i := range r.Attacks {
		if r.Attacks[i].Strongest {
			return &r.Attacks[i]
		}
	}
	return nil
}

// anyRow returns the AnyName row.
func (r *Report) anyRow() Result {
	if len(r.Attacks) == 0 {
		return Result{}
	}
	return r.Attacks[len(r.Attacks)-1]
}

// Summary is one line for the end of planting: the best a provider can do without the key.
func (r *Report) Summary() string {
	if r.Planted == 0 {
		return fmt.Sprintf("audit: no record of %s carries a planted signature (not planted with this key?); the key-free attacks flag %s",
			r.File, plural(r.anyRow().FlaggedNatural, "natural record"))
	}
	s := r.Strongest()
	if s == nil {
		return fmt.Sprintf("audit: no key-free attack finds any of the %d planted records; together they flag %s",
			r.Planted, plural(r.anyRow().FlaggedNatural, "natural record"))
	}
	ones := "ones"
	if s.FlaggedNatural == 1 {
		ones = "one"
	}
	return fmt.Sprintf("audit: the strongest key-free attack (%s) finds %d of %d planted records and %d natural %s",
		s.Name, s.FlaggedPlanted, r.Planted, s.FlaggedNatural, ones)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// WriteReport writes the audit for a person: one row per attack, what each flags, the summary.
func WriteReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "audit of %s: %d records, %d planted, %d natural\n\n", r.File, r.Records, r.Planted, r.Natural)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "attack\tplanted flagged\tnatural flagged\tprecision\trecall")
	for _, a := range r.Attacks {
		fmt.Fprintf(tw, "%s\t%d of %d\t%d of %d\t%s\t%s", a.Name, a.FlaggedPlanted, r.Planted, a.FlaggedNatural, r.Natural,
			percent(a.FlaggedPlanted, a.FlaggedPlanted+a.FlaggedNatural), percent(a.FlaggedPlanted, r.Planted))
		if a.Strongest {
			fmt.Fprint(tw, "\tstrongest")
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, a := range r.Attacks[:max(len(r.Attacks)-1, 0)] {
		fmt.Fprintf(tw, "%s\t%s\n", a.Name, a.Description)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.Summary())
}

// percent writes num/den as a percentage, "-" when den is 0; only exact shares print as 0% or 100%.
func percent(num, den int) string {
	switch {
	case den == 0:
		return "-"
	case num == 0:
		return "0%"
	case num == den:
		return "100%"
	}
	// Clamped so that a share that is not exact never rounds to look exact.
	return fmt.Sprintf("%.1f%%", min(max(100*float64(num)/float64(den), 0.1), 99.9))
}
