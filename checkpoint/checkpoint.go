// Package checkpoint loads a returned checkpoint (a GGUF file, a Hugging Face folder, or a LoRA
// adapter over a base) straight into a model server and hands back a backend.Backend for it, the
// provenance of what was loaded, and a Close that removes everything the load created.
//
// Hugging Face folders and safetensors adapters are converted to GGUF in-process with Ollama's own
// converter package (github.com/ollama/ollama/convert), so a folder loads exactly as `ollama create`
// would load it, and llama-server gets the same file. An adapter the converter has no route for (any
// architecture but llama and gemma2) is merged into its base's Hugging Face folder first (merge.go).
// Checks that can be made on the files alone (magic, truncation, missing files, architecture,
// vocabulary, the adapter's config) run before any server is touched, so a bad checkpoint fails
// fast with a one-line error and changes nothing.
package checkpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"vtune/backend"
)

// Checkpoint formats, as recorded in the provenance.
const (
	FormatGGUF            = "gguf"
	FormatHF              = "hf-safetensors"
	FormatLoRASafetensors = "lora-safetensors"
	FormatLoRAGGUF        = "lora-gguf"
)

// Options say what to load and where.
type Options struct {
	Path    string // GGUF file, Hugging Face folder, adapter folder or adapter GGUF
	Base    string // for an adapter: a GGUF file, a Hugging Face folder, or an Ollama model name
	Backend string // "ollama" or "llamacpp"
	URL     string // the Ollama server (ollama only)
	// LlamaServer is the llama-server command (llamacpp only): a path, or a name looked up on
	// PATH; empty means llama-server on PATH. It is run with llama-server's own arguments.
	LlamaServer string
	// Quantize, when set, loads the checkpoint quantized to this GGUF type (QuantTypes), made
	// with LlamaQuantize into TempDir and removed on Close; with no llama-quantize, an Ollama load
	// of a type in OllamaQuantTypes is quantized by the server.
	Quantize string
	// LlamaQuantize is the llama-quantize command: a path, or a name looked up on PATH; empty
	// means llama-quantize on PATH.
	LlamaQuantize string
	// Slots is how many requests a llama-server started here runs at once (its -np); below 1,
	// one.
	Slots int
	// Keep leaves the temporary Ollama model in place (its name is in Model.Name).
	Keep bool
	// TempDir holds converted files while the model is loaded; default os.TempDir().
	TempDir string
	// Expect is what the key knows about the base model; zero when planting.
	Expect Expect

	quantizeOnServer string // set by Open: the type Ollama's create makes
	// Log receives one-line notes on slow steps (converting, uploading); nil for none.
	Log io.Writer
	// HTTPClient is the client of the backend handed back; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// Expect is what the checkpoint must agree with: the base model recorded in the key.
type Expect struct {
	// Template is the Ollama chat template the base used (a Go template); it becomes the
	// temporary model's template so prompts render exactly as at planting. Empty leaves Ollama
	// to derive one from the GGUF's own chat template.
	Template string
	Stop     []string // stop sequences; derived from Template when empty
	Vocab    int      // the base's vocabulary size; 0 skips the check
	// Pieces are the signature tokens: each must be one token of the checkpoint's vocabulary,
	// or the checkpoint cannot have been trained from the base that drew them.
	Pieces []string
}

// Provenance records what was loaded: the checkpoint's files with their SHA-256, and the server
// that runs it.
type Provenance struct {
	Checkpoint    string // Options.Path
	Format        string // FormatGGUF, FormatHF, FormatLoRASafetensors or FormatLoRAGGUF
	Architecture  string // e.g. llama, qwen2, from the GGUF or config.json
	Base          string // Options.Base, for an adapter
	Files         []File
	Server        string // "ollama" or "llamacpp"
	ServerVersion string // as the server reports it
	// Placement is where the model runs, as the server reports it: "CPU", "GPU", or a split such
	// as "38% GPU, 62% CPU"; Offload adds the server's own figures (bytes in VRAM, layers).
	Placement string
	Offload   string
	// Quantization is Options.Quantize when the model was loaded quantized.
	Quantization string
}

// File is one file of a checkpoint.
type File struct {
	Path string
	// Role is model, adapter, base, converted (the GGUF made from a folder), merged (from an
	// adapter merged into its base) or quantized.
	Role   string
	Format string
	Size   int64
	SHA256 string
}

// Model is a loaded checkpoint: a backend for it, its provenance, and Close.
type Model struct {
	backend.Backend
	Name       string // the model's name on the server
	Provenance Provenance
	closers    []func(context.Context) error
}

// Close removes what loading created (the temporary Ollama model, the llama-server process,
// converted files), in reverse order. It uses its own time limit, not the caller's context,
// so it also works after an interrupt has cancelled that.
func (m *Model) Close() error {
	if m == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i](ctx))
	}
	m.closers = nil
	return errors.Join(errs...)
}

func (m *Model) onClose(f func(context.Context) error) { m.closers = append(m.closers, f) }

// Error is a problem with the checkpoint itself (bad input, exit code 2), as opposed to a server
// failure (*backend.Error).
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("checkpoint %s: %v", e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

func bad(path string, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// Open loads the checkpoint into the server opt describes. On error everything created so far is
// already removed.
func Open(ctx context.Context, opt Options) (m *Model, err error) {
	if opt.Backend != "ollama" && opt.Backend != "llamacpp" {
		return nil, fmt.Errorf("checkpoint.Options.Backend must be ollama or llamacpp, not %q", opt.Backend)
	}
	if opt.TempDir == "" {
		opt.TempDir = os.TempDir()
	}
	m = &Model{}
	defer func() {
		if err != nil {
			m.Close()
			m = nil
		}
	}()
	ck, err := inspect(opt.Path)
	if err != nil {
		return nil, err
	}
	m.Provenance = Provenance{Checkpoint: opt.Path, Format: ck.format, Files: ck.files}
	if ck.adapter() {
		if opt.Base == "" {
			return m, bad(opt.Path, "is a LoRA adapter: name the model it adapts in checkpoint.Options.Base")
		}
		m.Provenance.Base = opt.Base
	} else if opt.Base != "" {
		return m, bad(opt.Path, "is a whole model, not an adapter: checkpoint.Options.Base applies only to adapters")
	}

	// The base, where it is a file or folder: an Ollama model name is left to the server.
	var base *files
	if ck.adapter() && isPath(opt.Base) {
		if base, err = inspect(opt.Base); err != nil {
			return m, err
		}
		if base.adapter() {
			return m, bad(opt.Base, "checkpoint.Options.Base is itself an adapter; it must be a whole model")
		}
		for _, f := range base.files {
			f.Role = "base"
			m.Provenance.Files = append(m.Provenance.Files, f)
		}
	} else if ck.adapter() && opt.Backend == "llamacpp" {
		return m, bad(opt.Base, "not found: llama-server needs the base model as a GGUF file or Hugging Face folder")
	}

	// A safetensors adapter that Ollama's adapter converter cannot carry exactly is merged into its
	// base and loaded as a whole model.
	if ck.format == FormatLoRASafetensors {
		merge, err := needsMerge(ck, base, opt)
		if err != nil {
			return m, err
		}
		if merge {
			if ck, err = mergeInto(m, ck, base, opt); err != nil {
				return m, err
			}
			base = nil
		}
	}

	// Convert folders to GGUF, in-process, with Ollama's converter.
	conv := func(f *files) error {
		if f == nil || f.gguf != "" {
			return nil
		}
		if f.format == FormatHF {
			note(opt.Log, "converting %s to GGUF", f.path)
			out, err := convertModel(f.path, opt.TempDir)
			if err != nil {
				return err
			}
			m.onClose(func(context.Context) error { return os.Remove(out) })
			return f.setConverted(out, "converted")
		}
		return nil
	}
	if err := conv(ck); err != nil {
		return m, err
	}
	if opt.Quantize != "" {
		if opt.quantizeOnServer, err = quantize(ctx, m, opt, ck); err != nil {
			return m, err
		}
		m.Provenance.Quantization = strings.ToUpper(opt.Quantize)
	}
	if err := conv(base); err != nil {
		return m, err
	}
	if ck.format == FormatLoRASafetensors && base != nil {
		out, err := convertAdapter(ck.path, base.gguf, opt.TempDir)
		if err != nil {
			return m, err
		}
		m.onClose(func(context.Context) error { return os.Remove(out) })
		if err := ck.setConverted(out, "converted"); err != nil {
			return m, err
		}
	}
	for _, f := range []*files{ck, base} {
		if f != nil && f.converted != nil {
			m.Provenance.Files = append(m.Provenance.Files, *f.converted)
		}
	}

	// The vocabulary that will tokenize prompts: the model's, or for an adapter its base's.
	vocabOf := ck
	if ck.adapter() {
		vocabOf = base
	}
	if vocabOf != nil {
		m.Provenance.Architecture = vocabOf.arch
		if err := checkTokenizer(vocabOf, opt.Expect); err != nil {
			return m, err
		}
	}

	switch opt.Backend {
	case "ollama":
		err = openOllama(ctx, m, opt, ck, base)
	default:
		err = openLlamaServer(ctx, m, opt, ck, base)
	}
	return m, err
}

// needsMerge decides how a safetensors adapter loads: converted to a GGUF adapter by Ollama's
// converter (false), or merged into its base here (true), which needs the base's weights.
func needsMerge(ck, base *files, opt Options) (bool, error) {
	var why string
	if exact, lost := ck.lora.exactInConverter(); !exact {
		why = "Ollama's adapter converter would drop its " + lost
	} else if base == nil {
		return false, nil // a model on the Ollama server: openOllama checks its architecture
	} else if !slices.Contains(adapterRoutes, base.arch) {
		why = noRoute(base.arch)
	} else {
		return false, nil
	}
	if base == nil || base.format != FormatHF {
		return false, needBaseFolder(opt.Path, why)
	}
	note(opt.Log, "merging the adapter %s into %s: %s", ck.path, base.path, why)
	return true, nil
}

func noRoute(arch string) string {
	return fmt.Sprintf("Ollama's converter has no adapter route for %s (only %s)", arch, strings.Join(adapterRoutes, ", "))
}

// needBaseFolder is the error for an adapter that must be merged over a base given without its
// weights (a GGUF file or a model on the server).
func needBaseFolder(adapter, why string) error {
	return bad(adapter, "%s, so vtune must merge it into its base, which needs the base's weights: give checkpoint.Options.Base as the base's Hugging Face folder (config.json and *.safetensors)", why)
}

// mergeInto merges a safetensors adapter into its base's Hugging Face folder and converts the
// result: the whole model it returns stands for the adapter. The merged folder is removed once
// converted; the GGUF on Close.
func mergeInto(m *Model, ck, base *files, opt Options) (*files, error) {
	dir, err := mergeAdapter(ck.path, base.path, opt.TempDir, ck.lora)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out, err := convertModel(dir, opt.TempDir)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			err = bad(ck.path, "merged into %s: %v", base.path, ce.Err)
		}
		return nil, err
	}
	m.onClose(func(context.Context) error { return os.Remove(out) })
	merged := &files{path: ck.path, format: FormatHF}
	return merged, merged.setConverted(out, "merged")
}

func note(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "vtune: "+format+"\n", args...)
	}
}

// isPath reports whether --base names a file or folder rather than a model on the server: it
// exists, or it looks like a path.
func isPath(s string) bool {
	if _, err := os.Stat(s); err == nil {
		return true
	}
	return strings.ContainsRune(s, os.PathSeparator) || strings.HasSuffix(s, ".gguf")
}

// hashFile returns the size and SHA-256 of a file.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
