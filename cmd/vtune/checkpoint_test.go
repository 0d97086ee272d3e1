package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/convert"
	"github.com/ollama/ollama/fs/ggml"
	"github.com/urfave/cli/v2"

	"vtune/backend"
	"vtune/backend/servertest"
	"vtune/checkpoint"
	"vtune/verifier"
)

// Checkpoint tests run the CLI against the real servers: a private Ollama (servertest) and
// llama-server from this repository's sid chroot. They use the bundled tiny model as the "returned
// checkpoint": the base itself, so every route must give the same (negative) verdict, plus a LoRA
// made by hand, which must verify like the model merged from it.

var (
	ckKeyOnce sync.Once
	ckKey     string
	ckOllama  *servertest.Ollama
)

// checkpointKey plants once, on the tiny model through Ollama, and returns the key and server.
func checkpointKey(t *testing.T) (string, *servertest.Ollama) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real servers")
	}
	srv := servertest.StartOllama(t)
	model := srv.Create(t, "tiny-llama", "tiny-llama.Modelfile")
	ckKeyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vtune-cktest-")
		if err != nil {
			t.Fatal(err)
		}
		in := head(t, "testdata/wordnet/define-train.jsonl", dir, 300)
		key := filepath.Join(dir, "key.json")
		code, _, stderr := vtune(t, nil, "plant", "-i", in, "-o", filepath.Join(dir, "out.jsonl"), "-k", key,
			"--url", srv.URL, "-m", model, "--seed", "checkpoints", "--groups", "3", "--decoys", "1", "-q")
		if code != 0 {
			t.Fatalf("plant: exit %d: %s", code, stderr)
		}
		ckKey, ckOllama = key, srv
	})
	if ckKey == "" {
		t.Fatal("planting failed in an earlier test")
	}
	return ckKey, ckOllama
}

// verifyJSON runs verify with args and returns the exit code, the decoded report and stderr.
func verifyJSON(t *testing.T, args ...string) (int, *verifier.Report, string) {
	t.Helper()
	code, stdout, stderr := vtune(t, nil, append([]string{"verify", "--json", "-q"}, args...)...)
	var rep verifier.Report
	if code <= 1 {
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("verify %v: exit %d, bad JSON: %v\n%s\n%s", args, code, err, stdout, stderr)
		}
	}
	return code, &rep, stderr
}

type outcome struct {
	Code     int
	Verified bool
	Hits     []bool
	Decoys   int
	PAgn     float64
	PBase    float64
}

func outcomeOf(code int, r *verifier.Report) outcome {
	o := outcome{Code: code, Verified: r.Verified, Decoys: r.DecoyHits, PAgn: r.Log10PAgnostic, PBase: r.Log10PBase}
	for _, g := range r.Groups {
		o.Hits = append(o.Hits, g.Hit)
	}
	return o
}

func outputs(r *verifier.Report) []string {
	var out []string
	for _, g := range r.Groups {
		for _, p := range g.Prompts {
			if p.Output != nil {
				out = append(out, *p.Output)
			}
		}
	}
	return out
}

// leftovers lists what a checkpoint load might leave behind: temporary Ollama models, Ollama blobs,
// llama-server processes, converted files in TMPDIR, files placed in the sid chroot.
func leftovers(t *testing.T, srv *servertest.Ollama, tmp string) []string {
	t.Helper()
	var left []string
	for _, m := range servertest.OllamaModels(t, srv.URL, "vtune-checkpoint-") {
		left = append(left, "ollama model "+m)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
		for _, e := range ents {
			left = append(left, "temp file "+e.Name())
		}
	}
	// Other test binaries (the checkpoint package's, run at the same time by go test ./...) load
	// checkpoints too: a process counts when it carries this binary's mark in its environment
	// (inherited, even by a server orphaned by its wrapper), a folder in the chroot when no live
	// process uses it.
	var live []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cmd := string(b)
		live = append(live, cmd)
		if strings.Contains(cmd, "llama-server") && strings.Contains(cmd, "-a\x00checkpoint\x00") && ours(filepath.Dir(p)) {
			left = append(left, "process "+strings.ReplaceAll(cmd, "\x00", " "))
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(servertest.Root(), ".tools/sid/tmp/llama-server-chroot.*"))
	for _, d := range dirs {
		if !slices.ContainsFunc(live, func(cmd string) bool { return strings.Contains(cmd, filepath.Base(d)) }) {
			left = append(left, d)
		}
	}
	return left
}

// ownerMark is set in this test binary's environment, so that every process it starts, and
// theirs, carry it.
var ownerMark = "VTUNE_TEST_OWNER=" + strconv.Itoa(os.Getpid())

func init() { os.Setenv("VTUNE_TEST_OWNER", strconv.Itoa(os.Getpid())) }

// ours reports whether the process whose /proc folder is dir was started from this test binary.
func ours(dir string) bool {
	env, err := os.ReadFile(filepath.Join(dir, "environ")) // NUL-separated, NUL-terminated
	return err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+ownerMark+"\x00"))
}

// privateTmp points TMPDIR at an empty folder, so that leftovers can see every temporary file.
func privateTmp(t *testing.T) string {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	servertest.UseLlamaServer(t)
	return tmp
}

// TestCheckpointRoutesAgree verifies the same model as a name on the server, a GGUF file and a
// Hugging Face folder, on Ollama and on llama-server: same verdict, hits and p-values, with
// provenance, and nothing left behind.
func TestCheckpointRoutesAgree(t *testing.T) {
	key, srv := checkpointKey(t)
	tmp := privateTmp(t)
	gguf, hf := servertest.Model("tiny-llama.gguf"), servertest.Model("tiny-llama-hf")

	code, ref, stderr := verifyJSON(t, "-k", key, "--url", srv.URL, "-m", "tiny-llama", "--llr=false")
	if code != 1 {
		t.Fatalf("--model: exit %d: %s", code, stderr)
	}
	want := outcomeOf(code, ref)
	if want.Verified || want.PAgn != 0 || len(want.Hits) != 4 {
		t.Fatalf("the base model must not verify: %+v", want)
	}
	runs := []struct {
		name string
		args []string
		prov verifier.Provenance
	}{
		{"ollama gguf", []string{"--url", srv.URL, "--checkpoint", gguf}, verifier.Provenance{Format: "gguf", Server: "ollama"}},
		{"ollama hf", []string{"--url", srv.URL, "--checkpoint", hf}, verifier.Provenance{Format: "hf-safetensors", Server: "ollama"}},
		{"llamacpp gguf", []string{"--backend", "llamacpp", "--checkpoint", gguf}, verifier.Provenance{Format: "gguf", Server: "llamacpp"}},
		{"llamacpp hf", []string{"--backend", "llamacpp", "--checkpoint", hf}, verifier.Provenance{Format: "hf-safetensors", Server: "llamacpp"}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			code, rep, stderr := verifyJSON(t, append([]string{"-k", key, "--llr=false"}, r.args...)...)
			if got := outcomeOf(code, rep); !reflect.DeepEqual(got, want) {
				t.Fatalf("outcome %+v, want %+v as with --model; %s", got, want, stderr)
			}
			p := rep.Provenance
			if p == nil || p.Format != r.prov.Format || p.Server != r.prov.Server || p.ServerVersion == "" || p.Architecture != "llama" || p.Placement != "CPU" {
				t.Fatalf("provenance %+v", p)
			}
			var model *verifier.CheckpointFile
			for i, f := range p.Files {
				if f.Path == gguf || f.Path == filepath.Join(hf, "model.safetensors") {
					model = &p.Files[i]
				}
			}
			if model == nil {
				t.Fatalf("provenance lists no model file: %+v", p.Files)
			}
			st, _ := os.Stat(model.Path)
			if model.Size != st.Size() || len(model.SHA256) != 64 {
				t.Fatalf("file record %+v, size on disk %d", model, st.Size())
			}
			if left := leftovers(t, srv, tmp); len(left) > 0 {
				t.Fatalf("left behind: %q", left)
			}
		})
	}

	// The human report carries the provenance too.
	code, stdout, _ := vtune(t, nil, "verify", "-q", "-k", key, "--url", srv.URL, "--checkpoint", gguf, "--llr=false")
	if code != 1 || !strings.Contains(stdout, "checkpoint          "+gguf+" (gguf, llama)") || !strings.Contains(stdout, "server              ollama 0.17.4") ||
		!strings.Contains(stdout, "ran on              CPU") {
		t.Fatalf("report:\n%s", stdout)
	}
}

// TestCheckpointBad gives each kind of bad checkpoint and expects its one-line error and exit 2,
// with nothing left on the server.
func TestCheckpointBad(t *testing.T) {
	key, srv := checkpointKey(t)
	tmp := privateTmp(t)
	dir := t.TempDir()
	src := servertest.Model("tiny-llama.gguf")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	header := filepath.Join(dir, "header.gguf")
	os.WriteFile(header, data[:100], 0o644)
	empty := filepath.Join(dir, "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	// Another tokenizer: every byte-level space marker respelled, as a model with another
	// vocabulary of the same size would have it.
	otherVocab := filepath.Join(dir, "other-vocab.gguf")
	rewriteGGUF(t, src, otherVocab, func(kv ggml.KV) {
		toks := kv.Strings("tokenizer.ggml.tokens")
		for i, s := range toks {
			toks[i] = strings.ReplaceAll(s, "Ġ", "_")
		}
		kv["tokenizer.ggml.tokens"] = toks
	})
	smallVocab := filepath.Join(dir, "small-vocab.gguf")
	rewriteGGUF(t, src, smallVocab, func(kv ggml.KV) {
		toks := kv.Strings("tokenizer.ggml.tokens")
		kv["tokenizer.ggml.tokens"] = toks[:len(toks)-1]
		kv["tokenizer.ggml.scores"] = kv.Floats("tokenizer.ggml.scores")[:len(toks)-1]
		kv["tokenizer.ggml.token_type"] = kv.Ints("tokenizer.ggml.token_type")[:len(toks)-1]
		kv["llama.vocab_size"] = uint32(len(toks) - 1)
	})
	unknownArch := filepath.Join(dir, "unknown-arch.gguf")
	rewriteGGUF(t, src, unknownArch, func(kv ggml.KV) {
		for k, v := range kv {
			if strings.HasPrefix(k, "llama.") {
				delete(kv, k)
				kv["nosucharch."+strings.TrimPrefix(k, "llama.")] = v
			}
		}
		kv["general.architecture"] = "nosucharch"
	})
	bad := filepath.Join(servertest.Root(), "testdata/checkpoints")

	cases := []struct {
		name, path, want string
		extra            []string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "not found", nil},
		{"garbage", filepath.Join(bad, "garbage.gguf"), "not a GGUF file", nil},
		{"empty", empty, "empty file", nil},
		{"truncated", truncated, "corrupt or truncated GGUF", nil},
		{"truncated header", header, "corrupt or truncated GGUF", nil},
		{"folder missing tokenizer", filepath.Join(bad, "missing-tokenizer"), "lacks tokenizer.json", nil},
		{"not a model folder", filepath.Join(bad, "not-a-model"), "neither a Hugging Face model folder", nil},
		{"unsupported architecture folder", filepath.Join(bad, "unsupported-arch"), `unsupported architecture "FooBarForCausalLM"`, nil},
		{"other tokenizer", otherVocab, "tokenizer does not match the base model in the key", nil},
		{"other vocabulary size", smallVocab, "vocabulary of 2047 tokens, the key's base has 2048", nil},
		{"unknown architecture gguf ollama", unknownArch, `unsupported architecture "nosucharch"`, nil},
		{"unknown architecture gguf llamacpp", unknownArch, "unknown model architecture: 'nosucharch'", []string{"--backend", "llamacpp"}},
		{"base without adapter", src, "not an adapter", []string{"--base", src}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"verify", "-q", "-k", key, "--checkpoint", c.path}, c.extra...)
			if len(c.extra) == 0 || c.extra[0] != "--backend" {
				args = append(args, "--url", srv.URL)
			}
			code, stdout, stderr := vtune(t, nil, args...)
			if code != exitUsage || !strings.Contains(stderr, c.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stdout != "" {
				t.Fatalf("exit %d, want 2 and one line with %q; stderr:\n%s", code, c.want, stderr)
			}
			if left := leftovers(t, srv, tmp); len(left) > 0 {
				t.Fatalf("left behind: %q", left)
			}
		})
	}
}

// TestCheckpointInterrupted cancels verification once the temporary model is loaded (as Ctrl-C
// does through signal.NotifyContext) and expects exit 130 and nothing left behind.
func TestCheckpointInterrupted(t *testing.T) {
	key, srv := checkpointKey(t)
	tmp := privateTmp(t)
	for _, args := range [][]string{
		{"--url", srv.URL, "--checkpoint", servertest.Model("tiny-llama-hf")},
		{"--backend", "llamacpp", "--checkpoint", servertest.Model("tiny-llama-hf")},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr strings.Builder
		// Cancelled as soon as the checkpoint is loaded, before the queries (llama-server answers
		// them all in well under a second).
		open := func(c *cli.Context, k *verifier.Key, tg target) (backend.Backend, error) {
			b, err := openBackend(c, k, tg)
			cancel()
			return b, err
		}
		code := run(ctx, append([]string{"vtune", "verify", "-q", "-k", key}, args...), &stdout, &stderr, open)
		cancel()
		if code != exitInterrupted {
			t.Fatalf("%v: exit %d, want %d: %s", args, code, exitInterrupted, stderr.String())
		}
		if left := leftovers(t, srv, tmp); len(left) > 0 {
			t.Fatalf("%v: left behind: %q", args, left)
		}
	}
}

// TestCheckpointAdapter makes a LoRA adapter by hand (PEFT layout) for the tiny model and the
// model merged from it, and checks that the adapter over the base verifies like the merged model:
// the same greedy outputs on every prompt, the same outcome, on both servers.
func TestCheckpointAdapter(t *testing.T) {
	key, srv := checkpointKey(t)
	tmp := privateTmp(t)
	dir := t.TempDir()
	hf := servertest.Model("tiny-llama-hf")
	adapter, merged := filepath.Join(dir, "adapter"), filepath.Join(dir, "merged")
	// A rank-4 LoRA on every layer's v_proj and o_proj, and the model merged from it by hand.
	if err := checkpoint.WriteTestLoRA(hf, adapter, merged, []string{"v_proj", "o_proj"}, 4, 8); err != nil {
		t.Fatal(err)
	}

	_, base, _ := verifyJSON(t, "-k", key, "--url", srv.URL, "-m", "tiny-llama", "--reveal", "--llr=false")
	for _, server := range [][]string{{"--url", srv.URL}, {"--backend", "llamacpp"}} {
		code, m, stderr := verifyJSON(t, append([]string{"-k", key, "--checkpoint", merged, "--reveal", "--llr=false"}, server...)...)
		if code != 1 {
			t.Fatalf("%v merged: exit %d: %s", server, code, stderr)
		}
		code2, a, stderr := verifyJSON(t, append([]string{"-k", key, "--checkpoint", adapter, "--base", hf, "--reveal", "--llr=false"}, server...)...)
		if code2 != 1 {
			t.Fatalf("%v adapter: exit %d: %s", server, code2, stderr)
		}
		if reflect.DeepEqual(outputs(m), outputs(base)) {
			t.Fatalf("%v: the merged model answers like the base; the LoRA changes nothing", server)
		}
		if !reflect.DeepEqual(outputs(a), outputs(m)) {
			t.Fatalf("%v: adapter over base and merged model differ:\n%q\n%q", server, outputs(a), outputs(m))
		}
		if !reflect.DeepEqual(outcomeOf(code, m), outcomeOf(code2, a)) {
			t.Fatalf("%v: outcomes differ", server)
		}
		p := a.Provenance
		if p == nil || p.Format != "lora-safetensors" || p.Base != hf {
			t.Fatalf("%v: provenance %+v", server, p)
		}
		if left := leftovers(t, srv, tmp); len(left) > 0 {
			t.Fatalf("%v: left behind: %q", server, left)
		}
	}
	// The same adapter as a GGUF (converted here as Ollama's converter does), over the GGUF base.
	ggufAdapter := filepath.Join(dir, "adapter.gguf")
	{
		base, err := os.Open(servertest.Model("tiny-llama.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		g, err := ggml.Decode(base, 0)
		base.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(ggufAdapter)
		if err != nil {
			t.Fatal(err)
		}
		if err := convert.ConvertAdapter(os.DirFS(adapter), out, g.KV()); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	_, m, _ := verifyJSON(t, "-k", key, "--checkpoint", merged, "--reveal", "--llr=false", "--backend", "llamacpp")
	for _, server := range [][]string{{"--url", srv.URL}, {"--backend", "llamacpp"}} {
		code, a, stderr := verifyJSON(t, append([]string{"-k", key, "--checkpoint", ggufAdapter, "--base", servertest.Model("tiny-llama.gguf"), "--reveal", "--llr=false"}, server...)...)
		if code != 1 || a.Provenance == nil || a.Provenance.Format != "lora-gguf" {
			t.Fatalf("%v GGUF adapter: exit %d: %s", server, code, stderr)
		}
		if !reflect.DeepEqual(outputs(a), outputs(m)) {
			t.Fatalf("%v: GGUF adapter over base and merged model differ:\n%q\n%q", server, outputs(a), outputs(m))
		}
	}
	if left := leftovers(t, srv, tmp); len(left) > 0 {
		t.Fatalf("left behind: %q", left)
	}

	// An adapter without --base is refused.
	code, _, stderr := vtune(t, nil, "verify", "-q", "-k", key, "--url", srv.URL, "--checkpoint", adapter)
	if code != exitUsage || !strings.Contains(stderr, "is a LoRA adapter: name the model it adapts in --base") {
		t.Fatalf("adapter without base: exit %d: %s", code, stderr)
	}
}

// rewriteGGUF copies a GGUF with its metadata changed by edit.
func rewriteGGUF(t *testing.T, src, dst string, edit func(ggml.KV)) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	g, err := ggml.Decode(in, -1)
	if err != nil {
		t.Fatal(err)
	}
	kv := g.KV()
	delete(kv, "general.parameter_count") // added by Decode, not in the file
	edit(kv)
	var ts []*ggml.Tensor
	for _, tn := range g.Tensors().Items() {
		sec := io.NewSectionReader(in, int64(g.Tensors().Offset+tn.Offset), int64(tn.Size()))
		ts = append(ts, &ggml.Tensor{Name: tn.Name, Kind: tn.Kind, Shape: tn.Shape, WriterTo: sectionWriter{sec}})
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := ggml.WriteGGUF(out, kv, ts); err != nil {
		t.Fatal(err)
	}
}

type sectionWriter struct{ r *io.SectionReader }

func (w sectionWriter) WriteTo(out io.Writer) (int64, error) {
	return io.Copy(out, io.NewSectionReader(w.r, 0, w.r.Size()))
}

// TestNoLlamaServer: on a machine whose PATH has no llama-server, away from this repository, a
// llamacpp --checkpoint fails with one line that says how to get one, exit 2, and nothing is
// installed or started: vtune never runs the repository's scripts.
func TestNoLlamaServer(t *testing.T) {
	key := filepath.Join(fixturesDir(), "tiny-llama", "key.json")
	gguf := servertest.Model("tiny-llama.gguf")
	sidTmp := filepath.Join(servertest.Root(), ".tools/sid/tmp")
	t.Setenv("PATH", t.TempDir())
	t.Setenv("VTUNE_LLAMA_SERVER", "")
	t.Chdir(t.TempDir())
	before, _ := os.ReadDir(sidTmp)
	code, stdout, stderr := vtune(t, nil, "verify", "-q", "-k", key, "--backend", "llamacpp", "--checkpoint", gguf)
	if code != exitUsage || stdout != "" || strings.Count(stderr, "\n") != 1 ||
		!strings.Contains(stderr, "no llama-server found") || !strings.Contains(stderr, "--llama-server") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and one line on stderr", code, stdout, stderr, exitUsage)
	}
	if after, _ := os.ReadDir(sidTmp); len(after) != len(before) {
		t.Errorf("%s changed from %d to %d entries", sidTmp, len(before), len(after))
	}

	// A named command that does not exist is reported by name.
	code, _, stderr = vtune(t, nil, "verify", "-q", "-k", key, "--backend", "llamacpp", "--checkpoint", gguf, "--llama-server", "/nonexistent/llama-server")
	if code != exitUsage || !strings.Contains(stderr, "--llama-server /nonexistent/llama-server") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
