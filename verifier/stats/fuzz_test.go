package stats

import (
	"math"
	"testing"
)

// The fuzz targets feed random valid inputs to the p-values and check what must hold whatever the
// input: a log-probability in [-Inf, 0], never NaN, and monotone in the evidence.

// checkLogP fails unless lp is a log-probability.
func checkLogP(t *testing.T, what string, lp float64) {
	t.Helper()
	if math.IsNaN(lp) || lp > 0 {
		t.Fatalf("%s = %v, not a log-probability", what, lp)
	}
}

// notAbove reports whether a <= b up to rounding: the functions are exact up to floating point.
func notAbove(a, b float64) bool {
	return a <= b || a-b <= 1e-9*(1+math.Abs(b))
}

// logProbOf maps a byte to a log-probability spanning -Inf, tiny values and values near 0.
func logProbOf(b byte) float64 {
	if b == 0 {
		return math.Inf(-1)
	}
	d := float64(255 - b)
	return -d * d / 32
}

// agnosticGroups decodes groups as planting makes them: log Q_j = -L log k (k >= 2, L >= 1), m_j
// queried prompts, a hit flag; three bytes a group, at most 64 groups.
func agnosticGroups(data []byte) []AgnosticGroup {
	var gs []AgnosticGroup
	for i := 0; i+2 < len(data) && len(gs) < 64; i += 3 {
		sigLen, k := 1+int(data[i]%32), 2+int(data[i+1]%15)
		gs = append(gs, AgnosticGroup{
			LogQ:    -float64(sigLen) * math.Log(float64(k)),
			Queries: 1 + int(data[i+2]%16),
			Hit:     data[i+2]&0x80 != 0,
		})
	}
	return gs
}

// FuzzLogAgnostic: p_agnostic is a probability, and one more hit never makes it larger.
func FuzzLogAgnostic(f *testing.F) {
	f.Add([]byte{23, 6, 0x81, 23, 6, 0x00, 23, 6, 0x80})
	f.Add([]byte{0, 0, 0x8f, 0, 0, 0x0f})
	f.Add([]byte{31, 14, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		gs := agnosticGroups(data)
		lp := LogAgnostic(gs)
		checkLogP(t, "log p_agnostic", lp)
		for j := range gs {
			if gs[j].Hit {
				continue
			}
			gs[j].Hit = true
			more := LogAgnostic(gs)
			gs[j].Hit = false
			if !notAbove(more, lp) {
				t.Fatalf("group %d (log Q %v, m %d) hitting too raises log p from %v to %v", j, gs[j].LogQ, gs[j].Queries, lp, more)
			}
		}
	})
}

// FuzzLogPoissonBinomialTail: the tail is a probability, smaller at a higher count, and no smaller
// when a trial becomes certain.
func FuzzLogPoissonBinomialTail(f *testing.F) {
	f.Add([]byte{255, 128, 1, 0}, int16(2))
	f.Add([]byte{200, 200, 200, 200, 200, 200, 200, 200}, int16(8))
	f.Add([]byte{}, int16(0))
	f.Fuzz(func(t *testing.T, data []byte, h int16) {
		if len(data) > 300 {
			data = data[:300]
		}
		logp := make([]float64, len(data))
		for i, b := range data {
			logp[i] = logProbOf(b)
		}
		tail := LogPoissonBinomialTail(logp, int(h))
		checkLogP(t, "log tail", tail)
		if next := LogPoissonBinomialTail(logp, int(h)+1); !notAbove(next, tail) {
			t.Fatalf("P(X >= %d) = %v above P(X >= %d) = %v", h+1, next, h, tail)
		}
		if len(logp) > 0 {
			i := int(uint16(h)) % len(logp)
			old := logp[i]
			logp[i] = 0
			if sure := LogPoissonBinomialTail(logp, int(h)); !notAbove(tail, sure) {
				t.Fatalf("trial %d made certain (from %v): tail fell from %v to %v", i, old, tail, sure)
			}
		}
	})
}

// FuzzLogBase: p_base is a probability, and one more hit never makes it larger.
func FuzzLogBase(f *testing.F) {
	f.Add([]byte{100, 0x80, 120, 0x01, 255, 0x81})
	f.Add([]byte{0, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		var gs []BaseGroup
		for i := 0; i+1 < len(data) && len(gs) < 64; i += 2 {
			g := BaseGroup{Hit: data[i+1]&0x80 != 0}
			for q := range int(data[i+1] % 4) { // 0 to 3 stored prompts
				g.LogBase = append(g.LogBase, logProbOf(data[i]-byte(q)))
			}
			gs = append(gs, g)
		}
		lp := LogBase(gs)
		checkLogP(t, "log p_base", lp)
		for j := range gs {
			if !gs[j].Hit {
				gs[j].Hit = true
				if more := LogBase(gs); !notAbove(more, lp) {
					t.Fatalf("group %d hitting too raises log p_base from %v to %v", j, lp, more)
				}
				gs[j].Hit = false
			}
		}
	})
}

// FuzzWholeData: p_data(f0) is a probability, never larger at a larger X nor at a smaller f0, and
// the lower bound on the share is in [0, 1] and never smaller at a larger X.
func FuzzWholeData(f *testing.F) {
	f.Add(uint16(256), uint16(256), uint16(231), uint16(182), uint16(32768), uint8(12))
	f.Add(uint16(32), uint16(32), uint16(29), uint16(32), uint16(0), uint8(0))
	f.Add(uint16(1), uint16(1), uint16(1), uint16(0), uint16(65535), uint8(39))
	f.Fuzz(func(t *testing.T, b, c, k, x, f0raw uint16, lvl uint8) {
		nb, nc := 1+int(b%300), 1+int(c%300)
		nk, nx := 1+int(k)%nb, int(x)%(nc+1)
		f0 := float64(f0raw) / math.MaxUint16
		level := math.Pow(10, -float64(lvl%40)/4) // 1 down to 1e-10
		w, err := NewWholeData(nb, nc, nk, nx)
		if err != nil {
			t.Fatal(err)
		}
		lp := w.LogP(f0)
		checkLogP(t, "log p_data", lp)
		if higher := w.LogP(f0 + (1-f0)/2); !notAbove(lp, higher) {
			t.Fatalf("b %d c %d k %d X %d: log p_data(%v) = %v above log p_data at a larger f0, %v", nb, nc, nk, nx, f0, lp, higher)
		}
		share := w.LowerShare(level)
		if !(share >= 0 && share <= 1) {
			t.Fatalf("lower share %v", share)
		}
		if nx == nc {
			return
		}
		w1, err := NewWholeData(nb, nc, nk, nx+1)
		if err != nil {
			t.Fatal(err)
		}
		if lp1 := w1.LogP(f0); !notAbove(lp1, lp) {
			t.Fatalf("b %d c %d k %d f0 %v: log p_data %v at X = %d, above %v at X = %d", nb, nc, nk, f0, lp1, nx+1, lp, nx)
		}
		if s1 := w1.LowerShare(level); s1 < share-lowerShareTol {
			t.Fatalf("b %d c %d k %d level %v: lower share %v at X = %d, below %v at X = %d", nb, nc, nk, level, s1, nx+1, share, nx)
		}
	})
}
