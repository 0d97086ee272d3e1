package plot

import (
	"fmt"
	"image/color"
	"math"
	"slices"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"vtune/verifier"
)

// wholeData draws the whole-data test of one model: the distributions of held-back and sentinel
// scores as empirical CDFs on one axis (they compare sets of different sizes without a choice of
// bins, and the share of sentinels above tau reads straight off the sentinel curve), with tau.
// It returns nil when the test did not run or its scores are not in the report.
func wholeData(wd *verifier.WholeDataResult, label string) (*gplot.Plot, error) {
	if wd == nil || !wd.Available {
		return nil, nil
	}
	held, dropH := finite(wd.HeldBackScores)
	sent, dropS := finite(wd.SentinelScores)
	if len(held) == 0 || len(sent) == 0 {
		return nil, nil
	}
	p := newPlot(wholeDataTitle(wd, label, dropH+dropS), "score: gain over the base model (nats/token)", "share of records scoring at most x")
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = true, true
	if err := addECDF(p, held, grey, fmt.Sprintf("held back (never sent), b = %d", len(held))); err != nil {
		return nil, err
	}
	if err := addECDF(p, sent, blue, fmt.Sprintf("sentinels (sent), c = %d", len(sent))); err != nil {
		return nil, err
	}
	return p, addTau(p, wd.Tau)
}

// wholeDataTitle says what the test found: how many sentinels cleared tau, and the share of the
// data certified (a lower confidence bound on the share trained on).
func wholeDataTitle(wd *verifier.WholeDataResult, label string, dropped int) string {
	verdict := fmt.Sprintf("not certified for %.0f%%", 100*wd.MinShare)
	if wd.Certified {
		verdict = fmt.Sprintf("certified for %.0f%%", 100*wd.MinShare)
	}
	t := fmt.Sprintf("Whole-data test, %s: %d of %d sentinels above tau\ntrained share ≥ %.0f%% (95%% confidence), %s, p_data = %s",
		label, wd.X, wd.Sentinels, 100*wd.ShareLower95, verdict, verifier.FormatP(wd.Log10PData))
	if dropped > 0 {
		t += fmt.Sprintf("; %d non-finite scores not drawn", dropped)
	}
	return t
}

// finite returns the finite values of xs and how many it dropped: the plotter refuses the others.
func finite(xs []float64) ([]float64, int) {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out, len(xs) - len(out)
}

// addECDF draws the empirical CDF of xs as a step line.
func addECDF(p *gplot.Plot, xs []float64, c color.Color, name string) error {
	s := slices.Clone(xs)
	slices.Sort(s)
	pts := make(plotter.XYs, 0, len(s)+1)
	pts = append(pts, plotter.XY{X: s[0], Y: 0})
	for i, x := range s {
		pts = append(pts, plotter.XY{X: x, Y: float64(i+1) / float64(len(s))})
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	l.StepStyle = plotter.PostStep
	l.Color, l.Width = c, vg.Points(1.8)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// addTau draws the threshold: sentinels to its right count as evidence.
func addTau(p *gplot.Plot, tau float64) error {
	l, err := plotter.NewLine(plotter.XYs{{X: tau, Y: 0}, {X: tau, Y: 1}})
	if err != nil {
		return err
	}
	l.Color, l.Width, l.Dashes = vermilion, vg.Points(1.2), []vg.Length{vg.Points(5), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(fmt.Sprintf("tau = %+.3f nats/token", tau), l)
	return nil
}
