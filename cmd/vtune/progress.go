package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on a terminal, and nothing when stderr is a file or pipe (logs of
// scripts stay clean; --quiet turns it off on a terminal too).
type progress struct {
	w       io.Writer
	on      bool
	stage   string
	last    time.Time
	started time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, on: !quiet && ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) update(stage string, done, total int) {
	if !p.on {
		return
	}
	now := time.Now()
	if stage != p.stage {
		if p.stage != "" {
			fmt.Fprintln(p.w)
		}
		p.stage, p.started = stage, now
	} else if now.Sub(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.last = now
	el := now.Sub(p.started).Truncate(100 * time.Millisecond)
	if total <= 0 {
		fmt.Fprintf(p.w, "\r%s... %d  %v", stage, done, el)
		return
	}
	const width = 30
	n := min(width, done*width/total)
	fmt.Fprintf(p.w, "\r%-18s [%s%s] %d/%d  %v", stage, strings.Repeat("=", n), strings.Repeat(" ", width-n), done, total, el)
}

// end finishes the bar's line.
func (p *progress) end() {
	if p.on && p.stage != "" {
		fmt.Fprintln(p.w)
		p.stage = ""
	}
}
