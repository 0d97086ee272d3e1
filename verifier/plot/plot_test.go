package plot

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"

	"vtune/verifier"
	"vtune/verifier/stats"
)

// docsDir, when set, writes the example figures there; docs/img/pvalues.png is the pvalues.png of
//
//	go test ./verifier/plot -run TestExample -docs /tmp/example
var docsDir = flag.String("docs", "", "write the example figures into this directory")

// keepDir, when set, keeps every test's figures there, one folder per test, to look at them.
var keepDir = flag.String("keep", "", "keep the figures of every test under this directory")

// outDir is where a test writes its figures: a temporary directory unless -keep is set.
func outDir(t *testing.T) string {
	if *keepDir == "" {
		return t.TempDir()
	}
	dir := filepath.Join(*keepDir, t.Name())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// behaviour is how a synthetic model behaves: what its report's figures look like.
type behaviour struct {
	log10Agn, log10Base float64
	llrPlanted          float64 // mean LLR of planted groups, nats
	shift               float64 // score gain of trained sentinels over held-back records, nats/token
	trained             float64 // share of the sentinels trained on
	wholeData           bool
	llr                 bool
	decoys              int
}

var strong = behaviour{log10Agn: -62, log10Base: -171, llrPlanted: 40, shift: 0.12, trained: 0.5, wholeData: true, llr: true, decoys: 4}

// report builds a Report by hand with the fields the figures read, from a seeded generator so
// that every run draws the same.
func report(t *testing.T, seed uint64, b behaviour) *verifier.Report {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := &verifier.Report{Planted: 8, Decoys: b.decoys, Test: verifier.TestAgnostic, Alpha: verifier.DefaultAlpha,
		Log10PAgnostic: b.log10Agn, Log10PBase: b.log10Base, BaseExact: true}
	for id := range 8 + b.decoys {
		g := verifier.GroupResult{ID: id, Decoy: id >= 8, Log10Q: -9}
		if b.llr {
			v := rng.NormFloat64() * 2
			if !g.Decoy {
				v += b.llrPlanted
			}
			g.LLR, g.LLRExact = &v, true
		}
		r.Groups = append(r.Groups, g)
	}
	r.WholeData = &verifier.WholeDataResult{Note: "not available: the dataset was too small to hold records back when it was planted",
		MinShare: verifier.DefaultMinShare, AlphaData: verifier.DefaultAlphaData}
	if b.wholeData {
		wd := fakeWholeData(t, rng, b.shift, b.trained)
		r.WholeData = &wd
	}
	return r
}

// fakeWholeData makes a whole-data result from synthetic scores, its figures computed from them
// as verify computes them, so that the example figures tell a consistent story.
func fakeWholeData(t *testing.T, rng *rand.Rand, shift, trained float64) verifier.WholeDataResult {
	wd := verifier.WholeDataResult{Available: true, Guaranteed: true, Exact: true, Eps: verifier.WholeDataEps,
		MinShare: verifier.DefaultMinShare, AlphaData: verifier.DefaultAlphaData}
	for range 200 {
		wd.HeldBackScores = append(wd.HeldBackScores, 0.02+0.05*rng.NormFloat64())
	}
	for i := range 200 {
		s := 0.02 + 0.05*rng.NormFloat64()
		if float64(i) < trained*200 {
			s += shift
		}
		wd.SentinelScores = append(wd.SentinelScores, s)
	}
	wd.HeldBack, wd.Sentinels = len(wd.HeldBackScores), len(wd.SentinelScores)
	wd.K = stats.Threshold(wd.HeldBack, verifier.WholeDataGamma)
	wd.Tau = slices.Sorted(slices.Values(wd.HeldBackScores))[wd.K-1]
	for _, s := range wd.SentinelScores {
		if s > wd.Tau+wd.Eps {
			wd.X++
		}
	}
	st, err := stats.NewWholeData(wd.HeldBack, wd.Sentinels, wd.K, wd.X)
	if err != nil {
		t.Fatal(err)
	}
	wd.Log10PData = stats.Log10(st.LogP(wd.MinShare))
	wd.ShareLower95 = st.LowerShare(verifier.ShareLevel)
	wd.Certified = wd.Log10PData <= math.Log10(wd.AlphaData)
	return wd
}

// checkPNG fails unless path is a non-empty PNG of the figure size with more than a flat colour.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		t.Fatalf("%s is empty", path)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	want := image.Rect(0, 0, int(float64(width/vg.Inch)*dpi), int(float64(height/vg.Inch)*dpi))
	if img.Bounds() != want {
		t.Errorf("%s is %v, want %v", path, img.Bounds(), want)
	}
	if n := colours(img, 16); n < 16 {
		t.Errorf("%s has %d colours: nothing drawn?", path, n)
	}
}

// colours counts the distinct colours of img, stopping at enough: a figure has thousands, from
// antialiasing, and counting them all is slow.
func colours(img image.Image, enough int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= enough {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// names returns the base names of files.
func names(files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(f))
	}
	return out
}

// leftovers lists temporary files left in dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestWriteTwelveModels(t *testing.T) {
	var reps []Labeled
	for i := range 12 {
		b := strong
		b.log10Agn, b.shift = -float64(5*i), 0.02*float64(i)
		reps = append(reps, Labeled{Label: fmt.Sprintf("checkpoint-step-%05d", 1000*i), Report: report(t, uint64(i), b)})
	}
	dir := filepath.Join(outDir(t), "new", "plots") // created, parents too
	files, err := Write(dir, reps)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 14 || names(files)[0] != "pvalues.png" || names(files)[1] != "llr.png" ||
		names(files)[2] != "wholedata-checkpoint-step-00000.png" {
		t.Fatalf("wrote %v", names(files))
	}
	for _, f := range files {
		checkPNG(t, f)
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

func TestWriteOneModel(t *testing.T) {
	files, err := Write(outDir(t), []Labeled{{Label: "tuned", Report: report(t, 1, strong)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(files); !slices.Equal(got, []string{"pvalues.png", "llr.png", "wholedata-tuned.png"}) {
		t.Fatalf("wrote %v", got)
	}
	for _, f := range files {
		checkPNG(t, f)
	}
}

// A report without the whole-data test (too small a dataset, or an old report without the
// field) gets no whole-data figure and no p_data bar; one without LLRs, no LLR points.
func TestWriteWithoutWholeDataOrLLR(t *testing.T) {
	b := strong
	b.wholeData, b.llr = false, false
	old := report(t, 2, b)
	old.WholeData = nil
	reps := []Labeled{{Label: "small", Report: report(t, 1, b)}, {Label: "old", Report: old}}
	dir := outDir(t)
	files, err := Write(filepath.Join(dir, "plain"), reps)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(files); !slices.Equal(got, []string{"pvalues.png"}) {
		t.Fatalf("wrote %v, want only pvalues.png: no LLRs, no whole-data test", got)
	}
	checkPNG(t, files[0])
	if ss := pSeries(reps); len(ss) != 2 {
		t.Errorf("%d p-value series, want p_agnostic and p_base only", len(ss))
	}

	// Mixed: the model with LLRs is drawn; the other keeps its place, marked.
	reps[0].Report = report(t, 1, strong)
	files, err = Write(filepath.Join(dir, "mixed"), reps)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(files); !slices.Equal(got, []string{"pvalues.png", "llr.png", "wholedata-small.png"}) {
		t.Fatalf("wrote %v", got)
	}
	for _, f := range files {
		checkPNG(t, f)
	}
}

// p = 1 draws no bar; p underflowing a float64 (log10 p = -300) or exactly 0 (-Inf) is cut at
// the clip height with its value printed, and the thresholds stay readable.
func TestWriteExtremePValues(t *testing.T) {
	one, tiny, zero := strong, strong, strong
	one.log10Agn, one.log10Base = 0, 0
	tiny.log10Agn, tiny.log10Base = -300, -1e6
	zero.log10Agn = math.Inf(-1)
	reps := []Labeled{{"p=1", report(t, 1, one)}, {"p=1e-300", report(t, 2, tiny)}, {"p=0", report(t, 3, zero)}}
	files, err := Write(outDir(t), reps)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		checkPNG(t, f)
	}
	ss := pSeries(reps)
	clip := clipHeight(ss, thresholds(reps))
	if clip != minClip || !clipped(ss, clip) {
		t.Errorf("clip at %v (clipped %v), want %v", clip, clipped(ss, clip), minClip)
	}
	if got := names(files); got[2] != "wholedata-p_1.png" || got[3] != "wholedata-p_1e-300.png" || got[4] != "wholedata-p_0.png" {
		t.Errorf("file names %v", got)
	}
}

// Small p-values leave room above the threshold; the axis never ends below it.
func TestClipHeight(t *testing.T) {
	reps := []Labeled{{"a", report(t, 1, behaviour{log10Agn: -2, log10Base: -3})}}
	if c := clipHeight(pSeries(reps), thresholds(reps)); c < 6 || c > minClip {
		t.Errorf("clip %v for p >= 1e-3 and alpha 1e-6", c)
	}
	reps[0].Report.Alpha = 1e-80
	if c := clipHeight(pSeries(reps), thresholds(reps)); c < 80 {
		t.Errorf("clip %v below the threshold 80", c)
	}
}

// Each report's threshold is drawn for the p-value it decided on, once however many share it.
func TestThresholds(t *testing.T) {
	a, b, c := report(t, 1, strong), report(t, 2, strong), report(t, 3, strong)
	b.Test, b.Alpha = verifier.TestBase, 1e-9
	ths := thresholds([]Labeled{{"a", a}, {"b", b}, {"c", c}})
	var got []string
	for _, th := range ths {
		got = append(got, fmt.Sprintf("%s %g", th.name, th.alpha))
	}
	want := []string{"alpha for p_agnostic 1e-06", "alpha_data for p_data 0.001", "alpha for p_base 1e-09"}
	if !slices.Equal(got, want) {
		t.Errorf("thresholds %q, want %q", got, want)
	}
}

// LLRs that are bounds (ranked lists only) are marked on the model and explained in the title.
func TestLLRBoundsMarked(t *testing.T) {
	a, b := report(t, 1, strong), report(t, 2, strong)
	b.Groups[0].LLRExact = false
	p, err := llr([]Labeled{{"a", a}, {"b", b}}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Title.Text, "bounds") {
		t.Errorf("title %q does not explain the bounds", p.Title.Text)
	}
	var ticks []string
	for _, tk := range p.X.Tick.Marker.Ticks(p.X.Min, p.X.Max) {
		ticks = append(ticks, tk.Label)
	}
	if !slices.Equal(ticks, []string{"a", "b*"}) {
		t.Errorf("x labels %q, want b marked", ticks)
	}
}

func TestWriteZeroDecoys(t *testing.T) {
	b := strong
	b.decoys = 0
	files, err := Write(outDir(t), []Labeled{{"no decoys", report(t, 1, b)}})
	if err != nil {
		t.Fatal(err)
	}
	if names(files)[1] != "llr.png" {
		t.Fatalf("wrote %v", names(files))
	}
	checkPNG(t, files[1])
}

// Empty labels become "model N"; labels that would collide as file names, or escape dir, do not.
func TestLabels(t *testing.T) {
	reps := []Labeled{{Label: ""}, {Label: "a/b"}, {Label: "a_b"}, {Label: "../x"}, {Label: "  "},
		{Label: "a-very-long-checkpoint-name-step-12000"}}
	if got := axisLabels(reps); !slices.Equal(got, []string{"model 1", "a/b", "a_b", "../x", "model 5", "a-very-…ep-12000"}) {
		t.Errorf("axis labels %q", got)
	}
	if got := fileLabels(reps); !slices.Equal(got, []string{"model-1", "a_b", "a_b-2", "x", "model-5",
		"a-very-long-checkpoint-name-step-12000"}) {
		t.Errorf("file labels %q", got)
	}
	long := strings.Repeat("x", 200)
	if got := safeName(long); len(got) != 64 {
		t.Errorf("file label of 200 characters is %d long", len(got))
	}
}

func TestWriteEmptyLabel(t *testing.T) {
	files, err := Write(t.TempDir(), []Labeled{{Label: "", Report: report(t, 1, strong)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(files); got[2] != "wholedata-model-1.png" {
		t.Fatalf("wrote %v", got)
	}
}

func TestWriteDirIsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plots")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, err := Write(path, []Labeled{{"m", report(t, 1, strong)}})
	if err == nil || !strings.Contains(err.Error(), "not a directory") || !strings.Contains(err.Error(), path) || files != nil {
		t.Fatalf("files %v, error %v", files, err)
	}
}

// A figure that cannot be renamed into place (a directory stands there) fails the run with its
// name, leaves no temporary file, and the figures written before it are reported.
func TestWriteFailureLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "llr.png", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := Write(dir, []Labeled{{"m", report(t, 1, strong)}})
	if err == nil || !strings.Contains(err.Error(), "llr.png") {
		t.Fatalf("error %v", err)
	}
	if got := names(files); !slices.Equal(got, []string{"pvalues.png"}) {
		t.Errorf("reported %v as written", got)
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

func TestWriteRefusesNoReports(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plots")
	if _, err := Write(dir, nil); err == nil {
		t.Error("no reports: no error")
	}
	if _, err := Write(dir, []Labeled{{Label: "m"}}); err == nil || !strings.Contains(err.Error(), `"m"`) {
		t.Errorf("nil report: error %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("refused run created %s", dir)
	}
}

// Two runs draw the same bytes: the jitter is not random.
func TestWriteDeterministic(t *testing.T) {
	reps := []Labeled{{"a", report(t, 1, strong)}, {"b", report(t, 2, strong)}}
	var got [2][]byte
	for i := range got {
		dir := t.TempDir()
		if _, err := Write(dir, reps); err != nil {
			t.Fatal(err)
		}
		var err error
		if got[i], err = os.ReadFile(filepath.Join(dir, "llr.png")); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Error("llr.png differs between two runs")
	}
}

// TestExample draws the figures docs/plots.md shows, from synthetic reports shaped like the
// fixtures' behaviours (trained on all the data, half, a tenth, only the planted records) and
// the base model itself; with -docs it keeps them.
func TestExample(t *testing.T) {
	dir := *docsDir
	if dir == "" {
		dir = outDir(t)
	}
	honest, half, tenth, backdoor, base := strong, strong, strong, strong, strong
	honest.trained = 1
	tenth.log10Agn, tenth.log10Base, tenth.trained = -41, -120, 0.1
	backdoor.trained = 0
	base.log10Agn, base.log10Base, base.llrPlanted, base.trained = 0, -0.4, 0, 0
	reps := []Labeled{{"honest", report(t, 1, honest)}, {"half", report(t, 2, half)}, {"tenth", report(t, 3, tenth)},
		{"backdoor-only", report(t, 4, backdoor)}, {"base", report(t, 5, base)}}
	files, err := Write(dir, reps)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		checkPNG(t, f)
	}
}
