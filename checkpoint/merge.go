package checkpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// A PEFT LoRA adapter changes each target module's weight W (out × in, as nn.Linear stores it) to
//
//	W' = W + s · B · A,   A: r × in (lora_A), B: out × r (lora_B),
//	s = alpha / r, or alpha / √r with rsLoRA,
//
// and replaces the weights of modules_to_save outright. Where Ollama's converter has no adapter
// route for an architecture, vtune merges the adapter into its base this way and converts the
// merged Hugging Face folder as a whole model, which is what PEFT's merge_and_unload gives.

// loraConfig is what vtune reads of PEFT's adapter_config.json.
type loraConfig struct {
	PeftType      string             `json:"peft_type"`
	R             int                `json:"r"`
	Alpha         float64            `json:"lora_alpha"`
	TargetModules json.RawMessage    `json:"target_modules"` // a list of names, or a regular expression
	UseRSLoRA     bool               `json:"use_rslora"`
	ModulesToSave []string           `json:"modules_to_save"`
	FanInFanOut   bool               `json:"fan_in_fan_out"`
	Bias          string             `json:"bias"`
	UseDoRA       bool               `json:"use_dora"`
	RankPattern   map[string]float64 `json:"rank_pattern"`
	AlphaPattern  map[string]float64 `json:"alpha_pattern"`
	// Features of newer PEFT that add weights the merge does not know; refused when set.
	LoRABias         bool            `json:"lora_bias"`
	TrainableTokens  json.RawMessage `json:"trainable_token_indices"`
	LayerReplication json.RawMessage `json:"layer_replication"`
	TargetParameters json.RawMessage `json:"target_parameters"`
	// layers_to_transform and layers_pattern need nothing: PEFT saves only the layers they
	// select, and the merge changes only the modules whose tensors the adapter holds.

	path       string
	targetList []string
	targetRE   *regexp.Regexp
}

// readLoRAConfig reads and checks an adapter folder's adapter_config.json: it refuses what neither
// route can load exactly (DoRA, trained biases, other PEFT methods).
func readLoRAConfig(dir string) (*loraConfig, error) {
	path := filepath.Join(dir, "adapter_config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, bad(path, "%v", err)
	}
	c := &loraConfig{path: path}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, bad(path, "not a PEFT adapter config: %v", err)
	}
	set := func(raw json.RawMessage) bool { s := string(raw); return s != "" && s != "null" && s != "[]" }
	switch {
	case c.PeftType != "" && c.PeftType != "LORA":
		return nil, bad(path, "peft_type %s: vtune loads LoRA adapters only", c.PeftType)
	case c.UseDoRA:
		return nil, bad(path, "use_dora: DoRA adapters are not supported; merge it into the base yourself (PEFT merge_and_unload) and pass the merged model")
	case c.Bias != "" && c.Bias != "none", c.LoRABias:
		return nil, bad(path, "the adapter trains biases (bias %q, lora_bias %v); only bias \"none\" is supported: merge it yourself and pass the merged model", c.Bias, c.LoRABias)
	case set(c.TrainableTokens), set(c.LayerReplication), set(c.TargetParameters):
		return nil, bad(path, "trainable_token_indices, layer_replication and target_parameters are not supported: merge it yourself and pass the merged model")
	}
	if set(c.TargetModules) {
		if err := json.Unmarshal(c.TargetModules, &c.targetList); err != nil {
			var s string
			if json.Unmarshal(c.TargetModules, &s) != nil {
				return nil, bad(path, "target_modules is neither a list of names nor a regular expression")
			}
			if s != "all-linear" {
				// PEFT matches a string with Python's re.fullmatch.
				if c.targetRE, err = regexp.Compile(`^(?:` + s + `)$`); err != nil {
					return nil, bad(path, "target_modules %q: %v", s, err)
				}
			}
		}
	}
	return c, nil
}

// exactInConverter reports whether Ollama's adapter converter, which writes only the LoRA
// matrices and a single alpha, represents the adapter exactly; if not, it says what it would lose.
func (c *loraConfig) exactInConverter() (bool, string) {
	switch {
	case c.UseRSLoRA:
		return false, "use_rslora"
	case len(c.ModulesToSave) > 0:
		return false, "modules_to_save"
	case len(c.AlphaPattern) > 0:
		return false, "alpha_pattern"
	case c.FanInFanOut:
		return false, "fan_in_fan_out"
	}
	return true, ""
}

// targets reports whether target_modules names a module, as PEFT decides: a list entry equal to
// the module's name or to its last dotted parts, or the regular expression matching it whole.
func (c *loraConfig) targets(module string) bool {
	switch {
	case c.targetRE != nil:
		return c.targetRE.MatchString(module)
	case c.targetList != nil:
		for _, t := range c.targetList {
			if module == t || strings.HasSuffix(module, "."+t) {
				return true
			}
		}
		return false
	}
	return true // absent or all-linear: the tensors present say which modules
}

// pattern returns the value of the rank_pattern or alpha_pattern key that matches a module (PEFT:
// re.match(rf"(.*\.)?({key})$", module)), or def when none does. Two keys that match with
// different values are refused: PEFT would take whichever the file lists first.
func (c *loraConfig) pattern(field string, p map[string]float64, module string, def float64) (float64, error) {
	v, found, keys := def, false, make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, err := regexp.Compile(`^(.*\.)?(` + k + `)$`)
		if err != nil {
			return 0, bad(c.path, "%s key %q: %v", field, k, err)
		}
		if !re.MatchString(module) {
			continue
		}
		if found && p[k] != v {
			return 0, bad(c.path, "%s: several keys match %s with different values", field, module)
		}
		v, found = p[k], true
	}
	return v, nil
}

// scale is s for a module whose lora_A has rank r: alpha / r, or alpha / √r with rsLoRA, alpha
// and r taken from alpha_pattern and rank_pattern where they name the module.
func (c *loraConfig) scale(module string, r int) (float64, error) {
	want, err := c.pattern("rank_pattern", c.RankPattern, module, float64(c.R))
	if err != nil {
		return 0, err
	}
	if want != 0 && int(want) != r {
		return 0, bad(c.path, "module %s: lora_A has rank %d, the config says r %v", module, r, want)
	}
	alpha, err := c.pattern("alpha_pattern", c.AlphaPattern, module, c.Alpha)
	if err != nil {
		return 0, err
	}
	if alpha == 0 {
		return 0, bad(c.path, "lora_alpha missing or 0")
	}
	if c.UseRSLoRA {
		return alpha / math.Sqrt(float64(r)), nil
	}
	return alpha / float64(r), nil
}

// adapterTensors are an adapter's tensors by what they change: LoRA pairs by module, and the
// whole tensors of modules_to_save by the base tensor they replace.
type adapterTensors struct {
	files   []*stFile
	pairs   map[string]*loraPair // by module name, e.g. model.layers.0.self_attn.q_proj
	replace map[string]stRef     // by base tensor name
}

type stRef struct {
	file *stFile
	name string
}

// loraPair is one module's A and B; embedding says they are lora_embedding_A/B, whose product is
// the transpose of the embedding matrix's change.
type loraPair struct {
	a, b      *stRef
	embedding bool
}

func (a *adapterTensors) Close() {
	for _, f := range a.files {
		f.Close()
	}
}

const peftPrefix = "base_model.model."

// readAdapter opens an adapter folder's safetensors files and sorts their tensors, refusing any it
// cannot place.
func readAdapter(dir string, c *loraConfig) (_ *adapterTensors, err error) {
	paths, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	out := &adapterTensors{pairs: map[string]*loraPair{}, replace: map[string]stRef{}}
	defer func() {
		if err != nil {
			out.Close()
		}
	}()
	for _, p := range paths {
		f, err := openSafetensors(p)
		if err != nil {
			return nil, err
		}
		out.files = append(out.files, f)
		for _, name := range f.names() {
			if err := out.add(f, name, c); err != nil {
				return nil, err
			}
		}
	}
	for module, p := range out.pairs {
		if p.a == nil || p.b == nil {
			return nil, bad(dir, "module %s has only one of lora_A and lora_B", module)
		}
	}
	if len(out.pairs)+len(out.replace) == 0 {
		return nil, bad(dir, "the adapter has no LoRA tensors")
	}
	return out, nil
}

// add places one adapter tensor, named as PEFT saves it: base_model.model.MODULE.lora_A.weight
// (lora_B, lora_embedding_A, lora_embedding_B likewise), or base_model.model.TENSOR for a module
// of modules_to_save.
func (a *adapterTensors) add(f *stFile, name string, c *loraConfig) error {
	rest, ok := strings.CutPrefix(name, peftPrefix)
	if !ok {
		return bad(f.path, "tensor %s is not named as PEFT names adapter tensors (%s…)", name, peftPrefix)
	}
	for _, s := range []struct {
		suffix    string
		b         bool
		embedding bool
	}{{".lora_A.weight", false, false}, {".lora_B.weight", true, false}, {".lora_embedding_A", false, true}, {".lora_embedding_B", true, true}} {
		module, ok := strings.CutSuffix(rest, s.suffix)
		if !ok {
			continue
		}
		if !c.targets(module) {
			return bad(f.path, "tensor %s adapts %s, which target_modules in adapter_config.json does not name", name, module)
		}
		p := a.pairs[module]
		if p == nil {
			p = &loraPair{embedding: s.embedding}
			a.pairs[module] = p
		}
		if s.b {
			p.b = &stRef{f, name}
		} else {
			p.a = &stRef{f, name}
		}
		return nil
	}
	if strings.Contains(rest, "lora_") {
		return bad(f.path, "tensor %s: unsupported LoRA tensor (DoRA magnitude or LoRA bias?)", name)
	}
	for _, m := range c.ModulesToSave {
		if strings.HasPrefix(rest, m+".") || strings.Contains(rest, "."+m+".") {
			a.replace[rest] = stRef{f, name}
			return nil
		}
	}
	return bad(f.path, "tensor %s is neither a LoRA matrix nor part of a module in modules_to_save", name)
}

// mergeAdapter writes, in a new folder under tmp, the base's Hugging Face folder with the adapter
// merged into it: every file linked from the base except the safetensors files with a changed
// tensor, which are written anew in the base's dtypes. The caller removes the folder.
func mergeAdapter(adapterDir, baseDir, tmp string, c *loraConfig) (dir string, err error) {
	ad, err := readAdapter(adapterDir, c)
	if err != nil {
		return "", err
	}
	defer ad.Close()
	shards, _ := filepath.Glob(filepath.Join(baseDir, "*.safetensors"))
	var bases []*stFile
	defer func() {
		for _, b := range bases {
			b.Close()
		}
	}()
	where := map[string]*stFile{}
	for _, p := range shards {
		f, err := openSafetensors(p)
		if err != nil {
			return "", err
		}
		bases = append(bases, f)
		for n := range f.tensors {
			where[n] = f
		}
	}
	changed := map[*stFile]bool{}
	for _, base := range ad.targetTensors() {
		f := where[base.tensor]
		if f == nil {
			return "", bad(base.from, "tensor %s: the base %s has no tensor %s (an adapter for another model?)", base.name, baseDir, base.tensor)
		}
		changed[f] = true
	}

	dir, err = os.MkdirTemp(tmp, "vtune-merged-*")
	if err != nil {
		return "", fmt.Errorf("merging %s: %w", adapterDir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := linkFolder(baseDir, dir); err != nil {
		return "", err
	}
	for _, f := range bases {
		if !changed[f] {
			continue
		}
		out := filepath.Join(dir, filepath.Base(f.path))
		os.Remove(out) // the link to the unchanged file
		if err := ad.mergeFile(f, out, c); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// linkFolder links every regular file of src into dst, by absolute symbolic links: the converter
// reads them through os.DirFS, which follows links.
func linkFolder(src, dst string) error {
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return bad(src, "%v", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			if err := os.Symlink(filepath.Join(abs, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return fmt.Errorf("merging: %w", err)
			}
		}
	}
	return nil
}

type target struct {
	tensor string // the base tensor changed
	name   string // an adapter tensor that changes it
	from   string // its file
}

// targetTensors lists the base tensors the adapter changes.
func (a *adapterTensors) targetTensors() []target {
	var out []target
	for module, p := range a.pairs {
		out = append(out, target{module + ".weight", p.a.name, p.a.file.path})
	}
	for tensor, r := range a.replace {
		out = append(out, target{tensor, r.name, r.file.path})
	}
	return out
}

// mergeFile writes base's tensors to out in the same order, those the adapter changes merged.
func (a *adapterTensors) mergeFile(base *stFile, out string, c *loraConfig) error {
	var ws []stWrite
	for _, name := range base.names() {
		t := base.tensors[name]
		w := stWrite{stTensor: *t}
		module, isWeight := strings.CutSuffix(name, ".weight")
		p, isPair := a.pairs[module]
		r, isSaved := a.replace[name]
		var err error
		switch {
		case isPair && isWeight && isSaved:
			return bad(r.file.path, "module %s has both LoRA matrices and a saved copy (modules_to_save)", module)
		case isPair && isWeight:
			w.data, err = mergePair(base, name, module, p, c)
		case isSaved:
			w.data, err = replaceTensor(base, name, r)
		default:
			w.from = io.NewSectionReader(base.f, t.start, t.size)
		}
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	if err := writeSafetensors(out, base.meta, ws); err != nil {
		return fmt.Errorf("merging: %w", err)
	}
	return nil
}

// mergePair computes one module's merged weight W' = W + s · B · A in the base's dtype.
func mergePair(base *stFile, name, module string, p *loraPair, c *loraConfig) ([]byte, error) {
	wt, at, bt := base.tensors[name], p.a.file.tensors[p.a.name], p.b.file.tensors[p.b.name]
	if len(at.Shape) != 2 || len(bt.Shape) != 2 || len(wt.Shape) != 2 || at.Shape[0] != bt.Shape[1] {
		return nil, bad(p.a.file.path, "module %s: lora_A %v and lora_B %v do not multiply into base %s %v", module, at.Shape, bt.Shape, name, wt.Shape)
	}
	r, out, in := at.Shape[0], bt.Shape[0], at.Shape[1]
	// B·A is out × in. nn.Linear stores W as out × in; fan_in_fan_out (GPT-2's Conv1D) and
	// embeddings (num_embeddings × dim, with A: r × num_embeddings) store its transpose.
	transposed := c.FanInFanOut || p.embedding
	rows, cols := out, in
	if transposed {
		rows, cols = in, out
	}
	if wt.Shape[0] != rows || wt.Shape[1] != cols {
		return nil, bad(p.a.file.path, "module %s: lora_B·lora_A is %d×%d (transposed: %v), base %s is %v: an adapter for another model?", module, out, in, transposed, name, wt.Shape)
	}
	s, err := c.scale(module, r)
	if err != nil {
		return nil, err
	}
	w, err := base.floats(name)
	if err != nil {
		return nil, err
	}
	a, err := p.a.file.floats(p.a.name)
	if err != nil {
		return nil, err
	}
	b, err := p.b.file.floats(p.b.name)
	if err != nil {
		return nil, err
	}
	addLoRA(w, a, b, out, in, r, s, transposed)
	return encodeFloats(wt.DType, w), nil
}

// addLoRA adds s · B · A to w (out × in, or in × out when transposed), with a: r × in and
// b: out × r, all row-major. Each element's sum over k is taken in float64, in order of k, and
// rounded once to float32. Rows of the product are shared out among the CPUs.
func addLoRA(w, a, b []float32, out, in, r int, s float64, transposed bool) {
	workers := min(runtime.GOMAXPROCS(0), out)
	var wg sync.WaitGroup
	for n := 0; n < workers; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := make([]float64, in)
			for o := n; o < out; o += workers {
				clear(row)
				for k := 0; k < r; k++ {
					bk := float64(b[o*r+k])
					for i, x := range a[k*in : (k+1)*in] {
						row[i] += bk * float64(x)
					}
				}
				for i, d := range row {
					j := o*in + i
					if transposed {
						j = i*out + o
					}
					w[j] = float32(float64(w[j]) + s*d)
				}
			}
		}()
	}
	wg.Wait()
}

// replaceTensor returns a modules_to_save tensor in place of the base's, in the base's dtype.
func replaceTensor(base *stFile, name string, r stRef) ([]byte, error) {
	wt, st := base.tensors[name], r.file.tensors[r.name]
	if fmt.Sprint(wt.Shape) != fmt.Sprint(st.Shape) {
		return nil, bad(r.file.path, "tensor %s is %v, base %s is %v", r.name, st.Shape, name, wt.Shape)
	}
	v, err := r.file.floats(r.name)
	if err != nil {
		return nil, err
	}
	if wt.DType != "F32" && wt.DType != "F16" && wt.DType != "BF16" {
		return nil, bad(base.path, "tensor %s has dtype %s; the merge writes F32, F16 and BF16", name, wt.DType)
	}
	return encodeFloats(wt.DType, v), nil
}
