package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/sdk/images"
)

// progressPrinter shows pull and push progress: on a terminal, one line
// per blob redrawn in place (bytes, rate, ETA); otherwise plain lines, one
// per phase change and at most one every few seconds per blob while bytes
// flow. Quiet prints nothing.
type progressPrinter struct {
	out   io.Writer
	tty   bool
	quiet bool

	mu      sync.Mutex
	order   []string
	blobs   map[string]*blobProgress
	drawn   int // lines drawn last time (tty)
	lastDrw time.Time
}

type blobProgress struct {
	images.Progress
	started   time.Time
	lastPrint time.Time
}

func newProgressPrinter(f *os.File, quiet bool) *progressPrinter {
	st, err := f.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	return &progressPrinter{out: f, tty: tty, quiet: quiet, blobs: map[string]*blobProgress{}}
}

func (p *progressPrinter) update(u images.Progress) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.blobs[u.ID]
	if !ok {
		b = &blobProgress{}
		p.blobs[u.ID] = b
		p.order = append(p.order, u.ID)
	}
	phaseChanged := b.Phase != u.Phase
	if u.Phase == images.PhaseDownloading || u.Phase == images.PhaseUploading || u.Phase == images.PhaseUnpacking {
		if phaseChanged || b.started.IsZero() {
			b.started = time.Now()
		}
	}
	b.Progress = u
	if p.tty {
		if phaseChanged || time.Since(p.lastDrw) > 100*time.Millisecond {
			p.redraw()
		}
		return
	}
	if phaseChanged || time.Since(b.lastPrint) > 5*time.Second {
		b.lastPrint = time.Now()
		fmt.Fprintln(p.out, b.line())
	}
}

// finish draws the final state.
func (p *progressPrinter) finish() {
	if p.quiet || !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redraw()
}

func (p *progressPrinter) redraw() {
	p.lastDrw = time.Now()
	var sb strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", p.drawn)
	}
	for _, id := range p.order {
		sb.WriteString("\x1b[2K")
		sb.WriteString(p.blobs[id].line())
		sb.WriteByte('\n')
	}
	p.drawn = len(p.order)
	fmt.Fprint(p.out, sb.String())
}

func (b *blobProgress) line() string {
	id := b.ID
	if strings.HasPrefix(id, "sha256:") {
		id = shortID(id)
	}
	switch b.Phase {
	case images.PhaseDownloading, images.PhaseUploading, images.PhaseUnpacking:
		s := fmt.Sprintf("%s: %-11s %s", id, b.Phase, humanSize(b.Current))
		if b.Total > 0 {
			s += " / " + humanSize(b.Total)
		}
		if el := time.Since(b.started).Seconds(); el > 0.2 && b.Current > 0 {
			rate := float64(b.Current) / el
			s += fmt.Sprintf("  %s/s", humanSize(int64(rate)))
			if b.Total > b.Current {
				s += fmt.Sprintf("  ETA %s", (time.Duration(float64(b.Total-b.Current)/rate) * time.Second).Round(time.Second))
			}
		}
		return s
	case images.PhaseDone, images.PhaseExists, images.PhaseUnpacked:
		return fmt.Sprintf("%s: %-11s %s", id, b.Phase, humanSize(b.Total))
	}
	return fmt.Sprintf("%s: %s", id, b.Phase)
}
