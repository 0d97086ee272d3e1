package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend/servertest"
)

// These tests need no server: they check what Open decides from the files alone.

func TestInspectBundledModels(t *testing.T) {
	gguf := servertest.Model("tiny-llama.gguf")
	if _, err := os.Stat(gguf); err != nil {
		t.Skip("bundled tiny model not built yet")
	}
	f, err := inspect(gguf)
	if err != nil {
		t.Fatal(err)
	}
	if f.format != FormatGGUF || f.arch != "llama" || len(f.files) != 1 || len(f.files[0].SHA256) != 64 || f.files[0].Size == 0 {
		t.Fatalf("gguf: %+v", f)
	}
	// The signature pieces of a byte-level BPE vocabulary are found with their space spelled Ġ.
	if err := checkTokenizer(f, Expect{Vocab: 2048, Pieces: []string{" the", "the"}}); err != nil {
		t.Fatal(err)
	}
	err = checkTokenizer(f, Expect{Pieces: []string{" the", "no-such-token-here"}})
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `1 of the 2 signature tokens`) {
		t.Fatalf("missing piece: %v", err)
	}
	if err := checkTokenizer(f, Expect{Vocab: 32000}); err == nil || !strings.Contains(err.Error(), "vocabulary of 2048 tokens, the key's base has 32000") {
		t.Fatalf("vocab size: %v", err)
	}
	// ChatML: both end markers, the GGUF's EOS first among them.
	if got := stops("<|im_start|>{{ .Content }}<|im_end|>", f); strings.Join(got, ",") != "<|im_end|>,<|endoftext|>" {
		t.Fatalf("stops %q", got)
	}

	hf, err := inspect(servertest.Model("tiny-llama-hf"))
	if err != nil {
		t.Fatal(err)
	}
	if hf.format != FormatHF || hf.gguf != "" {
		t.Fatalf("hf: %+v", hf)
	}
}

func TestInspectBadFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(servertest.Root(), "testdata/checkpoints")
	lone := filepath.Join(dir, "model.safetensors")
	os.WriteFile(lone, []byte("x"), 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"):           "not found",
		filepath.Join(bad, "garbage.gguf"):      "not a GGUF file",
		filepath.Join(bad, "missing-tokenizer"): "lacks tokenizer.json",
		filepath.Join(bad, "not-a-model"):       "neither a Hugging Face model folder",
		filepath.Join(bad, "unsupported-arch"):  `unsupported architecture "FooBarForCausalLM"`,
		lone:                                    "a lone safetensors file",
	} {
		_, err := inspect(path)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a checkpoint error with %q", path, err, want)
		}
	}
}

func TestPlacement(t *testing.T) {
	for _, c := range []struct {
		size, vram int64
		want       string
	}{{100, 0, "CPU"}, {100, 100, "GPU"}, {100, 38, "38% GPU, 62% CPU"}} {
		if got := placement(c.size, c.vram); got != c.want {
			t.Errorf("placement(%d, %d) = %q, want %q", c.size, c.vram, got, c.want)
		}
	}
	log := "load_tensors: offloaded 20/33 layers to GPU\nload_tensors:        CUDA0 model buffer size =  3000.00 MiB\nload_tensors:   CPU_Mapped model buffer size =   400.00 MiB\n"
	p, o := llamaPlacement(log)
	if p != "GPU and CPU" || !strings.Contains(o, "offloaded 20/33 layers to GPU") || !strings.Contains(o, "CUDA0 3000.00 MiB") {
		t.Fatalf("llamaPlacement: %q %q", p, o)
	}
	if p, _ := llamaPlacement("load_tensors:   CPU_Mapped model buffer size =     4.25 MiB\n"); p != "CPU" {
		t.Fatalf("CPU only: %q", p)
	}
}
