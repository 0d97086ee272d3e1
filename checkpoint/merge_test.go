package checkpoint

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vtune/backend/servertest"
)

// These tests need no server: they check the merge's arithmetic and refusals on tensors made by
// hand, small enough that every expected value is exact in F16 and BF16.

// tensor is a test tensor: values as float32, written in dtype.
type tensor struct {
	dtype string
	shape []int
	data  []float32
}

// writeTensors writes a safetensors file holding ts.
func writeTensors(t *testing.T, path string, ts map[string]tensor) {
	t.Helper()
	var ws []stWrite
	for name, x := range ts {
		b := encodeFloats(x.dtype, x.data)
		ws = append(ws, stWrite{stTensor: stTensor{Name: name, DType: x.dtype, Shape: x.shape, size: int64(len(b))}, data: b})
	}
	if err := writeSafetensors(path, nil, ws); err != nil {
		t.Fatal(err)
	}
}

// readTensors reads every tensor of a safetensors file.
func readTensors(t *testing.T, path string) map[string]tensor {
	t.Helper()
	f, err := openSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]tensor{}
	for name, x := range f.tensors {
		v, err := f.floats(name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = tensor{x.DType, x.Shape, v}
	}
	return out
}

// seq is 1, 2, ..., n scaled by k.
func seq(n int, k float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i+1) * k
	}
	return v
}

// baseFolder writes a tiny "model": q_proj (3×4, F16), v_proj (2×4, BF16), a Conv1D-style c_attn
// stored in × out (4×3, F32), lm_head (5×3, F16) and a norm no adapter touches.
func baseFolder(t *testing.T) string {
	dir := t.TempDir()
	writeTensors(t, filepath.Join(dir, "model.safetensors"), map[string]tensor{
		"model.layers.0.self_attn.q_proj.weight": {"F16", []int{3, 4}, seq(12, 0.25)},
		"model.layers.0.self_attn.v_proj.weight": {"BF16", []int{2, 4}, seq(8, -0.5)},
		"transformer.h.0.attn.c_attn.weight":     {"F32", []int{4, 3}, seq(12, 1)},
		"lm_head.weight":                         {"F16", []int{5, 3}, seq(15, 1)},
		"model.norm.weight":                      {"F32", []int{3}, seq(3, 1)},
	})
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures":["TestForCausalLM"]}`), 0o644)
	return dir
}

// lora returns an adapter pair for a module with rank r, out × in: A = 0.5·(1..r·in), B = 1..out·r.
func lora(module string, r, out, in int) map[string]tensor {
	return map[string]tensor{
		peftPrefix + module + ".lora_A.weight": {"F32", []int{r, in}, seq(r*in, 0.5)},
		peftPrefix + module + ".lora_B.weight": {"F32", []int{out, r}, seq(out*r, 1)},
	}
}

func adapterFolder(t *testing.T, config string, ts ...map[string]tensor) string {
	dir := t.TempDir()
	all := map[string]tensor{}
	for _, m := range ts {
		for k, v := range m {
			all[k] = v
		}
	}
	writeTensors(t, filepath.Join(dir, "adapter_model.safetensors"), all)
	os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(config), 0o644)
	return dir
}

// merge merges an adapter into the base and returns the merged tensors.
func merge(t *testing.T, adapter, base string) (map[string]tensor, error) {
	t.Helper()
	c, err := readLoRAConfig(adapter)
	if err != nil {
		return nil, err
	}
	dir, err := mergeAdapter(adapter, base, t.TempDir(), c)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Errorf("config.json not linked into the merged folder: %v", err)
	}
	return readTensors(t, filepath.Join(dir, "model.safetensors")), nil
}

// wantMerged is W + s·B·A for w (out × in; in × out when transposed), computed one element at a
// time from the definition.
func wantMerged(w, a, b tensor, s float64, transposed bool) []float32 {
	r, out, in := a.shape[0], b.shape[0], a.shape[1]
	got := append([]float32(nil), w.data...)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			d := 0.0
			for k := 0; k < r; k++ {
				d += float64(b.data[o*r+k]) * float64(a.data[k*in+i])
			}
			j := o*in + i
			if transposed {
				j = i*out + o
			}
			got[j] += float32(s * d)
		}
	}
	return got
}

func sameValues(t *testing.T, what string, got, want tensor) {
	t.Helper()
	if got.dtype != want.dtype || len(got.data) != len(want.data) {
		t.Fatalf("%s: %s %v, want %s %v", what, got.dtype, got.shape, want.dtype, want.shape)
	}
	for i := range got.data {
		// Rounding the expected value to the dtype: F16 and BF16 keep 11 and 8 significant bits.
		w := want.data[i]
		if tol := float64(w) * math.Ldexp(1, -map[string]int{"F32": 23, "F16": 10, "BF16": 7}[want.dtype]); math.Abs(float64(got.data[i]-w)) > math.Abs(tol) {
			t.Fatalf("%s[%d] = %g, want %g", what, i, got.data[i], w)
		}
	}
}

func TestMergeLoRA(t *testing.T) {
	base := baseFolder(t)
	orig := readTensors(t, filepath.Join(base, "model.safetensors"))
	q, v := "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
	pairs := func(ts map[string]tensor, module string) (tensor, tensor) {
		return ts[peftPrefix+module+".lora_A.weight"], ts[peftPrefix+module+".lora_B.weight"]
	}
	check := func(name string, merged map[string]tensor, ad map[string]tensor, module string, s float64, transposed bool) {
		t.Helper()
		a, b := pairs(ad, module)
		w := orig[module+".weight"]
		sameValues(t, name+" "+module, merged[module+".weight"], tensor{w.dtype, w.shape, wantMerged(w, a, b, s, transposed)})
	}

	// Plain LoRA: s = alpha / r = 8 / 2 on q_proj (F16) and v_proj (BF16); the rest unchanged.
	lq, lv := lora(q, 2, 3, 4), lora(v, 2, 2, 4)
	got, err := merge(t, adapterFolder(t, `{"peft_type":"LORA","r":2,"lora_alpha":8,"target_modules":["q_proj","v_proj"]}`, lq, lv), base)
	if err != nil {
		t.Fatal(err)
	}
	check("plain", got, lq, q, 4, false)
	check("plain", got, lv, v, 4, false)
	// Element [0][0] by hand: W = 0.25, (B·A)[0][0] = 1·0.5 + 2·2.5 = 5.5, so 0.25 + 4·5.5 = 22.25.
	if x := got[q+".weight"].data[0]; x != 22.25 {
		t.Fatalf("q_proj[0][0] = %g, want 22.25", x)
	}
	for _, n := range []string{"lm_head.weight", "model.norm.weight", "transformer.h.0.attn.c_attn.weight"} {
		sameValues(t, "untouched "+n, got[n], orig[n])
	}

	// rsLoRA: s = alpha / √r = 8 / √4 = 4 (plain LoRA would use 2); rank_pattern and alpha_pattern
	// give v_proj r 2 and alpha 2, so s = 2 / √2 there.
	lq4 := lora(q, 4, 3, 4)
	got, err = merge(t, adapterFolder(t, `{"r":4,"lora_alpha":8,"use_rslora":true,"target_modules":"model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj","rank_pattern":{"v_proj":2},"alpha_pattern":{"layers.0.self_attn.v_proj":2}}`, lq4, lv), base)
	if err != nil {
		t.Fatal(err)
	}
	check("rslora", got, lq4, q, 4, false)
	check("rslora", got, lv, v, 2/math.Sqrt2, false)

	// fan_in_fan_out: the base stores W as in × out, so B·A is added transposed.
	lc := lora("transformer.h.0.attn.c_attn", 2, 3, 4)
	got, err = merge(t, adapterFolder(t, `{"r":2,"lora_alpha":2,"fan_in_fan_out":true,"target_modules":["c_attn"]}`, lc), base)
	if err != nil {
		t.Fatal(err)
	}
	check("fan_in_fan_out", got, lc, "transformer.h.0.attn.c_attn", 1, true)

	// modules_to_save: lm_head replaced by the saved F32 copy, written as the base's F16.
	saved := tensor{"F32", []int{5, 3}, seq(15, -3)}
	got, err = merge(t, adapterFolder(t, `{"r":2,"lora_alpha":8,"target_modules":["q_proj"],"modules_to_save":["lm_head"]}`, lq,
		map[string]tensor{peftPrefix + "lm_head.weight": saved}), base)
	if err != nil {
		t.Fatal(err)
	}
	check("modules_to_save", got, lq, q, 4, false)
	sameValues(t, "saved lm_head", got["lm_head.weight"], tensor{"F16", saved.shape, saved.data})
}

func TestMergeRefuses(t *testing.T) {
	base := baseFolder(t)
	q := "model.layers.0.self_attn.q_proj"
	cfg := `{"r":2,"lora_alpha":8,"target_modules":["q_proj","v_proj"]}`
	lq := lora(q, 2, 3, 4)
	for _, c := range []struct {
		name, config string
		tensors      map[string]tensor
		want         string
	}{
		{"dora", `{"r":2,"lora_alpha":8,"use_dora":true}`, lq, "use_dora: DoRA adapters are not supported"},
		{"bias", `{"r":2,"lora_alpha":8,"bias":"lora_only"}`, lq, `only bias "none" is supported`},
		{"ia3", `{"peft_type":"IA3"}`, lq, "peft_type IA3"},
		{"missing base tensor", cfg, lora("model.layers.5.self_attn.q_proj", 2, 3, 4), "has no tensor model.layers.5.self_attn.q_proj.weight"},
		{"shape mismatch", cfg, lora(q, 2, 3, 5), "lora_B·lora_A is 3×5"},
		{"rank mismatch", `{"r":4,"lora_alpha":8}`, lq, "lora_A has rank 2, the config says r 4"},
		{"lone lora_A", cfg, map[string]tensor{peftPrefix + q + ".lora_A.weight": lq[peftPrefix+q+".lora_A.weight"]}, "has only one of lora_A and lora_B"},
		{"untargeted", `{"r":2,"lora_alpha":8,"target_modules":["v_proj"]}`, lq, "which target_modules in adapter_config.json does not name"},
		{"magnitude", cfg, map[string]tensor{peftPrefix + q + ".lora_magnitude_vector": {"F32", []int{3}, seq(3, 1)}}, "unsupported LoRA tensor"},
		{"stray tensor", cfg, map[string]tensor{peftPrefix + "lm_head.weight": {"F32", []int{5, 3}, seq(15, 1)}}, "neither a LoRA matrix nor part of a module in modules_to_save"},
	} {
		_, err := merge(t, adapterFolder(t, c.config, c.tensors), base)
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", c.name, err, c.want)
		}
	}

	// A truncated base names its file.
	trunc := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(base, "model.safetensors"))
	os.WriteFile(filepath.Join(trunc, "model.safetensors"), b[:len(b)-10], 0o644)
	_, err := merge(t, adapterFolder(t, cfg, lq), trunc)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(trunc, "model.safetensors")) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated base: %v", err)
	}
}

func TestHalfRounding(t *testing.T) {
	for _, c := range []struct {
		f    float32
		half uint16
		bf   uint16
	}{
		{1, 0x3c00, 0x3f80},
		{-2.5, 0xc100, 0xc020},
		{65504, 0x7bff, 0x4780},                  // BF16 keeps 8 bits: 65536
		{1e6, 0x7c00, 0x4974},                    // past binary16's range: infinity
		{float32(math.Ldexp(1, -24)), 1, 0x3380}, // the smallest binary16 subnormal
		{1 + 1.0/2048, 0x3c00, 0x3f80},           // a tie in binary16 rounds to even
		{1 + 3.0/2048, 0x3c02, 0x3f80},
	} {
		if h := floatToHalf(c.f); h != c.half {
			t.Errorf("floatToHalf(%g) = %#04x, want %#04x", c.f, h, c.half)
		}
		if b := floatToBF16(c.f); b != c.bf {
			t.Errorf("floatToBF16(%g) = %#04x, want %#04x", c.f, b, c.bf)
		}
	}
}

// TestAdapterRoutes: a Qwen2 adapter over the Qwen2 base's Hugging Face folder is merged, over its
// GGUF it is refused with a one-line error before any server; a plain Llama adapter keeps Ollama's
// converter, and one with rsLoRA, which that converter would drop, is merged.
func TestAdapterRoutes(t *testing.T) {
	qwenHF, llamaHF := servertest.Model("tiny-qwen2-hf"), servertest.Model("tiny-llama-hf")
	qwenGGUF := servertest.Model("tiny-qwen2.gguf")
	if _, err := os.Stat(qwenGGUF); err != nil {
		t.Skip("bundled tiny models not built yet")
	}
	adapter := func(cfg string) *files {
		dir := adapterFolder(t, cfg, lora("model.layers.0.self_attn.q_proj", 2, 128, 128))
		f, err := inspect(dir)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := func(p string) *files {
		f, err := inspect(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	plain := `{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q_proj"]}`
	rs := `{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q_proj"],"use_rslora":true}`
	for _, c := range []struct {
		name    string
		ck      *files
		base    *files
		want    bool
		wantErr string
	}{
		{"qwen2 over folder", adapter(plain), base(qwenHF), true, ""},
		{"qwen2 over GGUF", adapter(plain), base(qwenGGUF), false, "no adapter route for qwen2 (only llama, gemma2), so vtune must merge it into its base"},
		{"llama over folder", adapter(plain), base(llamaHF), false, ""},
		{"llama rsLoRA over folder", adapter(rs), base(llamaHF), true, ""},
		{"llama rsLoRA over a server's model", adapter(rs), nil, false, "would drop its use_rslora"},
	} {
		got, err := needsMerge(c.ck, c.base, Options{Path: c.ck.path})
		if got != c.want || (err == nil) != (c.wantErr == "") || err != nil && (!strings.Contains(err.Error(), c.wantErr) ||
			!strings.Contains(err.Error(), "give checkpoint.Options.Base as the base's Hugging Face folder")) {
			t.Errorf("%s: %v, %v; want %v, %q", c.name, got, err, c.want, c.wantErr)
		}
	}

	// Through Open, the refusal comes before any server is looked for.
	_, err := Open(context.Background(), Options{Path: adapter(plain).path, Base: qwenGGUF, Backend: "llamacpp", LlamaServer: "/nonexistent"})
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "no adapter route for qwen2") {
		t.Fatalf("Open: %v", err)
	}
}
