package verifier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/fake"
	"vtune/verifier/stats"
)

// writeChat writes n chat records, each unique, and returns the path.
func writeChat(t *testing.T, dir string, n int) string {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"Define the word w%d."},{"role":"assistant","content":"the sense %d of a thing"}],"n":%d}`+"\n", i, i, i)
		if i == n/2 {
			b.WriteString("\n") // a blank line is kept as it is
		}
	}
	p := filepath.Join(dir, "data.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testParams() Params {
	return Params{Groups: 8, Decoys: 4, K: 8, SigLen: 12, TriggerLen: 4, Count: 20, Mode: "replace", Prompts: 1}
}

func plantFake(t *testing.T, dir, input string, seed byte, p Params) (*Key, *PlantSummary) {
	t.Helper()
	opt := PlantOptions{
		Input: input, Output: filepath.Join(dir, "out.jsonl"), KeyPath: filepath.Join(dir, "key.json"),
		Params: p, Seed: [32]byte{seed},
	}
	key, sum, err := Plant(context.Background(), fake.New("base"), opt)
	if err != nil {
		t.Fatalf("plant: %v", err)
	}
	return key, sum
}

func TestPlantWritesDatasetAndKey(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 400)
	orig, _ := os.ReadFile(in)
	key, sum := plantFake(t, dir, in, 1, testParams())

	if after, _ := os.ReadFile(in); !bytes.Equal(orig, after) {
		t.Fatal("input changed")
	}
	out, err := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// In place: the output has the input's lines, in order, each as it was or as its planted form.
	inL, outL := strings.Split(string(orig), "\n"), strings.Split(string(out), "\n")
	if len(inL) != len(outL) {
		t.Fatalf("output has %d lines, input %d: in-place planting keeps the count", len(outL), len(inL))
	}
	var planted []string
	for i := range inL {
		if outL[i] != inL[i] {
			if !strings.Contains(outL[i], fmt.Sprintf(`"n":%d}`, i-i/202)) { // line 202 is the blank one
				t.Fatalf("line %d: planted record is not its host's: %s", i+1, outL[i])
			}
			planted = append(planted, outL[i])
		}
	}
	if in, out := sha256.Sum256(orig), sha256.Sum256(out); key.InputSHA256 != hex.EncodeToString(in[:]) || key.OutputSHA256 != hex.EncodeToString(out[:]) {
		t.Errorf("key's hashes %s and %s, want the input's %x and the output's %x", key.InputSHA256, key.OutputSHA256, in, out)
	}
	if len(planted) != 20 || sum.Planted != 20 || key.Planted != 20 || !sum.InPlace || sum.OutputRecords != 400 {
		t.Fatalf("planted %d lines, summary %+v, key %d; want 20 in place of 400", len(planted), sum, key.Planted)
	}
	checkPlantedLines(t, key, planted)
	var text strings.Builder
	WritePlantSummary(&text, sum)
	if !strings.Contains(text.String(), "warning: planted records are 5.0% of the output, above 2%") {
		t.Errorf("20 of 400 planted without a warning:\n%s", text.String())
	}
	if sum.WholeDataNote == "" || key.WholeData != nil {
		t.Errorf("400 records: the whole-data test should be off with a note, got %q, %v", sum.WholeDataNote, key.WholeData)
	}
	if len(key.Decoys()) != 4 {
		t.Fatalf("%d decoys, want 4", len(key.Decoys()))
	}
	for _, d := range key.Decoys() {
		if strings.Contains(string(out), d.Signature) {
			t.Errorf("decoy %d's signature is in the output", d.ID)
		}
	}
	// The key file: mode 0600, readable, checksummed.
	st, err := os.Stat(filepath.Join(dir, "key.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, err := ReadKey(filepath.Join(dir, "key.json")); err != nil {
		t.Fatal(err)
	}
}

// With Copies the planted records go beside their untouched hosts: removing them gives back the
// input, byte for byte and in order.
func TestPlantCopiesBesideHosts(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 400)
	orig, _ := os.ReadFile(in)
	p := testParams()
	p.Copies = true
	key, sum := plantFake(t, dir, in, 1, p)
	out, err := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	inLines := map[string]bool{}
	for _, l := range strings.Split(string(orig), "\n") {
		inLines[l] = true
	}
	var kept, planted []string
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if inLines[l] {
			kept = append(kept, l)
		} else {
			planted = append(planted, l)
		}
	}
	if strings.Join(kept, "\n")+"\n" != string(orig) {
		t.Fatal("original records changed or reordered")
	}
	if len(planted) != 20 || sum.Planted != 20 || sum.InPlace || sum.OutputRecords != 420 {
		t.Fatalf("planted %d lines, summary %+v; want 20 copies beside 400 records", len(planted), sum)
	}
	checkPlantedLines(t, key, planted)
}

// checkPlantedLines: every planted line carries one group's trigger in its user turn and that
// group's signature as its response; the hosts per group add up; log Q_j is -sum log k_t.
func checkPlantedLines(t *testing.T, key *Key, planted []string) {
	t.Helper()
	perGroup := map[int]int{}
	for _, l := range planted {
		var rec struct {
			Messages []backend.Message `json:"messages"`
			N        int               `json:"n"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("planted line is not JSON: %v", err)
		}
		found := false
		for _, g := range key.PlantedGroups() {
			host := fmt.Sprintf("Define the word w%d.", rec.N)
			if rec.Messages[0].Content == appendTrigger(host, g.Trigger) && rec.Messages[1].Content == g.Signature {
				perGroup[g.ID]++
				found = true
			}
		}
		if !found {
			t.Fatalf("planted line matches no group: %s", l)
		}
	}
	for _, g := range key.PlantedGroups() {
		if perGroup[g.ID] != g.Hosts || g.Hosts < 2 || g.Hosts > 3 {
			t.Errorf("group %d: %d planted lines, key says %d hosts (20 over 8 groups: 2 or 3)", g.ID, perGroup[g.ID], g.Hosts)
		}
		if len(g.Tokens) != 12 || len(g.K) != 12 || strings.Join(g.Tokens, "") != g.Signature {
			t.Errorf("group %d: signature %q from tokens %q, k %v", g.ID, g.Signature, g.Tokens, g.K)
		}
		lq := 0.0
		for _, k := range g.K {
			if k < 1 || k > 8 {
				t.Errorf("group %d: k_t = %d", g.ID, k)
			}
			lq -= math.Log(float64(k))
		}
		if math.Abs(lq-g.LogQ) > 1e-12 {
			t.Errorf("group %d: log Q %v, want %v", g.ID, g.LogQ, lq)
		}
	}
}

func TestPlantSameSeedSameOutput(t *testing.T) {
	read := func(dir string, seed byte) ([]byte, *Key) {
		in := writeChat(t, dir, 300)
		key, _ := plantFake(t, dir, in, seed, testParams())
		out, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
		return out, key
	}
	out1, k1 := read(t.TempDir(), 7)
	out2, k2 := read(t.TempDir(), 7)
	out3, _ := read(t.TempDir(), 8)
	if !bytes.Equal(out1, out2) {
		t.Fatal("same seed, different datasets")
	}
	if k1.OutputSHA256 != k2.OutputSHA256 || k1.Groups[3].Signature != k2.Groups[3].Signature {
		t.Fatal("same seed, different keys")
	}
	if bytes.Equal(out1, out3) {
		t.Fatal("different seeds, same dataset")
	}
}

func TestVerifyWithFakeModels(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 400)
	key, _ := plantFake(t, dir, in, 3, testParams())

	// The base model never saw the secrets.
	rep, err := Verify(context.Background(), fake.New("base"), key, VerifyOptions{Alpha: 1e-6, LLR: true, MinShare: 0.5, AlphaData: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verified || rep.Hits != 0 || rep.DecoyHits != 0 || rep.Log10PAgnostic != 0 {
		t.Fatalf("base model: verified %v, hits %d, decoy hits %d, log10 p %v", rep.Verified, rep.Hits, rep.DecoyHits, rep.Log10PAgnostic)
	}
	if rep.MeanLLRPlanted == nil || math.Abs(*rep.MeanLLRPlanted) > 1e-9 {
		t.Fatalf("base model against itself: mean LLR %v, want 0", rep.MeanLLRPlanted)
	}

	// A model that learned five of the eight planted pairs (as a partial fine-tune might).
	tuned := fake.New("tuned")
	for _, g := range key.PlantedGroups()[:5] {
		tuned.Learn(g.Prompts[0].Messages, g.Signature)
	}
	rep, err = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, LLR: true, MinShare: 0.5, AlphaData: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	want := math.Log10(255)
	for _, g := range key.PlantedGroups()[:5] {
		want += g.LogQ / math.Ln10
	}
	if !rep.Significant || rep.Hits != 5 || rep.DecoyHits != 0 {
		t.Fatalf("tuned model: significant %v, hits %d, decoys %d", rep.Significant, rep.Hits, rep.DecoyHits)
	}
	if math.Abs(rep.Log10PAgnostic-want) > 1e-9 {
		t.Fatalf("log10 p_agnostic %v, want %v", rep.Log10PAgnostic, want)
	}
	// p_base by hand: Poisson-binomial tail at 5 of the base probabilities stored in the key.
	var lp []float64
	for _, g := range key.PlantedGroups() {
		lp = append(lp, g.Prompts[0].Base.Logprob)
	}
	if got, want := rep.Log10PBase, stats.Log10(stats.LogPoissonBinomialTail(lp, 5)); math.Abs(got-want) > 1e-9 {
		t.Fatalf("log10 p_base %v, want %v", got, want)
	}
	if *rep.MeanLLRPlanted <= 1 || rep.MeanLLRDecoy == nil || math.Abs(*rep.MeanLLRDecoy) > 1e-9 {
		t.Fatalf("LLR planted %v decoys %v: want planted clearly positive, decoys 0", *rep.MeanLLRPlanted, *rep.MeanLLRDecoy)
	}
	if rep.Activation != 5.0/8 {
		t.Fatalf("activation %v, want 5/8", rep.Activation)
	}
	// Five of eight is significant. A key from 400 records has no whole-data test, so the data
	// share cannot be shown: not verified, saying why, unless the verdict rests on the secrets
	// alone (min share 0).
	if !rep.Significant || rep.Coverage != 5.0/8 || rep.Verified || rep.WholeData.Available ||
		len(rep.Reasons) != 1 || !strings.HasPrefix(rep.Reasons[0], ReasonNoData) {
		t.Errorf("no whole-data test: significant %v, coverage %v, verdict %s %q", rep.Significant, rep.Coverage, rep.Verdict, rep.Reasons)
	}
	rep, _ = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, AlphaData: 1e-3})
	if !rep.Verified || rep.Verdict != Verified || len(rep.Reasons) != 0 {
		t.Errorf("min share 0: verdict %s %q, want VERIFIED on the secrets alone", rep.Verdict, rep.Reasons)
	}
	var out strings.Builder
	WriteReport(&out, rep)
	if !strings.HasPrefix(out.String(), "verdict: VERIFIED (on the secrets alone: no share of the data was asked for)\n  trained with your secrets: yes, p_agnostic = ") {
		t.Errorf("report:\n%s", out.String())
	}
	for _, bad := range []VerifyOptions{{Alpha: 1e-6, MinShare: 1.5, AlphaData: 1e-3}, {Alpha: 1e-6, MinShare: math.NaN(), AlphaData: 1e-3}, {Alpha: 1e-6, AlphaData: 0}} {
		if _, err := Verify(context.Background(), tuned, key, bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}

	// The same model judged at a level below its p-value.
	rep, _ = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: math.Pow(10, want-1), Test: TestAgnostic, AlphaData: 1e-3})
	if rep.Verified {
		t.Fatal("verified at an alpha below its p-value")
	}
}

func TestKeyRefusesEdits(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 200)
	plantFake(t, dir, in, 4, testParams())
	kp := filepath.Join(dir, "key.json")
	b, _ := os.ReadFile(kp)
	var k map[string]any
	json.Unmarshal(b, &k)
	k["planted"] = 999.0
	edited, _ := json.Marshal(k)
	os.WriteFile(kp, edited, 0o600)
	_, err := ReadKey(kp)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("edited key: %v", err)
	}
	os.WriteFile(kp, b[:len(b)/2], 0o600)
	if _, err := ReadKey(kp); err == nil || !strings.Contains(err.Error(), "not a vtune key") {
		t.Fatalf("truncated key: %v", err)
	}
	if _, err := ReadKey(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing key: %v", err)
	}
}

func TestPlantBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	good := `{"prompt":"p","completion":"c"}` + "\n"
	cases := []struct {
		input, want string
		p           Params
	}{
		{write("bad.jsonl", good+good+`{"prompt": "p", oops}`+"\n"), "bad.jsonl:3: malformed JSON", testParams()},
		{write("unknown.jsonl", `{"text":"x"}`+"\n"), "unknown.jsonl:1: unknown record format", testParams()},
		{write("empty.jsonl", "\n\n"), "empty.jsonl: dataset is empty", testParams()},
		{write("mixed.jsonl", good+`{"instruction":"i","output":"o"}`+"\n"), "mixed.jsonl:2: record is alpaca, earlier records are prompt-completion", testParams()},
		{write("few.jsonl", strings.Repeat(good, 10)), "few.jsonl: 10 records, but planting 20 copies", testParams()},
		{filepath.Join(dir, "absent.jsonl"), "absent.jsonl: cannot open dataset", testParams()},
	}
	for _, c := range cases {
		out := filepath.Join(dir, "out.jsonl")
		_, _, err := Plant(context.Background(), fake.New("base"), PlantOptions{Input: c.input, Output: out, KeyPath: filepath.Join(dir, "k.json"), Params: c.p})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", filepath.Base(c.input), err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() == "out.jsonl" || e.Name() == "k.json" || strings.HasPrefix(e.Name(), ".") {
				t.Fatalf("%s: left %s behind", filepath.Base(c.input), e.Name())
			}
		}
	}
	in := writeChat(t, dir, 100)
	_, _, err := Plant(context.Background(), fake.New("base"), PlantOptions{Input: in, Output: in, KeyPath: filepath.Join(dir, "k.json"), Params: testParams()})
	if err == nil || !strings.Contains(err.Error(), "is the input") {
		t.Fatalf("output = input: %v", err)
	}
}

// writeMixed writes n chat records whose answers are short (10 bytes) for even n and long (100
// bytes) for odd ones, so a draw proportional to answer length shows in the counts.
func writeMixed(t *testing.T, dir string, n int) string {
	t.Helper()
	var b bytes.Buffer
	for i := range n {
		ans := fmt.Sprintf("short %04d", i)
		if i%2 == 1 {
			ans = fmt.Sprintf("long %04d ", i) + strings.Repeat("x", 90)
		}
		fmt.Fprintf(&b, `{"messages":[{"role":"user","content":"Define w%d."},{"role":"assistant","content":%q}]}`+"\n", i, ans)
	}
	p := filepath.Join(dir, "mixed.jsonl")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Planting draws held-back records and sentinels in proportion to answer length, away from the
// hosts; the held-back ones leave the output, the sentinels stay unchanged, and both carry the
// base model's scores in the key.
func TestPlantWholeDataRecords(t *testing.T) {
	dir := t.TempDir()
	in := writeMixed(t, dir, 4000)
	orig, _ := os.ReadFile(in)
	key, sum := plantFake(t, dir, in, 3, testParams())
	w := key.WholeData
	if w == nil || len(w.HeldBack) != 80 || len(w.Sentinels) != 80 || !w.Guaranteed() {
		t.Fatalf("whole data %+v; want 80 held back and 80 sentinels (2%% of 4000), drawn", w)
	}
	if sum.HeldBack != 80 || sum.Sentinels != 80 || sum.OutputRecords != 4000-80 || sum.WholeDataNote != "" {
		t.Fatalf("summary %+v", sum)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out.jsonl"))
	inL := strings.Split(strings.TrimSuffix(string(orig), "\n"), "\n")
	outText := string(out)
	long := 0
	seen := map[int]bool{}
	for i, r := range append(append([]ScoredRecord(nil), w.HeldBack...), w.Sentinels...) {
		if seen[r.Line] {
			t.Fatalf("line %d drawn twice", r.Line)
		}
		seen[r.Line] = true
		line := inL[r.Line-1]
		var rec struct{ Messages []backend.Message }
		json.Unmarshal([]byte(line), &rec)
		if rec.Messages[1].Content != r.Answer || r.Base.Tokens < 1 || r.Base.Logprob >= 0 {
			t.Fatalf("record of line %d: answer %q, base %+v; input has %q", r.Line, r.Answer, r.Base, rec.Messages[1].Content)
		}
		held := i < len(w.HeldBack)
		if strings.Contains(outText, line+"\n") == held {
			t.Errorf("line %d (held back %v) is in the output: %v", r.Line, held, !held)
		}
		if strings.HasPrefix(r.Answer, "long") {
			long++
		}
	}
	for _, g := range key.Groups {
		for _, pr := range g.Prompts {
			if seen[pr.Line] {
				t.Errorf("host line %d was also drawn for the whole-data test", pr.Line)
			}
		}
	}
	// Long answers weigh 10 times short ones: about 10/11 of the draw (a little less without
	// replacement), far above the half a uniform draw would give.
	if frac := float64(long) / 160; frac < 0.8 {
		t.Errorf("%.2f of the drawn records have long answers; a draw by answer length gives about 0.9", frac)
	}
}

// learnFile makes m learn every record of a dataset file for which keep says so, as a fine-tune
// on those records would.
func learnFile(t *testing.T, m *fake.Model, path string, keep func(msgs []backend.Message, answer string) bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		msgs, answer, err := Record{Line: i + 1, Raw: []byte(line), Format: Chat}.Conversation()
		if err != nil {
			t.Fatal(err)
		}
		if keep(msgs, answer) {
			m.Learn(msgs, answer)
		}
	}
}

// The verdict's three outcomes, with the providers of method.md's table played by fake models
// trained on parts of the planted output.
func TestVerdicts(t *testing.T) {
	dir := t.TempDir()
	in := writeMixed(t, dir, 4000)
	key, _ := plantFake(t, dir, in, 5, testParams())
	out := filepath.Join(dir, "out.jsonl")
	signature := map[string]bool{}
	for _, g := range key.PlantedGroups() {
		signature[g.Signature] = true
	}
	all := func([]backend.Message, string) bool { return true }
	planted := func(_ []backend.Message, a string) bool { return signature[a] }
	natural := func(_ []backend.Message, a string) bool { return !signature[a] }
	cases := []struct {
		provider string
		learn    func([]backend.Message, string) bool
		decoy    bool
		verdict  string
		reasons  []string
	}{
		{"honest", all, false, Verified, nil},
		{"base", nil, false, NotVerified, []string{ReasonNoSecret, ReasonNeither}},
		{"strip", natural, false, NotVerified, []string{ReasonNoSecret}},
		{"backdoor-only", planted, false, NotVerified, []string{ReasonNoData}},
		{"leaked key", all, true, Inconclusive, []string{ReasonDecoy}},
	}
	for _, c := range cases {
		m := fake.New(c.provider)
		if c.learn != nil {
			learnFile(t, m, out, c.learn)
		}
		if c.decoy {
			d := key.Decoys()[0]
			m.Learn(d.Prompts[0].Messages, d.Signature)
		}
		rep, err := Verify(context.Background(), m, key, VerifyOptions{Alpha: 1e-6, MinShare: DefaultMinShare, AlphaData: DefaultAlphaData})
		if err != nil {
			t.Fatalf("%s: %v", c.provider, err)
		}
		wd := rep.WholeData
		t.Logf("%-13s %s %q: hits %d, X %d of %d, log10 p_data %.1f, share >= %.2f", c.provider, rep.Verdict, rep.Reasons, rep.Hits, wd.X, wd.Sentinels, wd.Log10PData, wd.ShareLower95)
		if rep.Verdict != c.verdict || !slices.Equal(rep.Reasons, c.reasons) || rep.Verified != (c.verdict == Verified) {
			t.Errorf("%s: verdict %s %q, want %s %q", c.provider, rep.Verdict, rep.Reasons, c.verdict, c.reasons)
		}
		if c.decoy {
			// After a decoy hit no other figure can be trusted: the test is not even run.
			if wd.Available || !strings.Contains(wd.Note, "decoy") {
				t.Errorf("%s: whole-data test %+v", c.provider, wd)
			}
			continue
		}
		if !wd.Available || !wd.Guaranteed || wd.HeldBack != 80 || wd.Sentinels != 80 {
			t.Errorf("%s: whole-data test %+v", c.provider, wd)
		}
		// A model that saw the natural records puts every sentinel above the held-back ones.
		if trained := c.provider == "honest" || c.provider == "strip"; trained != (wd.X == wd.Sentinels) || !trained && wd.X != 0 {
			t.Errorf("%s: X = %d of %d", c.provider, wd.X, wd.Sentinels)
		}
	}
}

// When the key cannot be written, a file that was at the output path before stays as it was
// (it used to be removed), and no temporary file is left.
func TestPlantKeyFailureKeepsOldOutput(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 300)
	out := filepath.Join(dir, "out.jsonl")
	os.WriteFile(out, []byte("precious\n"), 0o644)
	opt := PlantOptions{Input: in, Output: out, KeyPath: filepath.Join(dir, "no-such-dir", "key.json"), Params: testParams()}
	if _, _, err := Plant(context.Background(), fake.New("base"), opt); err == nil || !strings.Contains(err.Error(), "writing key") {
		t.Fatalf("plant with an unwritable key: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious\n" {
		t.Fatalf("the output that was there before is now %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("left behind: %v", ents)
	}
}

// An interrupt that arrives while the output is being written (it used to be ignored: exit 0 with
// the files written) stops planting with nothing renamed into place and nothing left behind.
func TestPlantInterruptedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 300)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opt := PlantOptions{Input: in, Output: filepath.Join(dir, "out.jsonl"), KeyPath: filepath.Join(dir, "key.json"), Params: testParams(),
		Progress: func(stage string, done, total int) {
			if stage == StageWrite && done == total {
				cancel() // the signal arrives as the last record is written
			}
		}}
	if _, _, err := Plant(ctx, fake.New("base"), opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("plant interrupted while writing: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// deadEnd is a model with no text candidate once a reply is 10 bytes long: every signature meets a
// dead end after a few secret choices.
type deadEnd struct{ *fake.Model }

func (d deadEnd) Next(ctx context.Context, p backend.Prompt, n int) ([]backend.Token, error) {
	const reply = "<|im_start|>assistant\n"
	if i := strings.LastIndex(p.Text, reply); i >= 0 && len(p.Text)-i-len(reply) >= 10 {
		return []backend.Token{{Text: "<|im_end|>", Logprob: -0.1}, {Text: "\n", Logprob: -3}}, nil
	}
	return d.Model.Next(ctx, p, n)
}

// A dead end after secret choices ends the signature there, with Q_j over the steps taken: redrawing
// on another host would favour the paths without dead ends and break the bound.
func TestDeadEndEndsSignature(t *testing.T) {
	dir := t.TempDir()
	in := writeChat(t, dir, 400)
	opt := PlantOptions{Input: in, Output: filepath.Join(dir, "out.jsonl"), KeyPath: filepath.Join(dir, "key.json"),
		Params: testParams(), Seed: [32]byte{9}}
	key, _, err := Plant(context.Background(), deadEnd{fake.New("base")}, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range key.Groups {
		lq := 0.0
		for _, k := range g.K {
			lq -= math.Log(float64(k))
		}
		if len(g.Tokens) == 0 || len(g.Tokens) >= 12 || len(g.K) != len(g.Tokens) || len(g.Signature) < 10 || math.Abs(lq-g.LogQ) > 1e-12 {
			t.Errorf("group %d: %d tokens %q, k %v, log Q %v (want %v): the signature should end at the dead end", g.ID, len(g.Tokens), g.Signature, g.K, g.LogQ, lq)
		}
	}
}
