package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"vtune/checkpoint"
	"vtune/verifier"
	"vtune/verifier/plot"
)

// compareFlags are verify's flags for many models in one run.
func compareFlags() []cli.Flag {
	return []cli.Flag{
		&cli.PathFlag{Name: "models", Usage: "file naming the models to compare, one per line: a model name on the server or a checkpoint path, then optionally a label (# starts a comment)"},
		&cli.BoolFlag{Name: "csv", Usage: "with several models: print the table as CSV (p-values as log10)"},
		&cli.BoolFlag{Name: "markdown", Usage: "with several models: print the table as Markdown"},
		&cli.PathFlag{Name: "plot", Usage: "also draw the results as PNG figures in this folder: -log10 p per model, planted and decoy LLRs, sentinel and held-back score distributions (docs/plots.md)"},
		&cli.StringFlag{Name: "quantize", Usage: "also verify each --checkpoint quantized to these GGUF types, comma-separated (e.g. Q8_0,Q4_K_M,Q4_0; made with llama-quantize in a temporary place and removed afterwards; without one, ollama quantizes F16, Q8_0, Q4_K_M and Q4_K_S itself)"},
		&cli.StringFlag{Name: "llama-quantize", EnvVars: []string{"VTUNE_LLAMA_QUANTIZE"}, Usage: "the llama-quantize command for --quantize (default: llama-quantize on PATH)"},
	}
}

// withQuantizations adds, after each checkpoint, one target per --quantize type, checked first.
func withQuantizations(c *cli.Context, ts []target) ([]target, error) {
	list := c.String("quantize")
	if list == "" {
		return ts, nil
	}
	var types []string
	for _, q := range strings.Split(list, ",") {
		q, err := checkpoint.CheckQuant(q)
		if err != nil {
			return nil, fmt.Errorf("--quantize: %v", err)
		}
		if !slices.Contains(types, q) {
			types = append(types, q)
		}
	}
	var out []target
	for _, t := range ts {
		if t.Checkpoint == "" {
			return nil, fmt.Errorf("--quantize: %q is a model on the server, served as it is: give the checkpoint file with --checkpoint", t.Label)
		}
		out = append(out, t)
		for _, q := range types {
			out = append(out, target{Label: t.Label + "@" + q, Checkpoint: t.Checkpoint, Quantize: q})
		}
	}
	return out, nil
}

// targetsOf collects the models to verify from --model, --checkpoint and --models, refusing
// unreadable files, checkpoints that do not exist, and duplicates, before any server is touched.
func targetsOf(c *cli.Context) ([]target, error) {
	var ts []target
	where := map[string]string{} // label -> where it was given
	add := func(t target, from string) error {
		if t.Label == "" {
			t.Label = t.Model + t.Checkpoint
		}
		if prev, ok := where[t.Label]; ok {
			return fmt.Errorf("%s: %q is already given (%s)", from, t.Label, prev)
		}
		if t.Checkpoint != "" {
			if _, err := os.Stat(t.Checkpoint); err != nil {
				what := unwrapPathErr(err).Error()
				if errors.Is(err, fs.ErrNotExist) {
					what = "not found"
				}
				if from == "--checkpoint "+t.Checkpoint {
					return fmt.Errorf("%s: %s", from, what)
				}
				return fmt.Errorf("%s: checkpoint %s: %s", from, t.Checkpoint, what)
			}
		}
		where[t.Label] = from
		ts = append(ts, t)
		return nil
	}
	for _, m := range c.StringSlice("model") {
		if err := add(target{Model: m}, "--model "+m); err != nil {
			return nil, err
		}
	}
	for _, p := range c.StringSlice("checkpoint") {
		if err := add(target{Checkpoint: p}, "--checkpoint "+p); err != nil {
			return nil, err
		}
	}
	if f := c.Path("models"); f != "" {
		listed, err := readModels(f)
		if err != nil {
			return nil, err
		}
		for _, l := range listed {
			if err := add(l.target, fmt.Sprintf("--models %s line %d", f, l.line)); err != nil {
				return nil, err
			}
		}
	}
	if len(ts) == 0 && c.String("quantize") != "" {
		return nil, errors.New("--quantize needs --checkpoint")
	}
	if len(ts) == 0 {
		ts = append(ts, target{}) // llamacpp serves one model and needs no name
	}
	ts, err := withQuantizations(c, ts)
	if err != nil {
		return nil, err
	}
	if len(ts) > 1 && c.String("backend") == "openai" {
		return nil, fmt.Errorf("several models: compare them through ollama or llamacpp")
	}
	return ts, nil
}

type listedModel struct {
	target
	line int
}

// readModels reads a --models file: per line a model name or a checkpoint path (it names an
// existing file or folder, or ends in .gguf), then optionally a label; blank lines and # comments
// are skipped.
func readModels(path string) ([]listedModel, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--models %s: %v", path, unwrapPathErr(err))
	}
	defer f.Close()
	var out []listedModel
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		name, label, _ := strings.Cut(line, " ")
		t := target{Label: strings.TrimSpace(label)}
		if _, err := os.Stat(name); err == nil || strings.HasSuffix(name, ".gguf") || strings.ContainsRune(name, os.PathSeparator) {
			t.Checkpoint = name
		} else {
			t.Model = name
		}
		out = append(out, listedModel{t, n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--models %s: %v", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--models %s: no model in it", path)
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// compared is one model's outcome in a comparison.
type compared struct {
	target
	Seconds float64          `json:"seconds"`
	Exit    int              `json:"exit"`
	Error   string           `json:"error,omitempty"`
	Report  *verifier.Report `json:"report,omitempty"`
}

// compare verifies every target with the same key, one after another, and prints one table. The
// exit code is the largest any model earned (4 inconclusive, 3 server failure, 1 not verified).
func compare(c *cli.Context, open opener, key *verifier.Key, opt verifier.VerifyOptions, ts []target) error {
	var rows []compared
	worst := exitVerified
	for i, t := range ts {
		note(c, "model %d of %d: %s", i+1, len(ts), t.Label)
		start := time.Now()
		rep, err := verifyOne(c, open, key, opt, t)
		if c.Context.Err() != nil {
			return c.Context.Err()
		}
		row := compared{target: t, Seconds: time.Since(start).Seconds(), Report: rep}
		switch {
		case err != nil:
			row.Exit, row.Error = exitUsage, flagError(err)
			if isBackendErr(err) {
				row.Exit = exitBackend
			}
			fmt.Fprintf(c.App.ErrWriter, "vtune: %s: %s\n", t.Label, row.Error)
		case rep.Verdict == verifier.Inconclusive:
			row.Exit = exitInconclusive
		case !rep.Verified:
			row.Exit = exitNotVerified
		}
		worst = max(worst, row.Exit)
		rows = append(rows, row)
	}
	var labeled []plot.Labeled
	for _, r := range rows {
		if r.Report != nil {
			labeled = append(labeled, plot.Labeled{Label: r.Label, Report: r.Report})
		}
	}
	if err := drawPlots(c, labeled); err != nil {
		return err
	}
	var err error
	switch {
	case c.Bool("json"):
		err = writeJSON(c.App.Writer, rows)
	case c.Bool("csv"):
		err = writeCSV(c.App.Writer, rows)
	case c.Bool("markdown"):
		writeMarkdown(c.App.Writer, rows)
	default:
		writeTable(c.App.Writer, rows)
	}
	if err != nil {
		return err
	}
	if worst != exitVerified {
		return exitCode(worst)
	}
	return nil
}

// drawPlots writes --plot's figures, naming each file on stderr (stdout may be JSON).
func drawPlots(c *cli.Context, reps []plot.Labeled) error {
	dir := c.Path("plot")
	if dir == "" || len(reps) == 0 {
		return nil
	}
	files, err := plot.Write(dir, reps)
	for _, f := range files {
		note(c, "wrote %s", f)
	}
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	return nil
}

// exitCode ends a command with that exit code, its reasons already printed.
type exitCode int

func (e exitCode) Error() string { return "exit " + strconv.Itoa(int(e)) }

// columns of the comparison table, and a row's cells in each format. p-values are printed
// rounded in the table and Markdown, and as log10 in CSV, which keeps what underflows a float.
var columns = []string{"model", "hits", "decoy hits", "p_agnostic", "p_base", "p_data", "share >= (95%)", "LLR planted", "LLR decoy", "verdict", "seconds"}

var csvColumns = []string{"model", "hits", "planted", "decoy_hits", "decoys", "log10_p_agnostic", "log10_p_base", "log10_p_data", "share_lower_95", "llr_planted", "llr_decoy", "verdict", "seconds", "error"}

func (r compared) cells() []string {
	rep := r.Report
	if rep == nil {
		return []string{r.Label, "-", "-", "-", "-", "-", "-", "-", "-", "error: " + r.Error, secs(r.Seconds)}
	}
	pData, share := "-", "-"
	if wd := rep.WholeData; wd != nil && wd.Available {
		pData, share = fmtP(wd.Log10PData), fmt.Sprintf("%.0f%%", 100*wd.ShareLower95)
	}
	return []string{r.Label, fmt.Sprintf("%d/%d", rep.Hits, rep.Planted), fmt.Sprintf("%d/%d", rep.DecoyHits, rep.Decoys),
		fmtP(rep.Log10PAgnostic), fmtP(rep.Log10PBase), pData, share,
		fmtLLR(rep.MeanLLRPlanted), fmtLLR(rep.MeanLLRDecoy), rep.Verdict, secs(r.Seconds)}
}

func (r compared) csvCells() []string {
	rep := r.Report
	if rep == nil {
		return []string{r.Label, "", "", "", "", "", "", "", "", "", "", "error", secs(r.Seconds), r.Error}
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	pData, share := "", ""
	if wd := rep.WholeData; wd != nil && wd.Available {
		pData, share = f(wd.Log10PData), f(wd.ShareLower95)
	}
	opt := func(x *float64) string {
		if x == nil {
			return ""
		}
		return f(*x)
	}
	return []string{r.Label, strconv.Itoa(rep.Hits), strconv.Itoa(rep.Planted), strconv.Itoa(rep.DecoyHits), strconv.Itoa(rep.Decoys),
		f(rep.Log10PAgnostic), f(rep.Log10PBase), pData, share, opt(rep.MeanLLRPlanted), opt(rep.MeanLLRDecoy), rep.Verdict, secs(r.Seconds), ""}
}

func writeTable(w io.Writer, rows []compared) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
	}
	tw.Flush()
}

func writeMarkdown(w io.Writer, rows []compared) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(columns, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(columns)))
	for _, r := range rows {
		cells := r.cells()
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

func writeCSV(w io.Writer, rows []compared) error {
	cw := csv.NewWriter(w)
	cw.Write(csvColumns)
	for _, r := range rows {
		cw.Write(r.csvCells())
	}
	cw.Flush()
	return cw.Error()
}

// fmtP prints p = 10^l10 with two significant digits, in exponent form below 0.001, so that
// 1e-171 prints although it underflows nothing here.
func fmtP(l10 float64) string {
	if l10 >= -3 {
		return strconv.FormatFloat(math.Pow(10, l10), 'g', 2, 64)
	}
	e := math.Floor(l10)
	m := math.Pow(10, l10-e)
	if m >= 9.95 { // rounds up to 10
		m, e = 1, e+1
	}
	return fmt.Sprintf("%.1fe%d", m, int(e))
}

func fmtLLR(x *float64) string {
	if x == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *x)
}

func secs(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) }
