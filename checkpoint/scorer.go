package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"

	"vtune/backend"
)

// OpenOllamaScorer starts a llama-server on the files behind model on the Ollama server at
// opt.URL (its GGUF blob and adapter, as the server's modelfile names them), so that free text can
// be teacher-forced exactly on the same weights. Ollama reports only its top 20 tokens and cannot
// force one, so it scores text one request a token, bounded where the token is not listed;
// llama-server scores a record in one request. The files must be readable here, which holds when
// the server runs on this machine; otherwise the error says so and the caller scores through
// Ollama. opt.Path, opt.Base and opt.Backend are set here; the rest of opt applies as for Open.
func OpenOllamaScorer(ctx context.Context, opt Options, model string) (*Model, error) {
	u, err := url.Parse(opt.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("bad Ollama URL %q: want e.g. %s", opt.URL, backend.DefaultOllamaURL)
	}
	hc := opt.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	show, err := api.NewClient(u, hc).Show(ctx, &api.ShowRequest{Model: model})
	if err != nil {
		return nil, &backend.Error{Op: "ollama show", URL: opt.URL, Err: err}
	}
	gguf, adapters, err := modelfileFiles(show.Modelfile)
	if err != nil {
		return nil, fmt.Errorf("model %s on %s: %w", model, opt.URL, err)
	}
	for _, f := range append([]string{gguf}, adapters...) {
		if err := readable(f); err != nil {
			return nil, fmt.Errorf("model %s: its file %s cannot be read here (is Ollama on another machine?): %w", model, f, err)
		}
	}
	opt.Backend, opt.Path, opt.Base = "llamacpp", gguf, ""
	switch len(adapters) {
	case 0:
	case 1:
		opt.Path, opt.Base = adapters[0], gguf
	default:
		return nil, fmt.Errorf("model %s has %d adapters; llama-server scoring takes one", model, len(adapters))
	}
	m, err := Open(ctx, opt)
	if err != nil {
		return nil, err
	}
	// Ollama names a blob by its SHA-256, which Open has just computed: a file that is not what
	// its name says is not the model the server loaded.
	for _, f := range m.Provenance.Files {
		if name := filepath.Base(f.Path); strings.HasPrefix(name, "sha256-") && name != "sha256-"+f.SHA256 {
			m.Close()
			return nil, fmt.Errorf("model %s: its file %s hashes to sha256 %s, not to its name", model, f.Path, f.SHA256)
		}
	}
	return m, nil
}

// modelfileFiles returns the model file (the first FROM) and the adapters (ADAPTER) that a
// modelfile from /api/show names. Later FROM lines are projectors, which text scoring does not use.
func modelfileFiles(modelfile string) (gguf string, adapters []string, err error) {
	mf, err := parser.ParseFile(strings.NewReader(modelfile))
	if err != nil {
		return "", nil, fmt.Errorf("reading its modelfile: %w", err)
	}
	for _, c := range mf.Commands {
		switch c.Name {
		case "model":
			if gguf == "" {
				gguf = c.Args
			}
		case "adapter":
			adapters = append(adapters, c.Args)
		}
	}
	if gguf == "" || !strings.HasPrefix(gguf, "/") {
		return "", nil, errors.New("its modelfile names no model file on disk")
	}
	return gguf, adapters, nil
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}
