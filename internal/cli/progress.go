package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// newReporter returns a live per-service display on a terminal and plain
// time-stamped lines elsewhere (CI logs, pipes).
func newReporter(w io.Writer) progressReporter {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		return &ttyReporter{w: w, start: time.Now()}
	}
	return &lineReporter{w: w, start: time.Now()}
}

type progressReporter interface {
	Service(service, phase, detail string)
	Note(msg string)
	Done()
}

// lineReporter prints one line per change.
type lineReporter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (r *lineReporter) stamp() string {
	return fmt.Sprintf("[%5.1fs]", time.Since(r.start).Seconds())
}

func (r *lineReporter) Service(service, phase, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if detail != "" {
		fmt.Fprintf(r.w, "%s %-12s %s: %s\n", r.stamp(), service, phase, oneLine(detail))
		return
	}
	fmt.Fprintf(r.w, "%s %-12s %s\n", r.stamp(), service, phase)
}

func (r *lineReporter) Note(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, "%s %s\n", r.stamp(), msg)
}

func (r *lineReporter) Done() {}

// ttyReporter keeps one line per service and redraws them in place, with
// notes printed above.
type ttyReporter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	order []string
	lines map[string]string
	drawn int
}

func (r *ttyReporter) Service(service, phase, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lines == nil {
		r.lines = map[string]string{}
	}
	if _, ok := r.lines[service]; !ok {
		r.order = append(r.order, service)
	}
	mark := "…"
	switch phase {
	case "healthy", "restored":
		mark = "✓"
	case "failed":
		mark = "✗"
	}
	l := fmt.Sprintf(" %s %-12s %-22s", mark, service, phase)
	if detail != "" {
		l += " " + truncate(oneLine(detail), 70)
	}
	r.lines[service] = l
	r.redraw()
}

func (r *ttyReporter) Note(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clear()
	fmt.Fprintf(r.w, "%s\n", msg)
	r.draw()
}

func (r *ttyReporter) clear() {
	if r.drawn > 0 {
		fmt.Fprintf(r.w, "\x1b[%dA\x1b[J", r.drawn)
		r.drawn = 0
	}
}

func (r *ttyReporter) draw() {
	for _, s := range r.order {
		fmt.Fprintf(r.w, "%s\x1b[K\n", r.lines[s])
	}
	r.drawn = len(r.order)
}

func (r *ttyReporter) redraw() {
	r.clear()
	r.draw()
}

func (r *ttyReporter) Done() {}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
