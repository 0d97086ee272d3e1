package verifier

import (
	"runtime/debug"
	"testing"
)

// gcPercent reads the collector's setting without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// Overlapping Plants share the process's setting: it stays tight until the last one restores it,
// and the user's setting comes back, whatever the order of the restores; a restore called twice
// counts once.
func TestTightenGCOverlapping(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	a := tightenGC()
	b := tightenGC()
	if got := gcPercent(); got != gcPercentLarge {
		t.Fatalf("after two tightenGC: GOGC %d, want %d", got, gcPercentLarge)
	}
	a()
	a()
	if got := gcPercent(); got != gcPercentLarge {
		t.Fatalf("one Plant still holds the setting: GOGC %d, want %d", got, gcPercentLarge)
	}
	b()
	if got := gcPercent(); got != 150 {
		t.Fatalf("after both restores: GOGC %d, want the user's 150", got)
	}
	debug.SetGCPercent(10) // a lower setting of the user's is kept
	c := tightenGC()
	if got := gcPercent(); got != 10 {
		t.Errorf("tightenGC raised the user's GOGC 10 to %d", got)
	}
	c()
}
