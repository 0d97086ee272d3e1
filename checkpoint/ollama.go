package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ollama/ollama/api"

	"vtune/backend"
)

// openOllama uploads the checkpoint's GGUF files as blobs (skipping those the server has), creates
// a temporary model from them with the key's template and stop sequences, loads it, and reads
// where it runs from /api/ps.
func openOllama(ctx context.Context, m *Model, opt Options, ck, base *files) error {
	u, err := url.Parse(opt.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("bad Ollama URL %q: want e.g. %s", opt.URL, backend.DefaultOllamaURL)
	}
	client := api.NewClient(u, http.DefaultClient)
	fail := func(op string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &backend.Error{Op: "ollama " + op, URL: opt.URL, Err: err}
	}
	version, err := client.Version(ctx)
	if err != nil {
		return fail("version", fmt.Errorf("cannot reach Ollama: %v (is the server running?)", err))
	}
	m.Provenance.Server, m.Provenance.ServerVersion = "ollama", version

	upload := func(path string) (string, error) {
		size, sum, err := hashFile(path)
		if err != nil {
			return "", err
		}
		digest := "sha256:" + sum
		if has, err := hasBlob(ctx, opt.URL, digest); err != nil {
			return "", fail("blobs", err)
		} else if has {
			return digest, nil
		}
		note(opt.Log, "uploading %s (%d bytes) to Ollama", path, size)
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := client.CreateBlob(ctx, digest, f); err != nil {
			return "", fail("upload blob", err)
		}
		return digest, nil
	}

	name := tempName()
	req := &api.CreateRequest{Model: name, Stream: new(bool)}
	modelFiles := ck
	if ck.adapter() {
		modelFiles = base
		if ck.gguf != "" {
			d, err := upload(ck.gguf)
			if err != nil {
				return err
			}
			req.Adapters = map[string]string{"adapter.gguf": d}
		} else {
			// A safetensors adapter over a model on the server: the server's copy of the same
			// converter turns it into GGUF, as `ollama create` with ADAPTER does, where it has a
			// route for the architecture.
			if err := adapterRouteOn(ctx, client, opt); err != nil {
				return err
			}
			req.Adapters = map[string]string{}
			for _, f := range ck.files {
				d, err := upload(f.Path)
				if err != nil {
					return err
				}
				req.Adapters[baseName(f.Path)] = d
			}
		}
	}
	if modelFiles != nil {
		d, err := upload(modelFiles.gguf)
		if err != nil {
			return err
		}
		req.Files = map[string]string{"model.gguf": d}
	} else {
		req.From = opt.Base // an Ollama model name
	}
	req.Quantize = opt.quantizeOnServer
	if opt.Expect.Template != "" {
		req.Template = opt.Expect.Template
		st := opt.Expect.Stop
		if len(st) == 0 {
			st = stops(opt.Expect.Template, modelFiles)
		}
		if len(st) > 0 {
			req.Parameters = map[string]any{"stop": st}
		}
	}

	// Registered before create: an interrupted create may still leave the model behind.
	m.Name = name
	m.onClose(func(ctx context.Context) error {
		if opt.Keep {
			note(opt.Log, "kept the temporary model %s on %s, as asked", name, opt.URL)
			return nil
		}
		// Unload first, so the server frees the memory now, not when keep_alive runs out.
		client.Generate(ctx, &api.GenerateRequest{Model: name, KeepAlive: &api.Duration{}}, func(api.GenerateResponse) error { return nil })
		err := client.Delete(ctx, &api.DeleteRequest{Model: name})
		var se api.StatusError
		if err != nil && !(errors.As(err, &se) && se.StatusCode == http.StatusNotFound) {
			return fmt.Errorf("removing the temporary model %s from %s: %w", name, opt.URL, err)
		}
		return nil
	})
	if err := client.Create(ctx, req, func(api.ProgressResponse) error { return nil }); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se api.StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusBadRequest {
			return bad(opt.Path, "Ollama refused it: %s", se.ErrorMessage)
		}
		if opt.Base != "" && modelFiles == nil && strings.Contains(err.Error(), "not found") {
			return bad(opt.Base, "no such model on the Ollama server (checkpoint.Options.Base takes a GGUF file, a Hugging Face folder or a model name on the server)")
		}
		return fail("create", err)
	}

	// Load it now: errors that belong to the checkpoint (architecture, memory) show up here, and
	// /api/ps can then say where it runs.
	load := &api.GenerateRequest{Model: name}
	if err := client.Generate(ctx, load, func(api.GenerateResponse) error { return nil }); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e := loadError(opt.Path, err.Error()); e != nil {
			return e
		}
		// Ollama says no more than "unable to load model: BLOB" when its runner rejects a file.
		if strings.Contains(err.Error(), "unable to load model") {
			arch := ""
			if modelFiles != nil {
				arch = modelFiles.arch
			}
			return bad(opt.Path, "the server cannot load it: unsupported architecture %q or damaged tensors (Ollama: %s)", arch, oneLine(err.Error()))
		}
		return fail("load", err)
	}
	// A model identical to one already loaded (same manifest digest) shares its runner, and
	// /api/ps lists that runner under the other name: match on the digest too.
	digest := ""
	if list, err := client.List(ctx); err == nil {
		for _, r := range list.Models {
			if strings.TrimSuffix(r.Name, ":latest") == name {
				digest = r.Digest
			}
		}
	}
	// A runner is shared by every model made from the same weights file, whatever the template or
	// parameters, so a runner listed under another name is ours when its Modelfile names our blob.
	blob := strings.Replace(req.Files["model.gguf"], "sha256:", "sha256-", 1)
	ours := func(r api.ProcessModelResponse) bool {
		if strings.TrimSuffix(r.Name, ":latest") == name || (digest != "" && r.Digest == digest) {
			return true
		}
		if blob == "" {
			return false
		}
		show, err := client.Show(ctx, &api.ShowRequest{Model: r.Name})
		return err == nil && strings.Contains(show.Modelfile, blob)
	}
	if ps, err := client.ListRunning(ctx); err == nil {
		for _, r := range ps.Models {
			if m.Provenance.Placement == "" && ours(r) {
				m.Provenance.Placement = placement(r.Size, r.SizeVRAM)
				m.Provenance.Offload = fmt.Sprintf("%s of %s in GPU memory", bytesString(r.SizeVRAM), bytesString(r.Size))
			}
		}
	}
	b, err := backend.NewOllama(u, name, opt.HTTPClient)
	if err != nil {
		return err
	}
	// Keep the model loaded for the whole run: reloading between queries costs time, never results.
	keep := time.Duration(-1)
	b.KeepAlive = &keep
	m.Backend = b
	if opt.Expect.Template == "" {
		if _, err := b.Info(ctx); err != nil {
			return bad(opt.Path, "Ollama found no chat template it knows in this checkpoint; vtune needs one (%v)", err)
		}
	}
	return nil
}

// adapterRouteOn refuses a safetensors adapter over a model on the server whose architecture
// Ollama's converter has no adapter route for: merging it needs the base's weights. A model the
// server does not have is left to create, which says so.
func adapterRouteOn(ctx context.Context, client *api.Client, opt Options) error {
	show, err := client.Show(ctx, &api.ShowRequest{Model: opt.Base})
	if err != nil {
		return nil
	}
	arch, _ := show.ModelInfo["general.architecture"].(string)
	if arch == "" || slices.Contains(adapterRoutes, arch) {
		return nil
	}
	return needBaseFolder(opt.Path, noRoute(arch))
}

// hasBlob asks the server whether it already holds a blob (HEAD /api/blobs/DIGEST).
func hasBlob(ctx context.Context, base, digest string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, strings.TrimRight(base, "/")+"/api/blobs/"+digest, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// loadError turns a server's failure to load a model into a checkpoint error where the checkpoint
// is the cause: an architecture the server does not know, not enough memory, a broken file.
func loadError(path, msg string) error {
	low := strings.ToLower(msg)
	switch {
	case strings.Contains(low, "memory") && (strings.Contains(low, "requires more") || strings.Contains(low, "not enough") ||
		strings.Contains(low, "out of memory") || strings.Contains(low, "failed to allocate") || strings.Contains(low, "insufficient")):
		return bad(path, "not enough memory to load it: %s", oneLine(msg))
	case strings.Contains(low, "unknown model architecture") || strings.Contains(low, "unsupported model architecture") ||
		strings.Contains(low, "unsupported architecture"):
		return bad(path, "unsupported architecture: %s", oneLine(msg))
	case strings.Contains(low, "error loading model") || strings.Contains(low, "failed to load model"):
		return bad(path, "the server cannot load it: %s", oneLine(msg))
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// placement says where a model runs from the bytes the server put in GPU memory, as `ollama ps`
// shows it.
func placement(size, vram int64) string {
	switch {
	case size <= 0 || vram <= 0:
		return "CPU"
	case vram >= size:
		return "GPU"
	}
	gpu := int(100 * vram / size)
	return fmt.Sprintf("%d%% GPU, %d%% CPU", gpu, 100-gpu)
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}

// tempName is a model name no one else uses, recognisable as vtune's if it is ever left behind.
func tempName() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "vtune-checkpoint-" + hex.EncodeToString(b)
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, os.PathSeparator); i >= 0 {
		return p[i+1:]
	}
	return p
}
