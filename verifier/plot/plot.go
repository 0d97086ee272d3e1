// Package plot draws a verification run's reports as PNG figures, so that many checkpoints can be
// compared at a glance: the p-values of each model, the log-likelihood ratios of planted groups
// against decoys, and the whole-data test's score distributions. It only reads Reports; it
// decides nothing.
package plot

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"vtune/verifier"
)

// Labeled is one model's report with the name its figures show.
type Labeled struct {
	Label  string
	Report *verifier.Report
}

// Figure size: 6 x 4 inches at 120 dpi (720 x 480 pixels) is large enough for a dozen models and
// small enough to sit in a README or a terminal image viewer.
const (
	width  = 6 * vg.Inch
	height = 4 * vg.Inch
	dpi    = 120
)

// maxLabel is the longest model label drawn, in characters: longer ones are shortened so that
// twelve rotated labels do not run into each other.
const maxLabel = 16

// Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
var (
	blue      = color.RGBA{0x00, 0x72, 0xB2, 0xFF}
	orange    = color.RGBA{0xE6, 0x9F, 0x00, 0xFF}
	green     = color.RGBA{0x00, 0x9E, 0x73, 0xFF}
	vermilion = color.RGBA{0xD5, 0x5E, 0x00, 0xFF}
	grey      = color.RGBA{0x70, 0x70, 0x70, 0xFF}
)

// Write draws the reports into dir, creating it if missing, and returns the paths it wrote, in
// this order:
//
//   - pvalues.png: -log10 p_agnostic, p_base and (where the whole-data test ran) p_data per model,
//     with the decision thresholds;
//   - llr.png: the per-group LLR of planted groups and decoys per model, when some report has
//     LLRs (verify --llr);
//   - wholedata-<label>.png: one per model whose report has the whole-data test's scores.
//
// Each file is written under a temporary name and renamed into place, so a reader never sees
// half a PNG. On error Write returns the files already written with it.
func Write(dir string, reps []Labeled) (files []string, err error) {
	if err := check(reps); err != nil {
		return nil, err
	}
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	labels := axisLabels(reps)
	write := func(name string, p *gplot.Plot) error {
		path := filepath.Join(dir, name)
		if err := save(p, path); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		files = append(files, path)
		return nil
	}
	p, err := pvalues(reps, labels)
	if err != nil {
		return files, fmt.Errorf("plot p-values: %w", err)
	}
	if err := write("pvalues.png", p); err != nil {
		return files, err
	}
	if p, err := llr(reps, labels); err != nil {
		return files, fmt.Errorf("plot LLRs: %w", err)
	} else if p != nil {
		if err := write("llr.png", p); err != nil {
			return files, err
		}
	}
	names := fileLabels(reps)
	for i, r := range reps {
		p, err := wholeData(r.Report.WholeData, labels[i])
		if err != nil {
			return files, fmt.Errorf("plot whole-data test of %s: %w", labels[i], err)
		}
		if p == nil {
			continue
		}
		if err := write("wholedata-"+names[i]+".png", p); err != nil {
			return files, err
		}
	}
	return files, nil
}

func check(reps []Labeled) error {
	if len(reps) == 0 {
		return errors.New("plot: no reports")
	}
	for i, r := range reps {
		if r.Report == nil {
			return fmt.Errorf("plot: report %d (%q) is nil", i+1, r.Label)
		}
	}
	return nil
}

// makeDir creates dir, saying plainly when a file stands in its place (MkdirAll's "not a
// directory" names neither which path nor why).
func makeDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("plot directory %s exists and is not a directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot directory: %w", err)
	}
	return nil
}

// save renders p and writes it to path through a temporary file in the same directory.
func save(p *gplot.Plot, path string) (err error) {
	c := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(dpi))
	p.Draw(draw.New(c))
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// newPlot returns a plot with the house style: title, axis labels and a white background.
func newPlot(title, xLabel, yLabel string) *gplot.Plot {
	p := gplot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.Padding = vg.Points(1.5)
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	return p
}

// plainTicks are gonum's default ticks labelled without padding zeros: "75", not "75.00".
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []gplot.Tick {
	ts := gplot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'g', 6, 64)
		}
	}
	return ts
}

// nominalX names the models along the x axis, rotating the names when they would otherwise
// collide.
func nominalX(p *gplot.Plot, labels []string) {
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
	long := 0
	for _, l := range labels {
		long = max(long, utf8.RuneCountInString(l))
	}
	if len(labels)*long > 40 {
		p.X.Tick.Label.Rotation = math.Pi / 6
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
	}
}

// axisLabels are the labels drawn under the models: shortened, and "model N" for an empty one.
func axisLabels(reps []Labeled) []string {
	out := make([]string, len(reps))
	for i, r := range reps {
		l := strings.TrimSpace(r.Label)
		if l == "" {
			l = fmt.Sprintf("model %d", i+1)
		}
		out[i] = shorten(l, maxLabel)
	}
	return out
}

// shorten keeps the start and the end of a long label: checkpoints often differ only in a
// trailing step number.
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// fileLabels are the labels as they go into file names: letters, digits, '.', '-' and '_' only,
// never empty, and unique, so that two models never overwrite each other's figure.
func fileLabels(reps []Labeled) []string {
	out := make([]string, len(reps))
	seen := map[string]bool{}
	for i, r := range reps {
		base := safeName(r.Label)
		if base == "" {
			base = fmt.Sprintf("model-%d", i+1)
		}
		name := base
		for n := 2; seen[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		seen[name] = true
		out[i] = name
	}
	return out
}

func safeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b.WriteRune(c)
		default:
			b.WriteRune('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	// Leading dots would hide the file and could spell "..".
	return strings.Trim(b.String(), "._")
}
