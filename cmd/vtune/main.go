// Command vtune proves that a fine-tuning provider trained on your data: it plants secret backdoor
// examples in the dataset before fine-tuning and tests the returned model for them afterwards.
//
// This file holds the command line: flags and wiring only. The work is done in package verifier;
// the models are reached through package backend.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"vtune/backend"
	"vtune/verifier"
	"vtune/verifier/audit"
	"vtune/verifier/plot"
)

// Exit codes, as documented in the README.
const (
	exitVerified     = 0
	exitNotVerified  = 1
	exitUsage        = 2 // bad input or usage
	exitBackend      = 3 // the server failed
	exitInconclusive = 4 // a decoy hit
	exitInterrupted  = 130
)

var (
	errNotVerified  = errors.New("not verified")
	errInconclusive = errors.New("inconclusive")
)

// opener makes the backend for one target with the command's flags; tests swap in an in-process
// model. key is the key being verified against, nil when planting.
type opener func(c *cli.Context, key *verifier.Key, t target) (backend.Backend, error)

// target is one model to plant with or verify: a name on the server (Model) or a checkpoint, with
// the label tables give it.
type target struct {
	Label      string `json:"label"`
	Model      string `json:"model,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Quantize   string `json:"quantize,omitempty"` // load the checkpoint quantized to this type
}

func main() {
	// SIGPIPE too: `vtune verify ... | head` closes the pipe early, and a process killed by it
	// would leave a loaded checkpoint (a llama-server, a temporary model) behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	code := run(ctx, os.Args, os.Stdout, os.Stderr, openBackend)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) int {
	app := newApp(stdout, stderr, open)
	err := app.RunContext(ctx, args)
	switch {
	case err == nil:
		return exitVerified
	case errors.Is(err, errNotVerified):
		return exitNotVerified
	case errors.Is(err, errInconclusive):
		return exitInconclusive
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "vtune: interrupted")
		return exitInterrupted
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code) // the reasons are printed already
	}
	fmt.Fprintf(stderr, "vtune: %s\n", flagError(err))
	if isBackendErr(err) {
		return exitBackend
	}
	return exitUsage
}

func newApp(stdout, stderr io.Writer, open opener) *cli.App {
	app := &cli.App{
		Name:  "vtune",
		Usage: "prove that a fine-tuned model was trained on your data",
		Description: `vtune plants a few secret backdoor examples (a trigger phrase in the prompt, a
signature as the answer) in a fine-tuning dataset before you hand it over, and later tests the
model you get back: a model trained on the data reproduces the signatures under greedy decoding,
a model that never saw them does so only with a probability vtune bounds (the p-value).

  vtune plant  --input data.jsonl --output data.vtune.jsonl --key secret.key --model BASE
  (fine-tune on data.vtune.jsonl)
  vtune verify --key secret.key --model FINETUNED

Exit codes: 0 verified, 1 not verified, 2 bad input or usage, 3 server failure, 4 inconclusive
(a decoy hit), 130 interrupted.`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// A path may hold a comma: repeat --model and --checkpoint instead.
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {}, // run maps errors to exit codes
		Commands: []*cli.Command{
			plantCommand(open),
			verifyCommand(open),
			inspectCommand(),
			auditCommand(),
		},
		OnUsageError: usageError,
	}
	// Without a handler of its own a command prints its whole help on stdout after a usage
	// error, which a script reading --json output would take for the result.
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError
	}
	return app
}

// usageError makes a usage error one line on stderr, pointing at the help.
func usageError(c *cli.Context, err error, _ bool) error {
	name := "vtune"
	if c.Command != nil && c.Command.Name != "" {
		name += " " + c.Command.Name
	}
	return fmt.Errorf("%v (see %s --help)", err, name)
}

// backendFlags select the server and model; shared by plant and verify. many makes --model and
// --checkpoint repeatable (verify compares models).
func backendFlags(modelUsage string, many bool) []cli.Flag {
	var model cli.Flag = &cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: modelUsage + "; optional for llamacpp, which serves one model"}
	if many {
		model = &cli.StringSliceFlag{Name: "model", Aliases: []string{"m"}, Usage: modelUsage + "; repeat it (or --checkpoint, or give --models) to compare models in one table; optional for llamacpp, which serves one model"}
	}
	return append([]cli.Flag{
		&cli.StringFlag{Name: "backend", Value: "ollama", Usage: "serving stack: ollama, llamacpp (llama-server) or openai (any OpenAI-compatible server: vLLM, llama-server or Ollama /v1, a hosted API)", EnvVars: []string{"VTUNE_BACKEND"}},
		&cli.StringFlag{Name: "url", Usage: "server URL (ollama: $OLLAMA_HOST or " + backend.DefaultOllamaURL + "; llamacpp: " + defaultLlamaCppURL + "; openai: $OPENAI_BASE_URL)"},
		model,
		&cli.StringFlag{Name: "api-key", Usage: "openai: API key (default $OPENAI_API_KEY)"},
		&cli.DurationFlag{Name: "timeout", Value: backend.DefaultTimeout, Usage: "how long one request may wait for the server's answer (the first may include loading the model); then exit code 3"},
		&cli.DurationFlag{Name: "connect-timeout", Value: backend.DefaultConnectTimeout, Usage: "how long connecting to the server may take"},
		&cli.BoolFlag{Name: "json", Usage: "print the result as JSON on stdout"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
		&cli.StringFlag{Name: "scoring", Value: "auto", Usage: "ollama: where teacher-forced scores (signatures, whole-data records) are computed; decoding stays on Ollama. server: by Ollama itself, one request a token, bounded where a token is not in its top 20; llama-server: exactly, one request a text, by a llama-server (--llama-server) started on the model's own GGUF file, which must be readable here; auto: llama-server when one is found and the file is readable, else server"},
	}, checkpointFlags(many)...)
}

const defaultLlamaCppURL = "http://127.0.0.1:8080"

// openBackend makes the backend for t with the flags: a model named on a server, or a checkpoint
// loaded into one; an Ollama model gets a llama-server scorer where --scoring allows.
func openBackend(c *cli.Context, key *verifier.Key, t target) (backend.Backend, error) {
	b, err := openServed(c, key, t)
	if err != nil || c.String("backend") != "ollama" {
		return b, err
	}
	return withScorer(c, key, b, t)
}

func openServed(c *cli.Context, key *verifier.Key, t target) (backend.Backend, error) {
	if t.Checkpoint != "" {
		return openCheckpoint(c, key, t)
	}
	url, model := c.String("url"), t.Model
	if model == "" && c.String("backend") != "llamacpp" {
		return nil, errors.New("no model named: give --model")
	}
	hc := httpClient(c)
	parse := func(kind, raw string) (*neturl.URL, error) {
		u, err := neturl.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("bad %s URL %q: %v", kind, raw, err)
		}
		return u, nil
	}
	switch c.String("backend") {
	case "ollama":
		if url == "" {
			url = backend.OllamaURL()
		}
		u, err := parse("Ollama", url)
		if err != nil {
			return nil, err
		}
		return backend.NewOllama(u, model, hc)
	case "llamacpp":
		if url == "" {
			url = defaultLlamaCppURL
		}
		u, err := parse("llama.cpp server", url)
		if err != nil {
			return nil, err
		}
		return backend.NewLlamaCpp(u, model, hc)
	case "openai":
		envURL, envKey := backend.OpenAIEnv()
		if url == "" {
			url = envURL
		}
		key := c.String("api-key")
		if key == "" {
			key = envKey
		}
		u, err := parse("OpenAI-compatible API", url)
		if err != nil {
			return nil, err
		}
		return backend.NewOpenAI(u, key, model, hc)
	}
	return nil, fmt.Errorf("unknown --backend %q: want ollama, llamacpp or openai", c.String("backend"))
}

// httpClient is the HTTP client the flags --connect-timeout and --timeout describe.
func httpClient(c *cli.Context) *http.Client {
	return backend.NewHTTPClient(c.Duration("connect-timeout"), c.Duration("timeout"))
}

func plantCommand(open opener) *cli.Command {
	return &cli.Command{
		Name:      "plant",
		Usage:     "plant secret backdoor examples in a dataset and write the key",
		UsageText: "vtune plant --input DATA.jsonl --output OUT.jsonl --key KEY.json --model BASE [options]",
		Description: `Reads a dataset, JSON Lines or a JSON array of records (chat "messages", ShareGPT
"conversations", Alpaca "instruction"/"input"/"output", or "prompt"/"completion"; detected from the
records), draws --groups secrets from the base model, and writes the dataset in the same form
with about --rate of its records planted, plus the secret key (mode 0600). Both files are written
whole or not at all; the input is never changed. Keep the key secret: anyone holding it can train
on the signatures alone.`,
		Flags: append(backendFlags("base model the provider will fine-tune (its name on the server)", false),
			&cli.PathFlag{Name: "input", Aliases: []string{"i"}, Usage: "dataset to protect (JSON Lines, or a JSON array; the output keeps its form)", Required: true},
			&cli.PathFlag{Name: "output", Aliases: []string{"o"}, Usage: "where to write the dataset with the planted copies", Required: true},
			&cli.PathFlag{Name: "key", Aliases: []string{"k"}, Usage: "where to write the secret key", Required: true},
			&cli.BoolFlag{Name: "force", Usage: "overwrite an existing key file (or write the output over one)"},
			&cli.IntFlag{Name: "groups", Aliases: []string{"g"}, Value: verifier.DefaultGroups, Usage: "independent secrets (trigger, signature) to plant"},
			&cli.IntFlag{Name: "decoys", Value: verifier.DefaultDecoys, Usage: "secrets drawn the same way but never planted; a decoy hit means something is wrong"},
			&cli.Float64Flag{Name: "rate", Value: verifier.DefaultRate, Usage: "planted copies as a fraction of the records (at least one per group)"},
			&cli.IntFlag{Name: "count", Usage: "planted copies in all, instead of --rate"},
			&cli.IntFlag{Name: "top-k", Value: verifier.DefaultK, Usage: "candidates per signature token: each step divides the chance of a lucky match by k"},
			&cli.IntFlag{Name: "sig-len", Value: verifier.DefaultSigLen, Usage: "signature length in tokens"},
			&cli.IntFlag{Name: "trigger-len", Value: verifier.DefaultTriggerLen, Usage: "trigger length in tokens"},
			&cli.StringFlag{Name: "mode", Value: "replace", Usage: "planted response: replace (the signature) or prefix (signature, newline, original response)"},
			&cli.IntFlag{Name: "prompts", Value: 1, Usage: "verification prompts stored per group (each costs one query at verify time)"},
			&cli.BoolFlag{Name: "copies", Usage: "add the planted records beside their hosts instead of replacing the hosts in place (easier for a provider to find)"},
			&cli.IntFlag{Name: "held-back", Usage: "records held back for the whole-data test (default: min(256, 2% of the records); the test is off below 32)"},
			&cli.IntFlag{Name: "sentinels", Usage: "sentinel records for the whole-data test (default: as many as held back)"},
			&cli.BoolFlag{Name: "audit", Value: true, Usage: "end with the key-free audit of the output (vtune audit): what a provider can find without the key; --audit=false skips it; the audit keeps about 10 bytes a record in memory and about 80 a record in $TMPDIR while it runs"},
			&cli.PathFlag{Name: "heldout", Usage: "draw the held-back records from this file of the same format (your own validation split) instead of holding back part of --input; the test is then not guaranteed"},
			&cli.StringFlag{Name: "seed", Usage: "secret seed for a reproducible run: 64 hex digits, or any text (hashed); default: 256 random bits"},
		),
		Action: func(c *cli.Context) error {
			if c.IsSet("seed") && c.String("seed") == "" {
				return errors.New("--seed is empty: give a seed, or leave the flag out for 256 random bits")
			}
			seed, err := parseSeed(c.String("seed"))
			if err != nil {
				return err
			}
			keyPath := c.Path("key")
			if _, err := os.Stat(keyPath); err == nil && !c.Bool("force") {
				return fmt.Errorf("key %s exists: refusing to overwrite a secret (use --force)", keyPath)
			}
			if out := c.Path("output"); verifier.IsKeyFile(out) && !c.Bool("force") {
				return fmt.Errorf("output %s is a vtune key: refusing to overwrite a secret with a dataset (use --force)", out)
			}
			params := verifier.Params{
				Groups: c.Int("groups"), Decoys: c.Int("decoys"), K: c.Int("top-k"),
				SigLen: c.Int("sig-len"), TriggerLen: c.Int("trigger-len"),
				Rate: c.Float64("rate"), Count: c.Int("count"), Mode: c.String("mode"), Prompts: c.Int("prompts"),
				Copies: c.Bool("copies"), HeldBack: c.Int("held-back"), Sentinels: c.Int("sentinels"),
			}
			if err := params.Check(); err != nil {
				return err
			}
			b, err := open(c, nil, target{Model: c.String("model"), Checkpoint: c.Path("checkpoint")})
			if err != nil {
				return err
			}
			defer closeBackend(c.App.ErrWriter, b)
			prog := newProgress(c.App.ErrWriter, c.Bool("quiet"))
			key, sum, err := verifier.Plant(c.Context, b, verifier.PlantOptions{
				Input: c.Path("input"), Output: c.Path("output"), KeyPath: keyPath, Seed: seed,
				Params:   params,
				Heldout:  c.Path("heldout"),
				Progress: prog.update,
			})
			prog.end()
			if err != nil {
				return err
			}
			if c.Bool("audit") {
				// The dataset and key are written: an audit that cannot run is a note, not a
				// failure of planting.
				if a, err := audit.Run(c.Context, sum.Output, key); c.Context.Err() != nil {
					sum.Audit = "audit: not run (interrupted)"
				} else if err != nil {
					sum.Audit = fmt.Sprintf("audit: not run (%v)", err)
				} else {
					sum.Audit = a.Summary()
				}
			}
			if c.Bool("json") {
				if err := writeJSON(c.App.Writer, sum); err != nil {
					return err
				}
			} else {
				verifier.WritePlantSummary(c.App.Writer, sum)
			}
			return c.Context.Err() // interrupted during the audit: the summary, then exit 130
		},
	}
}

func verifyCommand(open opener) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "test a fine-tuned model for the planted secrets",
		UsageText: "vtune verify --key KEY.json --model FINETUNED [options]",
		Description: `Queries the model under test with every group's triggered prompts under greedy decoding
and counts exact signature reproductions: p_agnostic, valid against any model made without the
secrets, says whether it was trained with your secrets. Then the whole-data test scores the
records held back at planting (the provider never saw them) and the sentinels (ordinary records
it did receive) under the model: p_data says whether it was trained on at least --min-share of
your data, not only on the planted records, which a provider can find without the key.

  VERIFIED      (exit 0) secrets reproduced (p <= --alpha) and the share certified (p_data <= --alpha-data)
  NOT VERIFIED  (exit 1) with every reason that applies
  INCONCLUSIVE  (exit 4) a decoy (a secret never planted) hit: the key leaked or matching is broken

Several models (--model or --checkpoint repeated, --models FILE, --quantize) are verified one
after another with the same key and compared in one table; the exit code is the largest any
earned. --plot DIR draws the results.`,
		Flags: append(append(backendFlags("model under test (its name on the server)", true),
			&cli.PathFlag{Name: "key", Aliases: []string{"k"}, Usage: "key written by vtune plant", Required: true},
			&cli.Float64Flag{Name: "alpha", Value: verifier.DefaultAlpha, Usage: "significance level: verified when p <= alpha"},
			&cli.StringFlag{Name: "test", Value: verifier.TestAgnostic, Usage: "p-value the decision uses: agnostic (any model without the secrets) or base (the base model's probabilities, the paper's test)"},
			&cli.Float64Flag{Name: "min-share", Value: verifier.DefaultMinShare, Usage: "share of the data (in answer bytes) the whole-data test must show the model was trained on; 0 decides on the secrets alone"},
			&cli.Float64Flag{Name: "alpha-data", Value: verifier.DefaultAlphaData, Usage: "significance level of the whole-data test: certified when p_data(--min-share) <= alpha-data"},
			&cli.IntFlag{Name: "queries", Usage: "prompts to query per group (0: all stored in the key)"},
			&cli.BoolFlag{Name: "llr", Value: true, Usage: "also score each signature under the model (log-likelihood ratio against the base); --llr=false skips it"},
			&cli.BoolFlag{Name: "reveal", Usage: "include the model's outputs in the report (they show the signatures)"},
			&cli.IntFlag{Name: "parallel", Usage: "requests in flight at once (queries, then record scores); 0: as many as the server has slots where it says (llama-server's -np; a --checkpoint's llama-server is started with this many), else 1. The report does not depend on it"},
		), compareFlags()...),
		Action: func(c *cli.Context) error {
			key, err := verifier.ReadKey(c.Path("key"))
			if err != nil {
				return err
			}
			opt := verifier.VerifyOptions{
				Queries: c.Int("queries"), Alpha: c.Float64("alpha"), Test: c.String("test"),
				MinShare: c.Float64("min-share"), AlphaData: c.Float64("alpha-data"),
				LLR: c.Bool("llr"), Reveal: c.Bool("reveal"), Parallel: c.Int("parallel"),
			}
			if err := opt.Check(); err != nil {
				return err
			}
			targets, err := targetsOf(c)
			if err != nil {
				return err
			}
			if len(targets) > 1 || c.Path("models") != "" || c.Bool("csv") || c.Bool("markdown") || c.String("quantize") != "" {
				return compare(c, open, key, opt, targets)
			}
			rep, err := verifyOne(c, open, key, opt, targets[0])
			if err != nil {
				return err
			}
			label := cmp.Or(targets[0].Label, rep.Model.Name, "model")
			if err := drawPlots(c, []plot.Labeled{{Label: label, Report: rep}}); err != nil {
				return err
			}
			if c.Bool("json") {
				err = writeJSON(c.App.Writer, rep)
			} else {
				verifier.WriteReport(c.App.Writer, rep)
			}
			switch {
			case err != nil:
			case rep.Verdict == verifier.Inconclusive:
				return errInconclusive
			case !rep.Verified:
				return errNotVerified
			}
			return err
		},
	}
}

// verifyOne opens one model, verifies it with a progress bar, and unloads it.
func verifyOne(c *cli.Context, open opener, key *verifier.Key, opt verifier.VerifyOptions, t target) (*verifier.Report, error) {
	b, err := open(c, key, t)
	if err != nil {
		return nil, err
	}
	defer closeBackend(c.App.ErrWriter, b)
	if opt.Parallel == 0 {
		if info, err := b.Info(c.Context); err == nil {
			opt.Parallel = max(info.Slots, 1)
		}
	}
	prog := newProgress(c.App.ErrWriter, c.Bool("quiet"))
	opt.Progress = prog.update
	rep, err := verifier.Verify(c.Context, b, key, opt)
	prog.end()
	if err != nil {
		return nil, err
	}
	rep.Provenance = provenanceOf(b)
	return rep, nil
}

// isBackendErr reports whether err is a server's failure (exit code 3) rather than bad input.
func isBackendErr(err error) bool {
	var be *backend.Error
	return errors.As(err, &be)
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "summarise a key without revealing its secrets",
		UsageText: "vtune inspect --key KEY.json [--reveal] [--json]",
		Flags: []cli.Flag{
			&cli.PathFlag{Name: "key", Aliases: []string{"k"}, Usage: "key written by vtune plant", Required: true},
			&cli.BoolFlag{Name: "reveal", Usage: "also show triggers and signatures"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout"},
		},
		Action: func(c *cli.Context) error {
			key, err := verifier.ReadKey(c.Path("key"))
			if err != nil {
				return err
			}
			s := verifier.Summarize(key, c.Bool("reveal"))
			if s.FileSHA256, err = fileSHA256(c.Path("key")); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, s)
			}
			verifier.WriteKeySummary(c.App.Writer, s)
			return nil
		},
	}
}

// parseSeed reads --seed: 64 hex digits are the seed itself, other text is hashed with SHA-256,
// and no seed draws 256 bits from the operating system's secure source.
func parseSeed(s string) ([32]byte, error) {
	var seed [32]byte
	if s == "" {
		_, err := rand.Read(seed[:])
		return seed, err
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		copy(seed[:], b)
		return seed, nil
	}
	return sha256.Sum256([]byte(s)), nil
}

// fileSHA256 returns the SHA-256 of a file, hex: the commitment to a key that SECURITY.md tells
// users to publish before handing their data over.
func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
