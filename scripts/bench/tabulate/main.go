// Command tabulate turns the reports of scripts/bench/{quant,share,fpr}.sh into the Markdown of
// docs/results.md's measured section, which it writes between the markers
//
//	<!-- bench:begin --> and <!-- bench:end -->
//
// of -results (replacing what was there; the rest of the file is kept). With -results "" it
// prints the section instead.
//
//	go run ./scripts/bench/tabulate -quant DIR -share DIR -fpr DIR -results docs/results.md -machine TEXT
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"vtune/verifier"
	"vtune/verifier/stats"
)

const (
	begin = "<!-- bench:begin -->"
	end   = "<!-- bench:end -->"
)

// compared is one row of `vtune verify --json` with several models (cmd/vtune/compare.go).
type compared struct {
	Label   string           `json:"label"`
	Seconds float64          `json:"seconds"`
	Exit    int              `json:"exit"`
	Error   string           `json:"error"`
	Report  *verifier.Report `json:"report"`
}

func main() {
	quant := flag.String("quant", "", "folder of quant.sh's ARCH.json")
	share := flag.String("share", "", "folder of share.sh's reports (NAME.json, NAME-base.json)")
	fpr := flag.String("fpr", "", "folder of fpr.sh's secrets.md and wholedata.md")
	results := flag.String("results", "docs/results.md", "file to write the section into (\"\": print it)")
	machine := flag.String("machine", "", "what the figures were measured on")
	archs := flag.String("archs", "tiny-llama,tiny-qwen2", "architectures of the quantization table")
	flag.Parse()

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n<!-- Written by `make bench` (scripts/bench/tabulate); edits here are overwritten. -->\n\n", begin)
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), *machine)
	if *quant != "" {
		if err := quantTables(&b, *quant, strings.Split(*archs, ",")); err != nil {
			fail(err)
		}
	}
	if *share != "" {
		if err := shareTable(&b, *share); err != nil {
			fail(err)
		}
	}
	if *fpr != "" {
		if err := fprTables(&b, *fpr); err != nil {
			fail(err)
		}
	}
	b.WriteString(end + "\n")
	if *results == "" {
		fmt.Print(b.String())
		return
	}
	old, err := os.ReadFile(*results)
	if err != nil {
		fail(err)
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s = strings.TrimRight(s, "\n") + "\n\n" + b.String()
	} else {
		s = s[:i] + b.String() + strings.TrimPrefix(s[j+len(end):], "\n")
	}
	if err := os.WriteFile(*results, []byte(s), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tabulate:", err)
	os.Exit(1)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// fmtP prints a log10 p-value as the reports do.
func fmtP(l10 float64) string {
	switch {
	case l10 >= 0:
		return "1"
	case l10 > -3:
		return fmt.Sprintf("%.3g", math.Pow(10, l10))
	case math.IsInf(l10, -1):
		return "0"
	}
	e := math.Floor(l10)
	m := math.Pow(10, l10-e)
	if m >= 9.95 {
		m, e = 1, e+1
	}
	return fmt.Sprintf("%.1fe%d", m, int(e))
}

func wdCells(r *verifier.Report) (string, string, string) {
	w := r.WholeData
	if w == nil || !w.Available {
		return "-", "-", "-"
	}
	return fmt.Sprintf("%d/%d", w.X, w.Sentinels), fmtP(w.Log10PData), fmt.Sprintf("%.0f%%", 100*w.ShareLower95)
}

func quantTables(b *strings.Builder, dir string, archs []string) error {
	b.WriteString("### Quantization: every architecture x every provider x {F32, Q8_0, Q4_K_M, Q4_0}\n\n")
	b.WriteString("`scripts/bench/quant.sh`: the committed fixtures (seed `fixture`) and the base model, each verified as it is (F32) and quantized by llama-quantize (`vtune verify --quantize Q8_0,Q4_K_M,Q4_0`), through llama-server with the fixture key. The whole-data test's base term stays the F32 base model's (computed at planting).\n\n")
	for _, arch := range archs {
		var rows []compared
		if err := readJSON(filepath.Join(dir, arch+".json"), &rows); err != nil {
			return err
		}
		fmt.Fprintf(b, "#### %s\n\n", arch)
		b.WriteString("| provider | type | hits | decoy hits | p_agnostic | p_base | mean LLR planted / decoy | X/c | p_data(50%) | share >= (95%) | verdict | s |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---:|\n")
		for _, r := range rows {
			prov, typ, ok := strings.Cut(r.Label, "@")
			if !ok {
				typ = "F32"
			}
			if r.Report == nil {
				fmt.Fprintf(b, "| %s | %s | error: %s |\n", prov, typ, r.Error)
				continue
			}
			rep := r.Report
			x, pd, sh := wdCells(rep)
			llr := "-"
			if rep.MeanLLRPlanted != nil && rep.MeanLLRDecoy != nil {
				llr = fmt.Sprintf("%.1f / %.1f", *rep.MeanLLRPlanted, *rep.MeanLLRDecoy)
			}
			fmt.Fprintf(b, "| %s | %s | %d/%d | %d/%d | %s | %s | %s | %s | %s | %s | %s | %.1f |\n", prov, typ,
				rep.Hits, rep.Planted, rep.DecoyHits, rep.Decoys, fmtP(rep.Log10PAgnostic), fmtP(rep.Log10PBase), llr,
				x, pd, sh, rep.Verdict, r.Seconds)
		}
		b.WriteString("\n")
	}
	return nil
}

// Settings of share.sh, in table order.
var settings = []struct{ name, rate, groups string }{
	{"r0.10", "0.1%", "8"}, {"r0.25", "0.25%", "8"}, {"r0.50", "0.5%", "8"}, {"r1.00", "1%", "8"},
	{"g16", "0.5%", "16"}, {"g4", "0.5%", "4"},
}

// fewest returns the fewest queries, one a group in the key's order (the groups are drawn at
// random, so this order is random), after which p_agnostic over the groups queried so far is at
// most 10^target: a verifier that fixes n in advance and queries n groups has the valid test
// (2^n - 1) prod min(1, m_j Q_j) over those n. 0 when no n reaches it.
func fewest(rep *verifier.Report, target float64) (int, float64) {
	return fewestIn(queried(rep), target)
}

// queried lists the planted groups' queries as one-query groups, in the key's order.
func queried(rep *verifier.Report) []stats.AgnosticGroup {
	var gs []stats.AgnosticGroup
	for _, g := range rep.Groups {
		if g.Decoy {
			continue
		}
		for _, p := range g.Prompts {
			gs = append(gs, stats.AgnosticGroup{LogQ: g.Log10Q * math.Ln10, Queries: 1, Hit: p.Hit})
		}
	}
	return gs
}

func fewestIn(all []stats.AgnosticGroup, target float64) (int, float64) {
	for n := 1; n <= len(all); n++ {
		if l := stats.Log10(stats.LogAgnostic(all[:n])); l <= target {
			return n, l
		}
	}
	return 0, 0
}

// meanFewest averages fewest over 10,000 random orders of the queries (a fixed seed): what a
// verifier who picks the groups to query at random can expect. ok is false when some order never
// reaches the target.
func meanFewest(rep *verifier.Report, target float64) (mean float64, ok bool) {
	gs := queried(rep)
	rng := rand.New(rand.NewPCG(1, 2))
	const runs = 10000
	sum := 0
	for range runs {
		rng.Shuffle(len(gs), func(i, j int) { gs[i], gs[j] = gs[j], gs[i] })
		n, _ := fewestIn(gs, target)
		if n == 0 {
			return 0, false
		}
		sum += n
	}
	return float64(sum) / runs, true
}

func shareTable(b *strings.Builder, dir string) error {
	b.WriteString("### Planted share and copies per group (tiny-llama, honest provider)\n\n")
	b.WriteString("`scripts/bench/share.sh`: the WordNet definitions planted with the default signature (24 tokens, k = 8) at each share, fine-tuned by the honest provider simulator with the fixtures' recipe (12 epochs, lr 2e-3, batch 16), verified through llama-server, one query a group. `copies` is the planted records per group (m_j). `queries to 1e-40` is the fewest queries, one a group in the key's (random) order, after which p_agnostic over the groups queried so far is at most 1e-40, then the mean of the same over 10,000 random orders of the groups (the paper: at most 10 queries, about 1e-40, 0.5% planted); `-` when all the queries of the key do not reach it (in some order, for the mean). The `base` column is the base model verified with the same key.\n\n")
	b.WriteString("| planted | groups | copies | hits | p_agnostic | p_base | mean LLR planted / decoy | queries to 1e-40: key order (p there); mean over random orders | decoy hits | X/c | p_data(50%) | verdict | base: hits, p_agnostic |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range settings {
		var rep, base verifier.Report
		if err := readJSON(filepath.Join(dir, s.name+".json"), &rep); err != nil {
			if os.IsNotExist(err) {
				fmt.Fprintf(b, "| %s | %s | not run |\n", s.rate, s.groups)
				continue
			}
			return err
		}
		if err := readJSON(filepath.Join(dir, s.name+"-base.json"), &base); err != nil {
			return err
		}
		lo, hi := math.MaxInt, 0
		for _, g := range rep.Groups {
			if !g.Decoy {
				lo, hi = min(lo, g.Hosts), max(hi, g.Hosts)
			}
		}
		copies := fmt.Sprint(lo)
		if hi > lo {
			copies = fmt.Sprintf("%d-%d", lo, hi)
		}
		q := "-"
		if n, l := fewest(&rep, -40); n > 0 {
			q = fmt.Sprintf("%d (%s)", n, fmtP(l))
		}
		if m, ok := meanFewest(&rep, -40); ok {
			q += fmt.Sprintf("; %.2f", m)
		}
		llr := "-"
		if rep.MeanLLRPlanted != nil && rep.MeanLLRDecoy != nil {
			llr = fmt.Sprintf("%.1f / %.1f", *rep.MeanLLRPlanted, *rep.MeanLLRDecoy)
		}
		x, pd, _ := wdCells(&rep)
		fmt.Fprintf(b, "| %s (%d of %d) | %s | %s | %d/%d | %s | %s | %s | %s | %d/%d | %s | %s | %s | %d, %s |\n",
			s.rate, rep.Copies, rep.OutputRecords, s.groups, copies, rep.Hits, rep.Planted, fmtP(rep.Log10PAgnostic),
			fmtP(rep.Log10PBase), llr, q, rep.DecoyHits, rep.Decoys, x, pd, rep.Verdict, base.Hits, fmtP(base.Log10PAgnostic))
	}
	b.WriteString("\n")
	return nil
}

func fprTables(b *strings.Builder, dir string) error {
	for _, t := range []struct{ file, title string }{
		{"secrets.md", "### False positives of the secrets: fresh keys against models that never saw them (tiny-llama)\n\n`scripts/bench/fpr.sh` (`fpr secrets`): counts of keys with p <= alpha; every hit is a false positive.\n\n"},
		{"wholedata.md", "### False positives of the whole-data test: re-drawn splits (tiny-llama)\n\n`scripts/bench/fpr.sh` (`fpr wholedata`): splits with p_data(f0) <= alpha. A false positive wherever f0 is at least the model's true trained share (base and backdoor-only: about 0; tenth: 0.1; half: 0.5); elsewhere the count is power.\n\n"},
	} {
		data, err := os.ReadFile(filepath.Join(dir, t.file))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		b.WriteString(t.title)
		b.Write(data)
		b.WriteString("\n")
	}
	return nil
}
