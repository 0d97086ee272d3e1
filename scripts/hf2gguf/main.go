// Command hf2gguf converts a Hugging Face model folder (config.json, model.safetensors,
// tokenizer.json, tokenizer_config.json) into a GGUF file with Ollama's own converter
// (github.com/ollama/ollama/convert), so the result loads in Ollama exactly as `ollama create`
// from that folder would.
//
// Usage: go run ./scripts/hf2gguf [-f16] HFDIR OUT.gguf
//
// Ollama's converter stores every matrix as F16. By default hf2gguf then widens those tensors to
// F32 (general.file_type 0): the values are the same F16-rounded numbers, but F32 kernels give
// log-probabilities that agree across CPU implementations to about 1e-6 (F16 ones only to 1e-3).
// The training scripts save weights already rounded to F16, so the F32 GGUF holds exactly the
// weights of the Hugging Face folder. -f16 keeps the converter's output as it is.
//
// The output is written atomically (temporary file in the same folder, then rename).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/convert"
	"github.com/ollama/ollama/fs/ggml"
)

func main() {
	f16 := flag.Bool("f16", false, "keep the converter's F16 matrices instead of widening them to F32")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: hf2gguf [-f16] HFDIR OUT.gguf")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *f16); err != nil {
		fmt.Fprintln(os.Stderr, "hf2gguf:", err)
		os.Exit(1)
	}
}

func run(dir, out string, keepF16 bool) error {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return fmt.Errorf("%s is not a Hugging Face model folder: %w", dir, err)
	}
	odir := filepath.Dir(out)
	conv, err := os.CreateTemp(odir, ".hf2gguf-*.gguf")
	if err != nil {
		return err
	}
	defer os.Remove(conv.Name())
	defer conv.Close()
	if err := convert.ConvertModel(os.DirFS(dir), conv); err != nil {
		return fmt.Errorf("convert %s: %w", dir, err)
	}
	final := conv
	if !keepF16 {
		wide, err := os.CreateTemp(odir, ".hf2gguf-*.gguf")
		if err != nil {
			return err
		}
		defer os.Remove(wide.Name())
		defer wide.Close()
		if err := widen(conv, wide); err != nil {
			return fmt.Errorf("widen to F32: %w", err)
		}
		final = wide
	}
	if err := final.Sync(); err != nil {
		return err
	}
	if err := final.Chmod(0o644); err != nil {
		return err
	}
	if err := final.Close(); err != nil {
		return err
	}
	return os.Rename(final.Name(), out)
}

const (
	kindF32 = 0
	kindF16 = 1
)

// widen rewrites the GGUF in src into dst with every F16 tensor stored as F32.
func widen(src, dst *os.File) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	g, err := ggml.Decode(src, -1)
	if err != nil {
		return err
	}
	st, err := src.Stat()
	if err != nil {
		return err
	}
	// The tensor data section runs to the end of the file; find its start from the last tensor.
	var end uint64
	items := g.Tensors().Items()
	for _, t := range items {
		end = max(end, t.Offset+t.Size())
	}
	dataStart := st.Size() - int64(end)
	align := int64(g.KV().Uint("general.alignment", 32))
	if dataStart <= 0 || dataStart%align != 0 {
		return fmt.Errorf("cannot locate the tensor data (start %d)", dataStart)
	}

	kv := g.KV()
	kv["general.file_type"] = uint32(0) // ALL_F32
	var ts []*ggml.Tensor
	for _, t := range items {
		sec := io.NewSectionReader(src, dataStart+int64(t.Offset), int64(t.Size()))
		switch t.Kind {
		case kindF16:
			ts = append(ts, &ggml.Tensor{Name: t.Name, Kind: kindF32, Shape: t.Shape, WriterTo: f16to32{sec}})
		default:
			ts = append(ts, &ggml.Tensor{Name: t.Name, Kind: t.Kind, Shape: t.Shape, WriterTo: rawWriter{sec}})
		}
	}
	return ggml.WriteGGUF(dst, kv, ts)
}

type rawWriter struct{ r *io.SectionReader }

func (w rawWriter) WriteTo(out io.Writer) (int64, error) {
	if _, err := w.r.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(out, w.r)
}

type f16to32 struct{ r *io.SectionReader }

func (w f16to32) WriteTo(out io.Writer) (int64, error) {
	in := make([]byte, w.r.Size())
	if _, err := w.r.ReadAt(in, 0); err != nil {
		return 0, err
	}
	buf := make([]byte, 2*len(in))
	for i := 0; i+1 < len(in); i += 2 {
		h := binary.LittleEndian.Uint16(in[i:])
		binary.LittleEndian.PutUint32(buf[2*i:], math.Float32bits(halfToFloat(h)))
	}
	n, err := out.Write(buf)
	return int64(n), err
}

// halfToFloat converts an IEEE 754 binary16 value to float32 exactly.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0: // signed zero
		return math.Float32frombits(sign)
	default: // subnormal: value = man * 2^-24
		f := float32(man) * float32(1.0/16777216.0)
		if sign != 0 {
			f = -f
		}
		return f
	}
}
