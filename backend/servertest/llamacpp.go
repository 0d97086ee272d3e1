package servertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// LlamaCppBinary is where scripts/llamacpp.sh install puts llama-server: inside the Debian sid
// chroot, which the script runs it under.
func LlamaCppBinary() string { return filepath.Join(Root(), ".tools/sid/usr/bin/llama-server") }

// UseLlamaServer hands vtune this repository's llama-server for the rest of the test: it sets
// VTUNE_LLAMA_SERVER (what --llama-server reads) to scripts/llama-server-chroot.sh, which runs the
// chroot's llama-server, VTUNE_LLAMA_QUANTIZE likewise to scripts/llama-quantize-chroot.sh, and
// LLAMACPP_THREADS to 1 (see StartLlamaCpp). vtune itself never looks for
// repository scripts. A missing install skips the test, or fails it under VTUNE_REQUIRE_SERVERS.
func UseLlamaServer(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(LlamaCppBinary()); err != nil {
		unavailable(t, "llama-server not installed ("+LlamaCppBinary()+"; scripts/llamacpp.sh install)")
	}
	cmd := filepath.Join(Root(), "scripts/llama-server-chroot.sh")
	t.Setenv("VTUNE_LLAMA_SERVER", cmd)
	t.Setenv("VTUNE_LLAMA_QUANTIZE", filepath.Join(Root(), "scripts/llama-quantize-chroot.sh"))
	t.Setenv("LLAMACPP_THREADS", "1")
	return cmd
}

// LlamaCpp is a private llama-server serving one GGUF file.
type LlamaCpp struct {
	URL   string // e.g. http://127.0.0.1:34567
	Name  string // the model's alias on the server: the file name without .gguf
	GGUF  string // the model file, absolute
	state string
}

type llamaStart struct {
	once sync.Once
	srv  *LlamaCpp
	err  error
}

var (
	llamaMu sync.Mutex
	llamas  = map[string]*llamaStart{} // by absolute model path
)

// StartLlamaCpp returns the test binary's private llama-server for the model file gguf (absolute,
// or relative to the working directory), starting it on first use with scripts/llamacpp.sh: its own
// state folder, a free loopback port, one thread (ggml's spinning workers make a tiny model far
// slower with two on a busy 2-core machine). The script's watcher stops the server when the test
// binary exits even if StopAll is never reached; call StopAll from TestMain all the same.
//
// A missing llama-server or model file skips the test, or fails it under VTUNE_REQUIRE_SERVERS.
func StartLlamaCpp(t testing.TB, gguf string) *LlamaCpp {
	t.Helper()
	abs, err := filepath.Abs(gguf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(LlamaCppBinary()); err != nil {
		unavailable(t, "llama-server not installed ("+LlamaCppBinary()+"; scripts/llamacpp.sh install)")
	}
	if _, err := os.Stat(abs); err != nil {
		unavailable(t, "model "+abs+" missing")
	}
	llamaMu.Lock()
	s := llamas[abs]
	if s == nil {
		s = &llamaStart{}
		llamas[abs] = s
	}
	llamaMu.Unlock()
	s.once.Do(func() { s.srv, s.err = startLlamaCpp(abs) })
	if s.err != nil {
		t.Fatalf("starting llama-server for %s: %v", abs, s.err)
	}
	return s.srv
}

// startLlamaCpp tries three times: on a loaded machine the script can take the server for dead
// while its process is still becoming llama-server (the name check in its alive), and give up at
// once; a second start then succeeds.
func startLlamaCpp(gguf string) (*LlamaCpp, error) {
	var errs []string
	for range 3 {
		state, err := os.MkdirTemp("", "vtune-llamacpp-")
		if err != nil {
			return nil, err
		}
		l := &LlamaCpp{Name: strings.TrimSuffix(filepath.Base(gguf), ".gguf"), GGUF: gguf, state: state}
		out, err := l.script(2*time.Minute, "start", gguf)
		if err == nil {
			l.URL = strings.TrimSpace(out)
			return l, nil
		}
		msg := err.Error()
		if log, _ := os.ReadFile(filepath.Join(state, "log")); len(log) > 0 {
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			msg += "; log ends: " + strings.Join(lines[max(0, len(lines)-3):], " | ")
		}
		errs = append(errs, msg)
		l.script(30*time.Second, "stop")
		os.RemoveAll(state)
	}
	return nil, fmt.Errorf("%d tries: %s", len(errs), strings.Join(errs, "; then "))
}

func (l *LlamaCpp) script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(Root(), "scripts/llamacpp.sh"), args...)
	cmd.Env = append(os.Environ(), "LLAMACPP_STATE="+l.state, "LLAMACPP_THREADS=1",
		"LLAMACPP_WATCH_PID="+strconv.Itoa(os.Getpid()))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/llamacpp.sh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// stopLlamaCpps stops every llama-server this test binary started and removes their state.
func stopLlamaCpps() {
	llamaMu.Lock()
	defer llamaMu.Unlock()
	for _, s := range llamas {
		if s.srv != nil {
			s.srv.script(30*time.Second, "stop")
			os.RemoveAll(s.srv.state)
		}
	}
}
