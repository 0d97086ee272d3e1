package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// QuantTypes are the GGUF quantizations Options.Quantize accepts: llama.cpp's whole-model types
// that need no importance matrix. Ollama's own quantizer, used when no llama-quantize is found,
// makes only OllamaQuantTypes.
var (
	QuantTypes = []string{"F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0",
		"Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"}
	OllamaQuantTypes = []string{"F32", "F16", "Q8_0", "Q4_K_M", "Q4_K_S"}
)

// ErrNoLlamaQuantize is returned when a quantization needs llama.cpp's llama-quantize and neither
// Options.LlamaQuantize nor PATH has one.
var ErrNoLlamaQuantize = errors.New("no llama-quantize on PATH: install llama.cpp (it ships llama-quantize) or name the binary in checkpoint.Options.LlamaQuantize")

// CheckQuant returns the canonical (upper-case) name of quantization type t, or an error naming
// the known ones.
func CheckQuant(t string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(t))
	if !slices.Contains(QuantTypes, u) {
		return "", fmt.Errorf("unknown quantization type %q: want one of %s", t, strings.Join(QuantTypes, ", "))
	}
	return u, nil
}

// quantize makes the Options.Quantize version of ck's GGUF in opt.TempDir with llama-quantize,
// removed on Close, and records it in the provenance. Without a llama-quantize, an Ollama load of
// a type Ollama makes itself is left to the server (ollamaQuant returns the type then).
func quantize(ctx context.Context, m *Model, opt Options, ck *files) (ollamaQuant string, err error) {
	if ck.adapter() {
		return "", bad(opt.Path, "is an adapter: checkpoint.Options.Quantize applies to whole models")
	}
	q, err := CheckQuant(opt.Quantize)
	if err != nil {
		return "", err
	}
	bin := opt.LlamaQuantize
	if bin == "" {
		bin = "llama-quantize"
	}
	path, err := exec.LookPath(bin)
	switch {
	case err != nil && opt.LlamaQuantize == "" && opt.Backend == "ollama" && slices.Contains(OllamaQuantTypes, q):
		return q, nil
	case err != nil && opt.LlamaQuantize == "":
		return "", ErrNoLlamaQuantize
	case err != nil:
		return "", fmt.Errorf("checkpoint.Options.LlamaQuantize %s: %w", opt.LlamaQuantize, err)
	}
	out, err := os.CreateTemp(opt.TempDir, "vtune-quant-*.gguf")
	if err != nil {
		return "", err
	}
	out.Close()
	m.onClose(func(context.Context) error { return os.Remove(out.Name()) })
	note(opt.Log, "quantizing %s to %s", opt.Path, q)
	cmd := exec.CommandContext(ctx, path, ck.gguf, out.Name(), q)
	if msg, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", bad(opt.Path, "llama-quantize %s failed: %v: %s", q, err, lastLines(string(msg), 2))
	}
	if ck.converted != nil { // the GGUF converted from a folder, quantized here
		m.Provenance.Files = append(m.Provenance.Files, *ck.converted)
	}
	if err := ck.setConverted(out.Name(), "quantized"); err != nil {
		return "", err
	}
	ck.converted.Format = "gguf " + q
	return "", nil
}
