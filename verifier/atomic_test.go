package verifier

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestAtomicFileWriteback writes a file larger than writebackEvery in pieces: every byte arrives,
// in order, and the write-back is started once for each writebackEvery written, over what was
// written since the last start.
func TestAtomicFileWriteback(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "out.jsonl")
	f, err := createAtomic(dest, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	want := make([]byte, 2*writebackEvery+writebackEvery/2)
	for i := range want {
		want[i] = byte(i*7 + i>>13)
	}
	for b := want; len(b) > 0; {
		n := min(len(b), 100_000) // pieces that do not divide writebackEvery
		if k, err := f.Write(b[:n]); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		b = b[n:]
	}
	if f.written != int64(len(want)) {
		t.Errorf("written = %d, want %d", f.written, len(want))
	}
	if f.kicked < 2*writebackEvery || f.kicked >= 2*writebackEvery+100_000 {
		t.Errorf("write-back started up to byte %d, want 2 x %d and less than one piece more", f.kicked, writebackEvery)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the file's bytes differ from those written")
	}
}
