package main

import (
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/fs/ggml"
)

func TestHalfToFloat(t *testing.T) {
	cases := map[uint16]float32{
		0x0000: 0,
		0x3c00: 1,
		0xc000: -2,
		0x3555: 0.333251953125,
		0x7bff: 65504,
		0x0001: 5.960464477539063e-08, // smallest subnormal
		0x8001: -5.960464477539063e-08,
		0x03ff: 6.097555160522461e-05, // largest subnormal
		0x0400: 6.103515625e-05,       // smallest normal
	}
	for h, want := range cases {
		if got := halfToFloat(h); got != want {
			t.Errorf("halfToFloat(%#04x) = %g, want %g", h, got, want)
		}
	}
	if !math.IsInf(float64(halfToFloat(0x7c00)), 1) || !math.IsInf(float64(halfToFloat(0xfc00)), -1) {
		t.Error("infinities")
	}
	if !math.IsNaN(float64(halfToFloat(0x7e00))) {
		t.Error("NaN")
	}
}

type tensorData struct {
	kind  uint32
	shape []uint64
	data  []byte
}

func readGGUF(t *testing.T, path string) (ggml.KV, map[string]tensorData) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := ggml.Decode(f, -1)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	var end uint64
	for _, tn := range g.Tensors().Items() {
		end = max(end, tn.Offset+tn.Size())
	}
	start := st.Size() - int64(end)
	out := map[string]tensorData{}
	for _, tn := range g.Tensors().Items() {
		b := make([]byte, tn.Size())
		if _, err := f.ReadAt(b, start+int64(tn.Offset)); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		out[tn.Name] = tensorData{tn.Kind, tn.Shape, b}
	}
	return g.KV(), out
}

// The widened GGUF holds the converter's F16 values exactly, as F32, with the same metadata.
func TestConvertWidensExactly(t *testing.T) {
	hf := filepath.Join("..", "..", "testdata", "models", "tiny-llama-hf")
	if _, err := os.Stat(filepath.Join(hf, "model.safetensors")); err != nil {
		t.Skip("no tiny-llama-hf model:", err)
	}
	dir := t.TempDir()
	f32, f16 := filepath.Join(dir, "m32.gguf"), filepath.Join(dir, "m16.gguf")
	if err := run(hf, f32, false); err != nil {
		t.Fatal(err)
	}
	if err := run(hf, f16, true); err != nil {
		t.Fatal(err)
	}
	kv32, ts32 := readGGUF(t, f32)
	kv16, ts16 := readGGUF(t, f16)
	if got := kv32.Uint("general.file_type"); got != 0 {
		t.Errorf("file_type %d, want 0", got)
	}
	if kv32.String("tokenizer.ggml.pre") != "qwen2" || kv32.Architecture() != "llama" {
		t.Errorf("pre %q arch %q", kv32.String("tokenizer.ggml.pre"), kv32.Architecture())
	}
	if kv32.Len() != kv16.Len() || len(ts32) != len(ts16) {
		t.Fatalf("kv %d/%d tensors %d/%d", kv32.Len(), kv16.Len(), len(ts32), len(ts16))
	}
	widened := 0
	for name, a := range ts32 {
		b := ts16[name]
		if a.kind != kindF32 {
			t.Errorf("%s: kind %d", name, a.kind)
		}
		if b.kind == kindF16 {
			widened++
			for i := 0; i < len(b.data)/2; i++ {
				h := binary.LittleEndian.Uint16(b.data[2*i:])
				if got := math.Float32frombits(binary.LittleEndian.Uint32(a.data[4*i:])); got != halfToFloat(h) {
					t.Fatalf("%s[%d] = %g, want %g", name, i, got, halfToFloat(h))
				}
			}
		} else if string(a.data) != string(b.data) {
			t.Errorf("%s: F32 tensor changed", name)
		}
	}
	if widened == 0 {
		t.Error("no F16 tensor in the converter's output")
	}
}

func TestNotAModel(t *testing.T) {
	if err := run(t.TempDir(), filepath.Join(t.TempDir(), "x.gguf"), false); err == nil {
		t.Error("want an error for a folder without config.json")
	}
}
