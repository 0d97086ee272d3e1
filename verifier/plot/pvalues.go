package plot

import (
	"fmt"
	"image/color"
	"math"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"vtune/verifier"
)

// minClip is the least height at which bars are cut: a p-value of 1e-171 next to a threshold of
// 1e-6 would otherwise flatten the threshold and every weaker model against the axis.
const minClip = 50.0

// series is one p-value drawn for every model that has it.
type series struct {
	name  string
	color color.Color
	log10 []float64 // log10 p per model; NaN where the model lacks it
}

// threshold is a horizontal line at -log10 alpha.
type threshold struct {
	name  string
	alpha float64
	color color.Color
}

// pvalues draws -log10 p per model as grouped bars, with the decision thresholds.
func pvalues(reps []Labeled, labels []string) (*gplot.Plot, error) {
	ss := pSeries(reps)
	ths := thresholds(reps)
	clip := clipHeight(ss, ths)
	title := "Evidence per model: -log10 p (higher is stronger)"
	if clipped(ss, clip) {
		title += fmt.Sprintf("\nbars above %.0f are cut at %.0f; their value is printed on them", clip, clip)
	}
	p := newPlot(title, "model", "-log10 p")
	nominalX(p, labels)
	// The top third or so is left to the legend, which gonum draws inside the axes.
	p.Y.Min, p.Y.Max = 0, clip*1.55
	p.Legend.Top, p.Legend.Left = true, true
	w := barWidth(len(reps), len(ss))
	for k, s := range ss {
		off := w * vg.Length(float64(k)-float64(len(ss)-1)/2)
		if err := addBars(p, s, off, w, clip); err != nil {
			return nil, err
		}
	}
	for _, th := range ths {
		if err := addThreshold(p, th, len(reps)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pSeries collects p_agnostic and p_base for every model, and p_data where the whole-data test ran.
func pSeries(reps []Labeled) []series {
	agn := series{name: "p_agnostic", color: blue}
	base := series{name: "p_base", color: orange}
	data := series{name: "p_data", color: green}
	hasData := false
	for _, r := range reps {
		agn.log10 = append(agn.log10, r.Report.Log10PAgnostic)
		base.log10 = append(base.log10, r.Report.Log10PBase)
		v := math.NaN()
		if wd := r.Report.WholeData; wd != nil && wd.Available {
			v, hasData = wd.Log10PData, true
		}
		data.log10 = append(data.log10, v)
	}
	if !hasData {
		return []series{agn, base}
	}
	return []series{agn, base, data}
}

// thresholds are the distinct decision levels in the reports: alpha for the p-value each report
// decided on, and alpha_data where the whole-data test ran.
func thresholds(reps []Labeled) []threshold {
	var out []threshold
	seen := map[threshold]bool{}
	add := func(th threshold) {
		if th.alpha > 0 && th.alpha < 1 && !seen[th] {
			seen[th] = true
			out = append(out, th)
		}
	}
	for _, r := range reps {
		test, c := "p_agnostic", color.Color(blue)
		if r.Report.Test == verifier.TestBase {
			test, c = "p_base", orange
		}
		add(threshold{name: "alpha for " + test, alpha: r.Report.Alpha, color: c})
		if wd := r.Report.WholeData; wd != nil && wd.Available {
			add(threshold{name: "alpha_data for p_data", alpha: wd.AlphaData, color: green})
		}
	}
	return out
}

// clipHeight is where bars are cut: at minClip, or half again above the highest threshold; and
// when no bar reaches that, the top of the highest bar or threshold.
func clipHeight(ss []series, ths []threshold) float64 {
	top := 0.0
	for _, s := range ss {
		for _, v := range s.log10 {
			if h := height10(v); !math.IsNaN(h) {
				top = max(top, h)
			}
		}
	}
	thr := 0.0
	for _, th := range ths {
		thr = max(thr, -math.Log10(th.alpha))
	}
	if limit := max(minClip, 1.5*thr); top > limit {
		return limit
	}
	return max(top, 1.2*thr, 1)
}

func clipped(ss []series, clip float64) bool {
	for _, s := range ss {
		for _, v := range s.log10 {
			if height10(v) > clip {
				return true
			}
		}
	}
	return false
}

// height10 is -log10 p from log10 p: +Inf for p = 0, never below 0 (p = 1), NaN where missing.
func height10(log10p float64) float64 {
	if math.IsNaN(log10p) {
		return math.NaN()
	}
	return max(0, -log10p)
}

// barWidth shares each model's slot among its bars, leaving a gap between models.
func barWidth(models, bars int) vg.Length {
	slot := (width - 1.2*vg.Inch) / vg.Length(models)
	return min(slot/vg.Length(bars+1), vg.Points(16))
}

// addBars draws one series: a bar per model that has the p-value, cut at clip with its true
// value printed on it, and "n/a" where the model lacks it.
func addBars(p *gplot.Plot, s series, off, w vg.Length, clip float64) error {
	var notes plotter.XYLabels
	first := true
	for i, v := range s.log10 {
		h := height10(v)
		if math.IsNaN(h) {
			notes.XYs = append(notes.XYs, plotter.XY{X: float64(i), Y: 0})
			notes.Labels = append(notes.Labels, "n/a")
			continue
		}
		if h > clip {
			notes.XYs = append(notes.XYs, plotter.XY{X: float64(i), Y: clip})
			notes.Labels = append(notes.Labels, clipNote(h))
			h = clip
		}
		b, err := plotter.NewBarChart(plotter.Values{h}, w)
		if err != nil {
			return err
		}
		b.XMin, b.Offset = float64(i), off
		b.Color, b.LineStyle.Width = s.color, 0
		p.Add(b)
		if first {
			p.Legend.Add(s.name, b)
			first = false
		}
	}
	return addNotes(p, notes, off)
}

func clipNote(h float64) string {
	if math.IsInf(h, 1) {
		return "inf"
	}
	return fmt.Sprintf("%.0f", h)
}

// addNotes prints small vertical labels upwards from the foot of a missing bar ("n/a") or from
// the top of a cut one (its true height).
func addNotes(p *gplot.Plot, notes plotter.XYLabels, off vg.Length) error {
	if len(notes.Labels) == 0 {
		return nil
	}
	l, err := plotter.NewLabels(notes)
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(8)
		l.TextStyle[i].Rotation = math.Pi / 2
		l.TextStyle[i].XAlign = draw.XLeft
		l.TextStyle[i].YAlign = draw.YCenter
		if notes.Labels[i] == "n/a" {
			l.TextStyle[i].Color = grey
		}
	}
	l.Offset = vg.Point{X: off, Y: vg.Points(2)}
	p.Add(l)
	return nil
}

// addThreshold draws a dashed line at -log10 alpha across every model.
func addThreshold(p *gplot.Plot, th threshold, models int) error {
	y := -math.Log10(th.alpha)
	l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: y}, {X: float64(models) - 0.5, Y: y}})
	if err != nil {
		return err
	}
	l.Color, l.Width, l.Dashes = th.color, vg.Points(1.2), []vg.Length{vg.Points(5), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(fmt.Sprintf("%s = %s", th.name, verifier.FormatP(math.Log10(th.alpha))), l)
	return nil
}
