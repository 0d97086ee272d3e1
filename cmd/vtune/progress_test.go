package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the progress ticker and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// After a few seconds of silence (here 50 ms) the progress line says vtune is waiting for the
// server, and it says nothing of the kind while news keeps coming.
func TestProgressSaysWhatItWaitsFor(t *testing.T) {
	var out syncBuffer
	p := startProgress(&out, true, 50*time.Millisecond)
	p.update("querying model", 1, 12)
	if strings.Contains(out.String(), "waiting") {
		t.Fatalf("waiting before any silence: %q", out.String())
	}
	time.Sleep(300 * time.Millisecond)
	p.end()
	s := out.String()
	if !strings.Contains(s, "querying model") || !strings.Contains(s, "(waiting for the server: ") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("after silence: %q", s)
	}
	n := len(out.String())
	time.Sleep(150 * time.Millisecond)
	if len(out.String()) != n {
		t.Fatal("drawing after end")
	}
}
