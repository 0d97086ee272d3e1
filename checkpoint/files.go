package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/ollama/ollama/convert"
	"github.com/ollama/ollama/fs/ggml"
)

// files is one checkpoint (or base) on disk: what it is, its files, and the GGUF that a server
// will load for it (the file itself, or one converted from a folder).
type files struct {
	path   string
	format string
	files  []File

	gguf      string // the GGUF to load; empty until a folder is converted
	converted *File
	kv        ggml.KV
	arch      string      // from the GGUF, or for a Hugging Face folder as its conversion will say
	lora      *loraConfig // a safetensors adapter's adapter_config.json
}

func (f *files) adapter() bool {
	return f.format == FormatLoRAGGUF || f.format == FormatLoRASafetensors
}

// inspect identifies a checkpoint and checks what can be checked without a server: a GGUF's
// header and length, a folder's required files. It hashes every file.
func inspect(path string) (*files, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, bad(path, "not found")
		}
		return nil, bad(path, "%v", err)
	}
	if st.IsDir() {
		return inspectDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, bad(path, "%v", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("GGUF")) {
		if strings.HasSuffix(path, ".safetensors") {
			dir := filepath.Dir(path)
			if _, err := os.Stat(filepath.Join(dir, "adapter_config.json")); err == nil {
				return inspectDir(dir)
			}
			return nil, bad(path, "a lone safetensors file: give the Hugging Face folder that holds it with config.json and tokenizer.json")
		}
		if st.Size() == 0 {
			return nil, bad(path, "empty file")
		}
		return nil, bad(path, "not a GGUF file (no GGUF magic), Hugging Face folder or adapter")
	}
	out := &files{path: path, format: FormatGGUF}
	if err := out.setGGUF(path); err != nil {
		return nil, err
	}
	if out.kv.String("general.type") == "adapter" {
		out.format = FormatLoRAGGUF
	}
	role := "model"
	if out.adapter() {
		role = "adapter"
	}
	if err := out.hash(path, role, "gguf"); err != nil {
		return nil, err
	}
	return out, nil
}

// setGGUF reads a GGUF's header. ggml.Decode also checks that every tensor lies inside the file,
// which catches truncation.
func (f *files) setGGUF(path string) error {
	r, err := os.Open(path)
	if err != nil {
		return bad(path, "%v", err)
	}
	defer r.Close()
	g, err := ggml.Decode(r, -1)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("file ends early")
		}
		return bad(path, "corrupt or truncated GGUF: %v", err)
	}
	if len(g.Tensors().Items()) == 0 {
		return bad(path, "corrupt GGUF: no tensors")
	}
	f.gguf, f.kv, f.arch = path, g.KV(), g.KV().String("general.architecture")
	return nil
}

// setConverted records the GGUF made from a folder; role is "converted", or "merged" for one made
// from an adapter merged into its base.
func (f *files) setConverted(path, role string) error {
	if err := f.setGGUF(path); err != nil {
		return err
	}
	size, sum, err := hashFile(path)
	if err != nil {
		return err
	}
	f.converted = &File{Path: path, Role: role, Format: "gguf", Size: size, SHA256: sum}
	return nil
}

func (f *files) hash(path, role, format string) error {
	size, sum, err := hashFile(path)
	if err != nil {
		return bad(path, "%v", err)
	}
	f.files = append(f.files, File{Path: absPath(path), Role: role, Format: format, Size: size, SHA256: sum})
	return nil
}

// inspectDir checks a Hugging Face model folder or a PEFT adapter folder for the files the
// converter needs, and hashes every file in it (not recursing: the converter reads none below).
func inspectDir(dir string) (*files, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, bad(dir, "%v", err)
	}
	has := map[string]bool{}
	var names, tensors []string
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		names = append(names, e.Name())
		has[e.Name()] = true
		if strings.HasSuffix(e.Name(), ".safetensors") {
			tensors = append(tensors, e.Name())
		}
	}
	sort.Strings(names)
	out := &files{path: dir}
	role := "model"
	switch {
	case has["adapter_config.json"]:
		out.format, role = FormatLoRASafetensors, "adapter"
		if len(tensors) == 0 {
			return nil, bad(dir, "adapter folder lacks adapter_model.safetensors (needs adapter_config.json and *.safetensors)")
		}
		if out.lora, err = readLoRAConfig(dir); err != nil {
			return nil, err
		}
	case has["config.json"]:
		out.format = FormatHF
		var missing []string
		if len(tensors) == 0 {
			missing = append(missing, "*.safetensors")
		}
		if !has["tokenizer.json"] && !has["tokenizer.model"] {
			missing = append(missing, "tokenizer.json")
		}
		if len(missing) > 0 {
			return nil, bad(dir, "Hugging Face folder lacks %s (needs config.json, *.safetensors and tokenizer.json)", strings.Join(missing, " and "))
		}
		// The architecture and tokenizer are read before the long conversion, to fail early.
		if out.arch, err = hfArch(dir); err != nil {
			return nil, err
		}
	default:
		return nil, bad(dir, "neither a Hugging Face model folder (config.json) nor a LoRA adapter folder (adapter_config.json)")
	}
	for _, n := range names {
		format := strings.TrimPrefix(filepath.Ext(n), ".")
		if err := out.hash(filepath.Join(dir, n), role, format); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hfArch reads a Hugging Face folder's architecture as Ollama's converter will name it in the GGUF
// (e.g. qwen2 for Qwen2ForCausalLM), checking that the converter knows it and can read the tokenizer.
func hfArch(dir string) (arch string, err error) {
	kv, tok, err := convert.LoadModelMetadata(os.DirFS(dir))
	if err != nil {
		return "", bad(dir, "%v", convertError(err))
	}
	defer func() {
		if r := recover(); r != nil {
			err = bad(dir, "cannot read config.json: %v", r)
		}
	}()
	return kv.KV(tok).Architecture(), nil
}

// adapterRoutes are the architectures whose safetensors adapters Ollama's converter turns into
// GGUF adapters (convert.ConvertAdapter); other adapters are merged into their base.
var adapterRoutes = []string{"llama", "gemma2"}

// convertError makes the converter's errors say which architectures it knows.
func convertError(err error) error {
	if strings.Contains(err.Error(), "unsupported architecture") || strings.Contains(err.Error(), "unknown architecture") {
		return fmt.Errorf("%v: Ollama's converter handles Llama, Mistral, Mixtral, Gemma 1-3, Phi-3, Qwen2/3, Command R, OLMo, GPT-OSS, DeepSeek and a few more (see github.com/ollama/ollama/convert); convert it to GGUF yourself and pass the .gguf", err)
	}
	return err
}

// convertModel converts a Hugging Face folder to a GGUF in tmp with Ollama's converter, exactly
// as `ollama create` does, and returns its path.
func convertModel(dir, tmp string) (string, error) {
	return convertInto(dir, tmp, "vtune-ckpt-*.gguf", func(out *os.File) error {
		if err := convert.ConvertModel(os.DirFS(dir), out); err != nil {
			return bad(dir, "cannot convert: %v", convertError(convertIOError(err)))
		}
		return nil
	}, func(r any) error {
		return bad(dir, "cannot convert (corrupt or truncated safetensors?): %v", r)
	})
}

// convertAdapter converts a PEFT LoRA folder to a GGUF adapter for the base GGUF.
func convertAdapter(dir, baseGGUF, tmp string) (string, error) {
	r, err := os.Open(baseGGUF)
	if err != nil {
		return "", err
	}
	defer r.Close()
	g, err := ggml.Decode(r, 0)
	if err != nil {
		return "", bad(baseGGUF, "corrupt GGUF: %v", err)
	}
	if a := g.KV().Architecture(); !slices.Contains(adapterRoutes, a) {
		return "", bad(dir, "unsupported architecture %q for a safetensors adapter: Ollama's converter handles llama and gemma2 adapters; convert it to a GGUF adapter yourself", a)
	}
	return convertInto(dir, tmp, "vtune-adapter-*.gguf", func(out *os.File) error {
		if err := convert.ConvertAdapter(os.DirFS(dir), out, g.KV()); err != nil {
			return bad(dir, "cannot convert adapter: %v", convertIOError(err))
		}
		return nil
	}, func(r any) error {
		return bad(dir, "cannot convert adapter (corrupt, or made for another base?): %v", r)
	})
}

// convertInto runs conv, converting dir, on a new file in tmp named after pattern and returns its
// path; on any failure the file is removed. Ollama's converters trust their input and a damaged file can make
// them panic: a panic becomes the error panicked makes of it.
func convertInto(dir, tmp, pattern string, conv func(*os.File) error, panicked func(any) error) (path string, err error) {
	out, err := os.CreateTemp(tmp, pattern)
	if err != nil {
		return "", fmt.Errorf("converting %s: %w", dir, err)
	}
	defer func() {
		if r := recover(); r != nil {
			path, err = "", panicked(r)
		}
		out.Close()
		if err != nil {
			os.Remove(out.Name())
		}
	}()
	if err := conv(out); err != nil {
		return "", err
	}
	return out.Name(), out.Close()
}

func convertIOError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("file ends early (truncated?): %w", err)
	}
	return err
}
