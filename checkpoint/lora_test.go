package checkpoint

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"vtune/backend"
	"vtune/backend/servertest"
)

// These tests load hand-made LoRA adapters into the real servers: a private Ollama and the
// repository's llama-server.

func TestMain(m *testing.M) { servertest.Main(m) }

// handLoRA writes a LoRA and its model merged by hand (WriteTestLoRA).
func handLoRA(t *testing.T, base, adapter, merged string, modules []string, rank int, alpha float64) {
	t.Helper()
	if err := WriteTestLoRA(base, adapter, merged, modules, rank, alpha); err != nil {
		t.Fatal(err)
	}
}

// chatML is the Qwen2 and tiny-llama chat template (testdata/models/*.Modelfile).
const chatML = `{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
`

var loraPrompts = []string{"What does the word cat mean?", "Define: river", "Give a synonym of quick.", "What is a lamp?"}

// answers is what a loaded model says: greedy text for each prompt, and the log-probabilities of
// a fixed reply's tokens.
type answers struct {
	text   []string
	scores [][]float64
	files  []File
}

// ask opens a checkpoint, asks it loraPrompts, closes it, and checks that nothing it made is left:
// its temporary Ollama model, its llama-server, its files in TMPDIR and in the sid chroot.
func ask(t *testing.T, opt Options) answers {
	t.Helper()
	ctx := context.Background()
	opt.Expect = Expect{Template: chatML}
	m, err := Open(ctx, opt)
	if err != nil {
		t.Fatalf("Open(%s over %q, %s): %v", opt.Path, opt.Base, opt.Backend, err)
	}
	var out answers
	out.files = m.Provenance.Files
	for _, p := range loraPrompts {
		prompt := backend.Prompt{Text: "<|im_start|>user\n" + p + "<|im_end|>\n<|im_start|>assistant\n"}
		g, err := m.Greedy(ctx, prompt, 16)
		if err != nil {
			m.Close()
			t.Fatal(err)
		}
		s, err := m.ScoreText(ctx, prompt, "A small animal that people keep.")
		if err != nil {
			m.Close()
			t.Fatal(err)
		}
		var lp []float64
		for _, tok := range s.Tokens {
			lp = append(lp, tok.Logprob)
		}
		out.text, out.scores = append(out.text, g), append(out.scores, lp)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if left := leftBehind(t, opt, out.files); len(left) > 0 {
		t.Fatalf("%s over %q, %s: left behind %q", opt.Path, opt.Base, opt.Backend, left)
	}
	return out
}

// leftBehind lists what a closed model left: its Ollama model, temporary files in TMPDIR, links to
// its GGUF files in the sid chroot, a llama-server process running one of them.
func leftBehind(t *testing.T, opt Options, files []File) []string {
	var left []string
	if ents, _ := os.ReadDir(os.TempDir()); len(ents) > 0 {
		for _, e := range ents {
			left = append(left, "temp file "+e.Name())
		}
	}
	if opt.Backend == "ollama" {
		for _, m := range servertest.OllamaModels(t, opt.URL, "vtune-checkpoint-") {
			left = append(left, "ollama model "+m)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		if f.Role != "converted" && f.Role != "merged" {
			continue
		}
		base := filepath.Base(f.Path)
		if ents, _ := filepath.Glob(filepath.Join(servertest.Root(), ".tools/sid/tmp/llama-server-chroot.*", base+"*")); len(ents) > 0 {
			left = append(left, ents...)
		}
		for _, p := range procs {
			b, _ := os.ReadFile(p)
			if strings.Contains(string(b), "llama-server") && strings.Contains(string(b), base) {
				left = append(left, "process "+strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
	}
	return left
}

// sameAnswers fails unless two models give the same greedy text and scores within tol.
func sameAnswers(t *testing.T, what string, a, b answers, tol float64) {
	t.Helper()
	if !reflect.DeepEqual(a.text, b.text) {
		t.Fatalf("%s: greedy answers differ:\n%q\n%q", what, a.text, b.text)
	}
	for i := range a.scores {
		if len(a.scores[i]) != len(b.scores[i]) {
			t.Fatalf("%s: prompt %d scored as %d and %d tokens", what, i, len(a.scores[i]), len(b.scores[i]))
		}
		for j := range a.scores[i] {
			if d := math.Abs(a.scores[i][j] - b.scores[i][j]); d > tol {
				t.Fatalf("%s: prompt %d token %d: log-probabilities %g and %g", what, i, j, a.scores[i][j], b.scores[i][j])
			}
		}
	}
}

func roles(files []File) map[string]int {
	out := map[string]int{}
	for _, f := range files {
		out[f.Role]++
	}
	return out
}

// TestQwen2AdapterMerged: a Qwen2 PEFT adapter, which Ollama's converter has no adapter route for,
// loads over its base's Hugging Face folder (merged in Go) and answers exactly as the model merged
// by hand does, through llama-server and through Ollama, and leaves nothing behind.
func TestQwen2AdapterMerged(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real servers")
	}
	hf := servertest.Model("tiny-qwen2-hf")
	dir := t.TempDir()
	adapter, merged := filepath.Join(dir, "adapter"), filepath.Join(dir, "merged")
	handLoRA(t, hf, adapter, merged, []string{"q_proj", "v_proj"}, 8, 16)
	srv := servertest.StartOllama(t) // before TMPDIR moves: its state folder is not ours to check
	llama := servertest.UseLlamaServer(t)
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	t.Setenv("TMPDIR", tmp)

	for _, server := range []Options{{Backend: "llamacpp", LlamaServer: llama}, {Backend: "ollama", URL: srv.URL}} {
		with := func(path, base string) Options { o := server; o.Path, o.Base = path, base; return o }
		b := ask(t, with(hf, ""))
		m := ask(t, with(merged, ""))
		a := ask(t, with(adapter, hf))
		if reflect.DeepEqual(b.text, m.text) {
			t.Fatalf("%s: the merged model answers like the base; the LoRA changes nothing: %q", server.Backend, b.text)
		}
		sameAnswers(t, server.Backend+": adapter over base and merged model", a, m, 1e-3)
		if r := roles(a.files); r["merged"] != 1 || r["converted"] != 0 || r["adapter"] != 2 || r["base"] == 0 {
			t.Fatalf("%s: provenance files %+v", server.Backend, a.files)
		}
		t.Logf("%s: %q", server.Backend, a.text)
	}

	// Over a model on the Ollama server there are no weights to merge into: refused in one line.
	name := srv.Create(t, "tiny-qwen2", "tiny-qwen2.Modelfile")
	_, err := Open(context.Background(), Options{Path: adapter, Base: name, Backend: "ollama", URL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "no adapter route for qwen2") || !strings.Contains(err.Error(), "checkpoint.Options.Base") {
		t.Fatalf("adapter over the server's %s: %v", name, err)
	}
	if left := leftBehind(t, Options{Backend: "ollama", URL: srv.URL}, nil); len(left) > 0 {
		t.Fatalf("left behind %q", left)
	}
}

// TestLlamaAdapterConverted: a Llama adapter still goes through Ollama's adapter converter (a GGUF
// adapter passed to llama-server with --lora), not the merge, and answers as its merged model.
func TestLlamaAdapterConverted(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real servers")
	}
	hf := servertest.Model("tiny-llama-hf")
	dir := t.TempDir()
	adapter, merged := filepath.Join(dir, "adapter"), filepath.Join(dir, "merged")
	handLoRA(t, hf, adapter, merged, []string{"v_proj", "o_proj"}, 4, 8)
	llama := servertest.UseLlamaServer(t)
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	t.Setenv("TMPDIR", tmp)

	opt := Options{Backend: "llamacpp", LlamaServer: llama}
	m := opt
	m.Path = merged
	a := opt
	a.Path, a.Base = adapter, hf
	am := ask(t, a)
	// llama-server adds B·A to each product at run time in F32, where the merged model rounded
	// W + s·B·A to F16 once: the scores agree to about 1e-2, not exactly.
	sameAnswers(t, "adapter over base and merged model", am, ask(t, m), 1e-2)
	var adapterGGUF bool
	for _, f := range am.files {
		adapterGGUF = adapterGGUF || f.Role == "converted" && strings.HasPrefix(filepath.Base(f.Path), "vtune-adapter-")
	}
	if r := roles(am.files); r["merged"] != 0 || !adapterGGUF {
		t.Fatalf("provenance files %+v: want a converted GGUF adapter and no merge", am.files)
	}
}
