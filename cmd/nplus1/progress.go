package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nplus1/nplus1/analyzer"
)

// progress is the replay's progress display on stderr: how far the input
// has been read and how many statements have been analyzed.
type progress struct {
	w          io.Writer
	bar        bool // redrawn in place; else a line each interval
	total      int64
	bytesRead  func() int64
	statements *atomic.Int64
	began      time.Time
	drawn      bool
}

// startProgress shows progress on w until the returned function is called:
// with mode "bar" a bar redrawn in place (every 200 ms), with "lines" a
// plain line every 10 seconds, with "auto" the bar on a terminal and lines
// otherwise, with "off" nothing. total is the input's size; bytesRead and
// statements are read from the display's goroutine.
func startProgress(mode string, w io.Writer, total int64, bytesRead func() int64, statements *atomic.Int64) (stop func()) {
	if mode == "auto" {
		mode = "lines"
		if analyzer.IsTerminal(w) {
			mode = "bar"
		}
	}
	if mode == "off" {
		return func() {}
	}
	p := &progress{w: w, bar: mode == "bar", total: total, bytesRead: bytesRead, statements: statements, began: time.Now()}
	interval := 10 * time.Second
	if p.bar {
		interval = 200 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if p.drawn {
					p.draw(true)
				}
				return
			case <-t.C:
				p.draw(false)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// draw shows the progress once; final ends the bar's line.
func (p *progress) draw(final bool) {
	n := p.statements.Load()
	read := p.bytesRead()
	el := time.Since(p.began).Seconds()
	rate := float64(n) / max(el, 1e-9)
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(read)/float64(p.total), 1)
	}
	if !p.bar {
		if !final {
			fmt.Fprintf(p.w, "nplus1 replay: %.0f%% (%s of %s), %s, %.0f/s\n", 100*frac, sizeStr(read), sizeStr(p.total), plural(n, "statement", "statements"), rate)
		}
		return
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	eta := ""
	if frac > 0 && frac < 1 && !final {
		eta = fmt.Sprintf(" ETA %s", (time.Duration(el/frac*(1-frac)) * time.Second).Round(time.Second))
	}
	fmt.Fprintf(p.w, "\r\x1b[K[%s] %3.0f%% %s/%s %s %.0f/s%s", bar, 100*frac, sizeStr(read), sizeStr(p.total), plural(n, "statement", "statements"), rate, eta)
	p.drawn = true
	if final {
		fmt.Fprintln(p.w)
	}
}

// sizeStr is a byte count for people: 1.5 GB, 12.0 MB, 3.2 KB, 512 B.
func sizeStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
