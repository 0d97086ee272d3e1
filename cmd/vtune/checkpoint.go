package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"vtune/backend"
	"vtune/checkpoint"
	"vtune/verifier"
)

// checkpointFlags load a checkpoint file or folder into the server instead of naming a model on it.
func checkpointFlags(many bool) []cli.Flag {
	const usage = "load this checkpoint into the server instead of --model: a GGUF file, a Hugging Face folder (config.json, *.safetensors, tokenizer.json; converted with Ollama's converter) or a LoRA adapter (PEFT folder or GGUF, with --base)"
	var ck cli.Flag = &cli.PathFlag{Name: "checkpoint", Usage: usage}
	if many {
		ck = &cli.StringSliceFlag{Name: "checkpoint", Usage: usage + "; repeat it to compare checkpoints"}
	}
	return []cli.Flag{
		ck,
		&cli.StringFlag{Name: "base", Usage: "for an adapter --checkpoint: the base model, a GGUF file, a Hugging Face folder, or (ollama) a model name on the server"},
		&cli.BoolFlag{Name: "keep", Usage: "ollama: keep the temporary model made from --checkpoint instead of removing it"},
		&cli.StringFlag{Name: "llama-server", EnvVars: []string{"VTUNE_LLAMA_SERVER"}, Usage: "the llama-server command vtune starts, with llama-server's own arguments, for a llamacpp --checkpoint and for ollama --scoring (default: llama-server on PATH)"},
	}
}

// openCheckpoint loads t.Checkpoint into the server --backend names. The backend it returns has a
// Close that removes everything loading made; every action defers closeBackend.
func openCheckpoint(c *cli.Context, key *verifier.Key, t target) (backend.Backend, error) {
	if t.Model != "" {
		return nil, fmt.Errorf("give --model or --checkpoint, not both")
	}
	opt := checkpoint.Options{
		Slots: c.Int("parallel"), Path: t.Checkpoint, Quantize: t.Quantize, LlamaQuantize: c.String("llama-quantize"), Base: c.String("base"), Backend: c.String("backend"),
		URL: c.String("url"), LlamaServer: c.String("llama-server"), Keep: c.Bool("keep"),
		HTTPClient: httpClient(c),
	}
	// Notes go to stderr unless --quiet; --keep always says what it kept.
	if !c.Bool("quiet") || opt.Keep {
		opt.Log = c.App.ErrWriter
	}
	if opt.Backend == "ollama" && opt.URL == "" {
		opt.URL = backend.OllamaURL()
	}
	if opt.Backend == "llamacpp" && opt.URL != "" {
		return nil, fmt.Errorf("--url and --checkpoint: with llamacpp, vtune starts its own llama-server for the checkpoint")
	}
	// When verifying, the checkpoint must match the key's base: template, vocabulary, signatures.
	if key != nil {
		opt.Expect = expectFromKey(key)
	}
	m, err := checkpoint.Open(c.Context, opt)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// withScorer pairs an Ollama model with a llama-server on its own GGUF file, which teacher-forces
// signatures and whole-data records exactly in one request each (--scoring). In auto mode a model that cannot have
// one (no llama-server, a server on another machine, a file llama.cpp cannot load) is scored
// through Ollama, with a note saying why.
func withScorer(c *cli.Context, key *verifier.Key, b backend.Backend, t target) (backend.Backend, error) {
	mode := c.String("scoring")
	switch {
	case mode == "server":
		return b, nil
	case mode != "auto" && mode != "llama-server":
		closeBackend(c.App.ErrWriter, b)
		return nil, fmt.Errorf("--scoring %q: want auto, server or llama-server", mode)
	case key != nil && key.WholeData == nil && !c.Bool("llr"):
		return b, nil // nothing will be scored
	}
	if _, err := b.Info(c.Context); err != nil {
		return b, nil // the command reports it, as for any model
	}
	opt := checkpoint.Options{
		URL: c.String("url"), LlamaServer: c.String("llama-server"), HTTPClient: httpClient(c),
	}
	if opt.URL == "" {
		opt.URL = backend.OllamaURL()
	}
	if !c.Bool("quiet") {
		opt.Log = c.App.ErrWriter
	}
	if key != nil {
		opt.Expect = expectFromKey(key)
		opt.Expect.Template = "" // llama-server scores text already rendered by Ollama's template
	}
	name := t.Model
	if m, ok := b.(*checkpoint.Model); ok {
		name = m.Name
	}
	s, err := checkpoint.OpenOllamaScorer(c.Context, opt, name)
	if err == nil {
		note(c, "scoring records exactly through llama-server on %s", s.Provenance.Checkpoint)
		return &backend.Split{Backend: b, Scorer: s}, nil
	}
	if mode == "llama-server" || c.Context.Err() != nil {
		closeBackend(c.App.ErrWriter, b)
		return nil, err
	}
	note(c, "scoring records through Ollama, one request a token (slow; --scoring says more): %s", flagError(err))
	return b, nil
}

// note prints a one-line note on stderr unless --quiet.
func note(c *cli.Context, format string, args ...any) {
	if !c.Bool("quiet") {
		fmt.Fprintf(c.App.ErrWriter, "vtune: "+format+"\n", args...)
	}
}

// closeBackend releases what opening the backend made (a loaded checkpoint, a scorer); a failure
// to clean up is reported but does not change the exit code the command earned.
func closeBackend(w io.Writer, b backend.Backend) {
	if s, ok := b.(*backend.Split); ok {
		closeBackend(w, s.Scorer)
		b = s.Backend
	}
	if cl, ok := b.(io.Closer); ok {
		if err := cl.Close(); err != nil {
			fmt.Fprintf(w, "vtune: cleaning up: %v\n", err)
		}
	}
}

// expectFromKey takes what a checkpoint must match from a key: the base's template (only an Ollama
// key holds an Ollama Go template; llama.cpp's is Jinja), its vocabulary size, and the signature
// tokens, each of which must be one token of the checkpoint's vocabulary.
func expectFromKey(k *verifier.Key) checkpoint.Expect {
	e := checkpoint.Expect{Vocab: k.Base.Vocab}
	if k.Base.Backend == "ollama" {
		e.Template = k.Base.Template
	}
	seen := map[string]bool{}
	for _, g := range k.Groups {
		for _, t := range g.Tokens {
			if !seen[t] {
				seen[t] = true
				e.Pieces = append(e.Pieces, t)
			}
		}
	}
	return e
}

// provenanceOf returns, for the report, the provenance of a loaded checkpoint; nil for a model
// named on a server.
func provenanceOf(b backend.Backend) *verifier.Provenance {
	if s, ok := b.(*backend.Split); ok {
		b = s.Backend
	}
	m, ok := b.(*checkpoint.Model)
	if !ok {
		return nil
	}
	p := m.Provenance
	files := make([]verifier.CheckpointFile, len(p.Files))
	for i, f := range p.Files {
		files[i] = verifier.CheckpointFile(f)
	}
	return &verifier.Provenance{
		Checkpoint: p.Checkpoint, Format: p.Format, Architecture: p.Architecture, Base: p.Base,
		Files: files, Server: p.Server, ServerVersion: p.ServerVersion,
		Placement: p.Placement, Offload: p.Offload, Quantization: p.Quantization,
	}
}
