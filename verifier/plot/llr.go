package plot

import (
	"image/color"
	"math"
	"slices"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"vtune/verifier"
)

// jitter is how far a strip's points spread sideways, in model slots.
const jitter = 0.14

// groupLLRs are one model's per-group LLRs (nats), split into planted groups and decoys.
type groupLLRs struct {
	planted, decoys []float64
	exact           bool // every LLR is exact, not a bound from ranked lists
}

// llr draws each model's per-group LLRs, planted groups against decoys; nil when no report has
// LLRs (verify without --llr). A model without them keeps its place, marked "no LLR".
func llr(reps []Labeled, labels []string) (*gplot.Plot, error) {
	all := make([]groupLLRs, len(reps))
	some, inexact := false, false
	for i, r := range reps {
		all[i] = collectLLRs(r.Report)
		some = some || len(all[i].planted)+len(all[i].decoys) > 0
		inexact = inexact || !all[i].exact
	}
	if !some {
		return nil, nil
	}
	title := "Signature LLR against the base model, per group"
	marked := slices.Clone(labels)
	if inexact {
		title += "\n* bounds, not exact: the server reports only its top tokens"
		for i := range marked {
			if !all[i].exact {
				marked[i] += "*"
			}
		}
	}
	p := newPlot(title, "model", "LLR (nats)")
	nominalX(p, marked)
	p.Legend.Top, p.Legend.Left = true, true
	if err := addZero(p, len(reps)); err != nil {
		return nil, err
	}
	var missing plotter.XYLabels
	legend := map[string]bool{}
	for i, g := range all {
		if len(g.planted)+len(g.decoys) == 0 {
			missing.XYs = append(missing.XYs, plotter.XY{X: float64(i), Y: 0})
			missing.Labels = append(missing.Labels, "no LLR")
			continue
		}
		if err := addStrip(p, i, g.planted, plantedStrip, legend); err != nil {
			return nil, err
		}
		if err := addStrip(p, i, g.decoys, decoyStrip, legend); err != nil {
			return nil, err
		}
	}
	if err := addMissing(p, missing); err != nil {
		return nil, err
	}
	leaveRoom(p, all)
	return p, nil
}

// addMissing writes "no LLR" in the place of each model without LLRs, just above the zero line.
func addMissing(p *gplot.Plot, missing plotter.XYLabels) error {
	if len(missing.Labels) == 0 {
		return nil
	}
	l, err := plotter.NewLabels(missing)
	if err != nil {
		return err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(8)
		l.TextStyle[i].XAlign = draw.XCenter
		l.TextStyle[i].Color = grey
	}
	l.Offset = vg.Point{Y: vg.Points(3)}
	p.Add(l)
	return nil
}

// leaveRoom sets the y axis to the points and 0, with the top quarter left to the legend, which
// gonum draws inside the axes.
func leaveRoom(p *gplot.Plot, all []groupLLRs) {
	lo, hi := 0.0, 0.0
	for _, g := range all {
		for _, v := range slices.Concat(g.planted, g.decoys) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	span := max(hi-lo, 1)
	p.Y.Min, p.Y.Max = lo-0.05*span, hi+0.4*span
}

// collectLLRs gathers a report's finite per-group LLRs.
func collectLLRs(r *verifier.Report) groupLLRs {
	g := groupLLRs{exact: true}
	for _, gr := range r.Groups {
		if gr.LLR == nil || math.IsNaN(*gr.LLR) || math.IsInf(*gr.LLR, 0) {
			continue
		}
		g.exact = g.exact && gr.LLRExact
		if gr.Decoy {
			g.decoys = append(g.decoys, *gr.LLR)
		} else {
			g.planted = append(g.planted, *gr.LLR)
		}
	}
	return g
}

// addZero draws the line LLR = 0: a signature exactly as likely as under the base model.
func addZero(p *gplot.Plot, models int) error {
	l, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 0}, {X: float64(models) - 0.5, Y: 0}})
	if err != nil {
		return err
	}
	l.Color, l.Dashes = grey, []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(l)
	p.Legend.Add("0 = as likely as under the base model", l)
	return nil
}

// strip is how one kind of group is drawn.
type strip struct {
	offset float64
	glyph  draw.GlyphDrawer
	color  color.Color
	name   string
}

var (
	plantedStrip = strip{offset: -0.18, glyph: draw.CircleGlyph{}, color: blue, name: "planted groups"}
	decoyStrip   = strip{offset: +0.18, glyph: draw.TriangleGlyph{}, color: vermilion, name: "decoys"}
)

// addStrip draws values as points spread sideways around model i's place, deterministically (a
// golden-ratio sequence, so that two runs draw the same figure), with a bar at their median. The
// first strip of its kind goes into the legend.
func addStrip(p *gplot.Plot, i int, vs []float64, st strip, legend map[string]bool) error {
	if len(vs) == 0 {
		return nil
	}
	x := float64(i) + st.offset
	pts := make(plotter.XYs, len(vs))
	for j, v := range vs {
		f := math.Mod(float64(j)*0.6180339887, 1) - 0.5
		pts[j] = plotter.XY{X: x + f*jitter, Y: v}
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	s.GlyphStyle = draw.GlyphStyle{Color: st.color, Radius: vg.Points(2.5), Shape: st.glyph}
	m := median(vs)
	l, err := plotter.NewLine(plotter.XYs{{X: x - jitter/1.5, Y: m}, {X: x + jitter/1.5, Y: m}})
	if err != nil {
		return err
	}
	l.Color, l.Width = st.color, vg.Points(2)
	p.Add(s, l)
	if !legend[st.name] {
		legend[st.name] = true
		p.Legend.Add(st.name+" (bar: median)", s)
	}
	return nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
