package checkpoint

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// WriteTestLoRA writes into the folder adapter a random PEFT LoRA of the given rank on the named
// modules (e.g. "v_proj") of every layer of the Hugging Face folder base, strong enough to change
// a small model's greedy answers, and into the folder merged the model merged from it by hand:
// W' = W + (alpha/r) B A, summed in float64 and rounded once to the base's dtype. It is a test
// fixture, exported so that the CLI's tests make their adapters as this package's tests do, with
// this package's safetensors reader and writer; the draw is the same on every call.
func WriteTestLoRA(base, adapter, merged string, modules []string, rank int, alpha float64) error {
	src, err := openSafetensors(filepath.Join(base, "model.safetensors"))
	if err != nil {
		return err
	}
	defer src.Close()
	for _, dir := range []string{adapter, merged} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var lora, whole []stWrite
	add := func(ws *[]stWrite, name, dtype string, shape []int, v []float32) {
		b := encodeFloats(dtype, v)
		*ws = append(*ws, stWrite{stTensor: stTensor{Name: name, DType: dtype, Shape: shape, size: int64(len(b))}, data: b})
	}
	for _, name := range src.names() {
		w, err := src.floats(name)
		if err != nil {
			return err
		}
		st := src.tensors[name]
		module, _ := strings.CutSuffix(name, ".weight")
		if i := strings.LastIndexByte(module, '.'); !strings.HasSuffix(name, ".weight") || i < 0 || !slices.Contains(modules, module[i+1:]) {
			add(&whole, name, st.DType, st.Shape, w)
			continue
		}
		out, in := st.Shape[0], st.Shape[1]
		a, b := make([]float32, rank*in), make([]float32, out*rank)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * 0.15)
		}
		for i := range b {
			b[i] = float32(rng.NormFloat64() * 0.15)
		}
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var d float64
				for k := 0; k < rank; k++ {
					d += float64(b[o*rank+k]) * float64(a[k*in+i])
				}
				w[o*in+i] = float32(float64(w[o*in+i]) + alpha/float64(rank)*d)
			}
		}
		add(&whole, name, st.DType, st.Shape, w)
		add(&lora, peftPrefix+module+".lora_A.weight", "F32", []int{rank, in}, a)
		add(&lora, peftPrefix+module+".lora_B.weight", "F32", []int{out, rank}, b)
	}
	if len(lora) == 0 {
		return fmt.Errorf("%s has no modules %v", base, modules)
	}
	if err := writeSafetensors(filepath.Join(adapter, "adapter_model.safetensors"), nil, lora); err != nil {
		return err
	}
	if err := writeSafetensors(filepath.Join(merged, "model.safetensors"), src.meta, whole); err != nil {
		return err
	}
	targets, _ := json.Marshal(modules)
	cfg := fmt.Sprintf(`{"peft_type":"LORA","task_type":"CAUSAL_LM","r":%d,"lora_alpha":%g,"target_modules":%s,"bias":"none","use_rslora":false,"use_dora":false,"fan_in_fan_out":false,"modules_to_save":null,"rank_pattern":{},"alpha_pattern":{}}`,
		rank, alpha, targets)
	if err := os.WriteFile(filepath.Join(adapter, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for _, f := range []string{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(base, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(merged, f), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
