package main

import (
	"encoding/csv"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vtune/backend/servertest"
	"vtune/verifier"
)

// TestCompareModels verifies three fixture checkpoints (honest, half, base) in one run through
// llama-server and checks that the table, the JSON and the CSV say what three single runs say.
func TestCompareModels(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server")
	}
	servertest.UseLlamaServer(t)
	dir := filepath.Join(fixturesDir(), "tiny-llama")
	key := filepath.Join(dir, "key.json")
	models := []struct{ label, path string }{
		{"honest", filepath.Join(dir, "honest.gguf")},
		{"half", filepath.Join(dir, "half.gguf")},
		{"base", servertest.Model("tiny-llama.gguf")},
	}
	common := []string{"-k", key, "--backend", "llamacpp", "-q"}

	single := map[string]*verifier.Report{}
	for _, m := range models {
		code, rep, stderr := verifyJSON(t, append(common, "--checkpoint", m.path)...)
		if code > 1 {
			t.Fatalf("%s: exit %d: %s", m.label, code, stderr)
		}
		single[m.label] = rep
	}
	if single["honest"].Verdict != verifier.Verified || single["half"].Verified || single["base"].Verified {
		t.Fatalf("single runs: honest %s, half %s, base %s", single["honest"].Verdict, single["half"].Verdict, single["base"].Verdict)
	}

	// JSON, models from a file with labels.
	list := filepath.Join(t.TempDir(), "models.txt")
	var b strings.Builder
	b.WriteString("# label after the path\n\n")
	for _, m := range models {
		b.WriteString(m.path + " " + m.label + "\n")
	}
	os.WriteFile(list, []byte(b.String()), 0o644)
	plots := filepath.Join(t.TempDir(), "plots")
	code, stdout, stderr := vtune(t, nil, append([]string{"verify", "--models", list, "--json", "--plot", plots}, common...)...)
	if code != exitNotVerified {
		t.Fatalf("--models --json: exit %d, want 1 (the worst of 0, 1, 1): %s", code, stderr)
	}
	var rows []compared
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("JSON: %v, %d rows:\n%s", err, len(rows), stdout)
	}
	for i, r := range rows {
		want := single[models[i].label]
		if r.Label != models[i].label || r.Report == nil || !sameReport(r.Report, want) {
			t.Errorf("JSON row %d (%s): %+v, single run %+v", i, r.Label, r.Report, want)
		}
	}

	// --plot: the p-value and LLR figures, and one whole-data figure per model, as PNGs.
	for _, name := range []string{"pvalues.png", "llr.png", "wholedata-honest.png", "wholedata-half.png", "wholedata-base.png"} {
		f, err := os.Open(filepath.Join(plots, name))
		if err != nil {
			t.Errorf("--plot: %v", err)
			continue
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
			t.Errorf("--plot %s: %v, %v", name, err, img)
		}
	}

	// CSV, models as repeated flags: labelled by their paths.
	args := []string{"verify", "--csv"}
	for _, m := range models {
		args = append(args, "--checkpoint", m.path)
	}
	code, stdout, stderr = vtune(t, nil, append(args, common...)...)
	recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if code != exitNotVerified || err != nil || len(recs) != 4 || strings.Join(recs[0], ",") != strings.Join(csvColumns, ",") {
		t.Fatalf("--csv: exit %d, %v:\n%s%s", code, err, stdout, stderr)
	}
	for i, rec := range recs[1:] {
		want := single[models[i].label]
		num := func(col int) float64 { f, _ := strconv.ParseFloat(rec[col], 64); return f }
		if rec[0] != models[i].path || rec[1] != strconv.Itoa(want.Hits) || rec[3] != strconv.Itoa(want.DecoyHits) ||
			!near(num(5), want.Log10PAgnostic) || !near(num(6), want.Log10PBase) ||
			!near(num(7), want.WholeData.Log10PData) || rec[11] != want.Verdict {
			t.Errorf("CSV row %d: %q; single run hits %d, log10 p %.3f %.3f %.3f, %s", i, rec, want.Hits,
				want.Log10PAgnostic, want.Log10PBase, want.WholeData.Log10PData, want.Verdict)
		}
	}

	// The terminal table: one line per model with its verdict and p_agnostic.
	code, stdout, _ = vtune(t, nil, append([]string{"verify", "--models", list}, common...)...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != exitNotVerified || len(lines) != 4 || !strings.HasPrefix(lines[0], "model") {
		t.Fatalf("table: exit %d:\n%s", code, stdout)
	}
	for i, m := range models {
		want := single[m.label]
		if l := lines[i+1]; !strings.HasPrefix(l, m.label+" ") || !strings.Contains(l, " "+fmtP(want.Log10PAgnostic)+" ") ||
			!strings.Contains(l, " "+want.Verdict+" ") {
			t.Errorf("table line %q; want %s, p_agnostic %s, %s", l, m.label, fmtP(want.Log10PAgnostic), want.Verdict)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// sameReport compares what a comparison shows of two reports.
func sameReport(a, b *verifier.Report) bool {
	return a.Verdict == b.Verdict && a.Hits == b.Hits && a.DecoyHits == b.DecoyHits &&
		near(a.Log10PAgnostic, b.Log10PAgnostic) && near(a.Log10PBase, b.Log10PBase) &&
		a.WholeData != nil && b.WholeData != nil && a.WholeData.X == b.WholeData.X &&
		near(a.WholeData.Log10PData, b.WholeData.Log10PData) && near(a.WholeData.ShareLower95, b.WholeData.ShareLower95)
}

// Bad --models input fails with one line naming the file and line, exit 2, before any server is
// asked anything (the URL here answers nothing).
func TestCompareBadInput(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(fixturesDir(), "tiny-llama", "key.json")
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	gguf := servertest.Model("tiny-llama.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--models", filepath.Join(dir, "missing.txt")}, "missing.txt: no such file"},
		{[]string{"--models", write("dup.txt", "a\n# c\nb\na\n")}, `dup.txt line 4: "a" is already given (--models ` + dir + `/dup.txt line 1)`},
		{[]string{"--models", write("gone.txt", "a\n/nonexistent/x.gguf\n")}, "gone.txt line 2: checkpoint /nonexistent/x.gguf: not found"},
		{[]string{"--models", write("empty.txt", "# nothing\n\n")}, "empty.txt: no model in it"},
		{[]string{"--checkpoint", gguf, "--checkpoint", gguf}, "is already given"},
		{[]string{"-m", "x", "--models", write("x.txt", "y\nx\n")}, `x.txt line 2: "x" is already given (--model x)`},
	} {
		code, stdout, stderr := vtune(t, nil, append([]string{"verify", "-q", "-k", key, "--url", "http://127.0.0.1:9"}, c.args...)...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, stdout, stderr, c.want)
		}
	}
}

// TestQuantize verifies a fixture GGUF as it is and quantized to Q8_0 and Q4_0 through llama.cpp:
// three rows, each quantization recorded in the provenance with a smaller file, and no quantized
// file, chroot link or server left afterwards.
func TestQuantize(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server and llama-quantize")
	}
	servertest.UseLlamaServer(t)
	tmp := privateTmp(t)
	dir := filepath.Join(fixturesDir(), "tiny-llama")
	gguf := filepath.Join(dir, "honest.gguf")
	code, stdout, stderr := vtune(t, nil, "verify", "-q", "--json", "-k", filepath.Join(dir, "key.json"), "--backend", "llamacpp",
		"--llr=false", "--checkpoint", gguf, "--quantize", "q8_0,Q4_0")
	var rows []compared
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 3 || code > exitNotVerified {
		t.Fatalf("exit %d, %v, %d rows: %s\n%s", code, err, len(rows), stdout, stderr)
	}
	orig := rows[0].Report.Provenance.Files[0].Size
	for i, q := range []string{"", "Q8_0", "Q4_0"} {
		r := rows[i]
		p := r.Report.Provenance
		if r.Quantize != q || p == nil || p.Quantization != q || (q != "" && r.Label != gguf+"@"+q) {
			t.Fatalf("row %d: %+v, provenance %+v", i, r.target, p)
		}
		t.Logf("%-6s %s, %d/%d hits, log10 p_agnostic %.1f", q, r.Report.Verdict, r.Report.Hits, r.Report.Planted, r.Report.Log10PAgnostic)
		if q == "" {
			continue
		}
		last := p.Files[len(p.Files)-1]
		if last.Role != "quantized" || last.Format != "gguf "+q || last.Size <= 0 || last.Size >= orig {
			t.Errorf("%s: quantized file %+v, original %d bytes", q, last, orig)
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
		t.Errorf("left in TMPDIR: %v", ents)
	}
	for _, pat := range []string{"llama-server-chroot.*", "llama-quantize-chroot.*"} {
		if left, _ := filepath.Glob(filepath.Join(servertest.Root(), ".tools/sid/tmp", pat)); len(left) > 0 {
			t.Errorf("left in the chroot: %v", left)
		}
	}
}

// Bad --quantize input fails before any server work.
func TestQuantizeBadInput(t *testing.T) {
	key := filepath.Join(fixturesDir(), "tiny-llama", "key.json")
	gguf := servertest.Model("tiny-llama.gguf")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--checkpoint", gguf, "--quantize", "Q4_0,Q9_9"}, `--quantize: unknown quantization type "Q9_9": want one of F32,`},
		{[]string{"-m", "tiny", "--quantize", "Q4_0"}, `--quantize: "tiny" is a model on the server`},
		{[]string{"--quantize", "Q4_0"}, "--quantize needs --checkpoint"},
	} {
		code, stdout, stderr := vtune(t, nil, append([]string{"verify", "-q", "-k", key, "--url", "http://127.0.0.1:9"}, c.args...)...)
		if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", c.args, code, stdout, stderr, c.want)
		}
	}
}

// TestParallelSameReport verifies a fixture through a 4-slot llama-server with four requests in
// flight and through a 1-slot one sequentially: the same report, score for score.
func TestParallelSameReport(t *testing.T) {
	if testing.Short() {
		t.Skip("needs llama-server")
	}
	servertest.UseLlamaServer(t)
	dir := filepath.Join(fixturesDir(), "tiny-llama")
	var reps []*verifier.Report
	for _, n := range []string{"1", "4"} {
		code, rep, stderr := verifyJSON(t, "-k", filepath.Join(dir, "key.json"), "--backend", "llamacpp",
			"--checkpoint", filepath.Join(dir, "honest.gguf"), "--parallel", n, "--reveal")
		if code != exitVerified {
			t.Fatalf("--parallel %s: exit %d: %s", n, code, stderr)
		}
		reps = append(reps, rep)
	}
	a, b := reps[0], reps[1]
	if !sameReport(a, b) || *a.MeanLLRPlanted != *b.MeanLLRPlanted {
		t.Fatalf("reports differ:\n%+v\n%+v", a, b)
	}
	for i := range a.Groups {
		for j := range a.Groups[i].Prompts {
			if pa, pb := a.Groups[i].Prompts[j], b.Groups[i].Prompts[j]; pa.Hit != pb.Hit || *pa.Output != *pb.Output {
				t.Errorf("group %d prompt %d: %q and %q", a.Groups[i].ID, j, *pa.Output, *pb.Output)
			}
		}
	}
	sa := append(append([]float64{}, a.WholeData.HeldBackScores...), a.WholeData.SentinelScores...)
	sb := append(append([]float64{}, b.WholeData.HeldBackScores...), b.WholeData.SentinelScores...)
	for i := range sa {
		if !near(sa[i], sb[i]) {
			t.Fatalf("record %d: score %v sequentially, %v in parallel", i, sa[i], sb[i])
		}
	}
}
