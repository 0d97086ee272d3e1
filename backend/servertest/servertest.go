// Package servertest starts the real model servers that integration tests talk to, through the
// project's own scripts (scripts/ollama.sh, scripts/llamacpp.sh), each test binary with a private
// server on a free loopback port that is stopped when the tests end.
//
// When a server binary is not installed, tests that need it skip, unless VTUNE_REQUIRE_SERVERS is
// set (make test sets it after installing them), in which case they fail: CI must never pass by
// skipping.
package servertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Root returns the repository root: the nearest folder above the working directory with a go.mod.
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("servertest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// OllamaBinary is where scripts/install-ollama.sh puts the server.
func OllamaBinary() string { return filepath.Join(Root(), ".tools/ollama/v0.17.4/bin/ollama") }

// Model returns the path of a bundled model file under testdata/models.
func Model(name string) string { return filepath.Join(Root(), "testdata/models", name) }

// unavailable skips or fails the test when something it needs is missing.
func unavailable(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("VTUNE_REQUIRE_SERVERS") != "" {
		t.Fatalf("%s (VTUNE_REQUIRE_SERVERS is set, so this fails instead of skipping)", what)
	}
	t.Skipf("%s; run `make test` to install it", what)
}

// Ollama is a private Ollama server.
type Ollama struct {
	URL   string
	state string
	mu    sync.Mutex
	made  map[string]bool
}

var (
	ollamaOnce sync.Once
	ollama     *Ollama
	ollamaErr  error
)

// StartOllama returns the test binary's private Ollama server, starting it on first use. Call
// StopAll from TestMain after the tests.
func StartOllama(t testing.TB) *Ollama {
	t.Helper()
	if _, err := os.Stat(OllamaBinary()); err != nil {
		unavailable(t, "Ollama server not built ("+OllamaBinary()+")")
	}
	ollamaOnce.Do(func() {
		state, err := os.MkdirTemp("", "vtune-ollama-")
		if err != nil {
			ollamaErr = err
			return
		}
		o := &Ollama{state: state, made: map[string]bool{}}
		out, err := o.script("start")
		if err != nil {
			ollamaErr = err
			return
		}
		o.URL = strings.TrimSpace(out)
		ollama = o
	})
	if ollamaErr != nil {
		t.Fatalf("starting Ollama: %v", ollamaErr)
	}
	return ollama
}

func (o *Ollama) script(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(Root(), "scripts/ollama.sh"), args...)
	// The script's watcher stops the server and removes its state when this test binary exits,
	// even when a timeout kills it before StopAll.
	cmd.Env = append(os.Environ(), "VTUNE_OLLAMA_STATE="+o.state,
		"OLLAMA_WATCH_PID="+strconv.Itoa(os.Getpid()), "OLLAMA_WATCH_CLEAN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/ollama.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Create loads a bundled model into the server under name from its Modelfile in testdata/models
// (once per server), and returns name.
func (o *Ollama) Create(t testing.TB, name, modelfile string) string {
	t.Helper()
	return o.CreateFrom(t, name, Model(modelfile))
}

// CreateFrom is Create with the Modelfile's path given whole.
func (o *Ollama) CreateFrom(t testing.TB, name, mf string) string {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.made[name] {
		return name
	}
	if _, err := os.Stat(mf); err != nil {
		unavailable(t, "model "+mf+" missing")
	}
	if _, err := o.script("create", name, mf); err != nil {
		t.Fatal(err)
	}
	o.made[name] = true
	return name
}

// Main runs a test binary's tests and then stops the servers they started: a package whose tests
// use these servers calls it from its TestMain.
func Main(m *testing.M) {
	code := m.Run()
	StopAll()
	os.Exit(code)
}

// StopAll stops the servers this test binary started and removes their state.
func StopAll() {
	if ollama != nil {
		ollama.script("stop")
		os.RemoveAll(ollama.state)
	}
	stopLlamaCpps()
}

// OllamaModels returns the names of the models on the Ollama server at url that start with
// prefix: tests look for temporary models a checkpoint load left behind.
func OllamaModels(t testing.TB, url, prefix string) []string {
	t.Helper()
	resp, err := http.Get(url + "/api/tags")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tags struct{ Models []struct{ Name string } }
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		t.Fatalf("%s/api/tags: %v", url, err)
	}
	var names []string
	for _, m := range tags.Models {
		if strings.HasPrefix(m.Name, prefix) {
			names = append(names, m.Name)
		}
	}
	return names
}
