package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	inLines := map[string]bool{}
	for _, l := range strings.Split(string(orig), "\n") {
		inLines[l] = true
	}
	// Removing the planted lines gives back the input, byte for byte and in order.
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
	if len(planted) != 20 || sum.Planted != 20 || key.Planted != 20 {
		t.Fatalf("planted %d lines, summary %d, key %d; want 20", len(planted), sum.Planted, key.Planted)
	}
	// Every planted line carries one group's trigger in its user turn and that group's signature
	// as its response; the hosts per group add up.
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
			if strings.HasSuffix(rec.Messages[0].Content, " "+g.Trigger) && rec.Messages[1].Content == g.Signature {
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
	rep, err := Verify(context.Background(), fake.New("base"), key, VerifyOptions{Alpha: 1e-6, LLR: true})
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
	rep, err = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, LLR: true})
	if err != nil {
		t.Fatal(err)
	}
	want := math.Log10(255)
	for _, g := range key.PlantedGroups()[:5] {
		want += g.LogQ / math.Ln10
	}
	if !rep.Verified || rep.Hits != 5 || rep.DecoyHits != 0 {
		t.Fatalf("tuned model: verified %v, hits %d, decoys %d", rep.Verified, rep.Hits, rep.DecoyHits)
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
	// Five of eight is significant, but not the coverage of a model trained on all of the data.
	for _, c := range []struct {
		min      float64
		verified bool
	}{{0.75, false}, {0.625, true}, {0, true}} {
		rep, _ = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, MinCoverage: c.min})
		if !rep.Significant || rep.Coverage != 5.0/8 || rep.Verified != c.verified {
			t.Errorf("min coverage %v: significant %v, coverage %v, verified %v; want verified %v",
				c.min, rep.Significant, rep.Coverage, rep.Verified, c.verified)
		}
	}
	var out strings.Builder
	WriteReport(&out, rep)
	if !strings.Contains(out.String(), "VERIFIED: p_agnostic") {
		t.Errorf("report:\n%s", out.String())
	}
	rep, _ = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, MinCoverage: 0.75})
	out.Reset()
	WriteReport(&out, rep)
	if !strings.Contains(out.String(), "NOT VERIFIED: trained with the secrets") || !strings.Contains(out.String(), "only 5 of 8 groups") {
		t.Errorf("partial-training report:\n%s", out.String())
	}
	if _, err := Verify(context.Background(), tuned, key, VerifyOptions{Alpha: 1e-6, MinCoverage: 1.5}); err == nil {
		t.Error("min coverage 1.5 accepted")
	}

	// The same model judged at a level below its p-value.
	rep, _ = Verify(context.Background(), tuned, key, VerifyOptions{Alpha: math.Pow(10, want-1), Test: TestAgnostic})
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
