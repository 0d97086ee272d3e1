package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on a terminal, and nothing when stderr is a file or pipe (logs of
// scripts stay clean; --quiet turns it off on a terminal too). After a few seconds without news
// the line says what vtune is waiting for, so a slow or silent server does not look like a hang.
// Safe for concurrent use: a ticker redraws the line while the work calls update.
type progress struct {
	w    io.Writer
	on   bool
	wait time.Duration // silence after which the line says vtune is waiting

	mu          sync.Mutex
	stage       string
	done, total int
	last        time.Time // last update from the work
	drawn       time.Time // last draw
	started     time.Time
	stop        chan struct{}
}

// waitNote is how long progress stays silent before saying what it waits for.
const waitNote = 5 * time.Second

func newProgress(w io.Writer, quiet bool) *progress {
	f, ok := w.(*os.File)
	return startProgress(w, !quiet && ok && term.IsTerminal(int(f.Fd())), waitNote)
}

func startProgress(w io.Writer, on bool, wait time.Duration) *progress {
	p := &progress{w: w, on: on, wait: wait, stop: make(chan struct{})}
	if on {
		go p.tick(min(wait/5, time.Second))
	}
	return p
}

// tick redraws the line while the work is silent.
func (p *progress) tick(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			if p.stage != "" && time.Since(p.last) >= p.wait {
				p.draw(time.Now())
			}
			p.mu.Unlock()
		}
	}
}

func (p *progress) update(stage string, done, total int) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if stage != p.stage {
		if p.stage != "" {
			fmt.Fprintln(p.w)
		}
		p.stage, p.started = stage, now
	} else if now.Sub(p.drawn) < 100*time.Millisecond && done != total {
		p.done, p.total, p.last = done, total, now
		return
	}
	p.done, p.total, p.last = done, total, now
	p.draw(now)
}

// draw writes the line; the caller holds mu.
func (p *progress) draw(now time.Time) {
	p.drawn = now
	el := now.Sub(p.started).Truncate(100 * time.Millisecond)
	wait := ""
	if silent := now.Sub(p.last); silent >= p.wait {
		wait = fmt.Sprintf("  (waiting for the server: %v without an answer)", silent.Truncate(time.Second))
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s... %d  %v%s", p.stage, p.done, el, wait)
		return
	}
	const width = 30
	n := min(width, p.done*width/p.total)
	fmt.Fprintf(p.w, "\r%-18s [%s%s] %d/%d  %v%s", p.stage, strings.Repeat("=", n), strings.Repeat(" ", width-n), p.done, p.total, el, wait)
}

// end finishes the bar's line and stops redrawing.
func (p *progress) end() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	if p.stage != "" {
		fmt.Fprintln(p.w)
		p.stage = ""
	}
}
