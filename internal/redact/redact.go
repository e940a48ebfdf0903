// Package redact keeps secret values out of what gantry says: a Redactor
// learns the values of the secrets a deployment mounts and replaces them by
// <redacted> in strings, errors, log records and output writers, wherever a
// value could surface (a container's last log lines after a failed health
// gate, a probe's output, an error that quotes a file).
package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Mask replaces a secret value.
const Mask = "<redacted>"

// MinLen is the shortest value a Redactor replaces: shorter ones would
// mangle every output they happen to occur in ("a", "01"). gantry warns
// when a secret is that short.
const MinLen = 4

// Redactor replaces known secret values. The zero value is not usable; a
// nil *Redactor redacts nothing. It is safe for concurrent use.
type Redactor struct {
	mu   sync.RWMutex
	seen map[string]bool
	rep  *strings.Replacer
}

// New returns a Redactor that knows no value yet.
func New() *Redactor { return &Redactor{seen: map[string]bool{}} }

// Add teaches the redactor a secret value: the value without surrounding
// white space (a file's trailing newline stays in the output, so lines stay
// lines), each of its lines (a multi-line key shows up in a log a line at a
// time), and each of those as it appears inside a JSON string.
func (r *Redactor) Add(value []byte) {
	if r == nil {
		return
	}
	v := strings.TrimSpace(string(value))
	forms := []string{v}
	for _, l := range strings.Split(v, "\n") {
		forms = append(forms, strings.TrimSpace(l))
	}
	for _, f := range forms[:len(forms):len(forms)] {
		if b, err := json.Marshal(f); err == nil {
			forms = append(forms, string(b[1:len(b)-1]))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	added := false
	for _, f := range forms {
		if len(f) >= MinLen && !r.seen[f] {
			r.seen[f] = true
			added = true
		}
	}
	if !added {
		return
	}
	all := make([]string, 0, len(r.seen))
	for f := range r.seen {
		all = append(all, f)
	}
	// Longest first: a value that contains another is masked whole.
	sort.Slice(all, func(i, j int) bool {
		if len(all[i]) != len(all[j]) {
			return len(all[i]) > len(all[j])
		}
		return all[i] < all[j]
	})
	pairs := make([]string, 0, 2*len(all))
	for _, f := range all {
		pairs = append(pairs, f, Mask)
	}
	r.rep = strings.NewReplacer(pairs...)
}

// Known says whether the redactor knows any value.
func (r *Redactor) Known() bool {
	if r == nil {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rep != nil
}

// String returns s with every known value replaced by Mask.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.rep
	r.mu.RUnlock()
	if rep == nil || s == "" {
		return s
	}
	return rep.Replace(s)
}

// Contains says whether s holds a known value.
func (r *Redactor) Contains(s string) bool { return r.String(s) != s }

// Error returns err with a redacted message. errors.Is and errors.As still
// see the errors it wraps: the cause is kept, only its text is replaced.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := r.String(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Writer returns a writer that redacts what it passes on to w. Each Write
// is redacted on its own, so callers write whole lines (as fmt.Fprintf,
// json.Encoder and slog handlers do).
func (r *Redactor) Writer(w io.Writer) io.Writer { return writer{r: r, w: w} }

type writer struct {
	r *Redactor
	w io.Writer
}

func (w writer) Write(p []byte) (int, error) {
	s := w.r.String(string(p))
	if _, err := io.WriteString(w.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}

// LineWriter returns a writer that redacts what it passes on to w a whole
// line at a time, however the writes before it cut the text: for output
// that goes through a buffer of its own (a bufio.Writer splits at its
// size, maybe inside a value). Flush writes what is left of a last line.
func (r *Redactor) LineWriter(w io.Writer) *LineWriter { return &LineWriter{r: r, w: w} }

// LineWriter is the writer LineWriter returns.
type LineWriter struct {
	r   *Redactor
	w   io.Writer
	buf []byte
}

func (l *LineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 {
		if _, err := io.WriteString(l.w, l.r.String(string(l.buf[:i+1]))); err != nil {
			return 0, err
		}
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
	}
	return len(p), nil
}

// Flush writes what is left of a last line without its newline.
func (l *LineWriter) Flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	_, err := io.WriteString(l.w, l.r.String(string(l.buf)))
	l.buf = l.buf[:0]
	return err
}

// Handler returns a slog handler that redacts the message and every
// attribute of a record before h sees it.
func (r *Redactor) Handler(h slog.Handler) slog.Handler { return handler{r: r, h: h} }

// Logger wraps a logger's handler with Handler.
func (r *Redactor) Logger(l *slog.Logger) *slog.Logger { return slog.New(r.Handler(l.Handler())) }

type handler struct {
	r *Redactor
	h slog.Handler
}

func (h handler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h handler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = h.attr(a)
	}
	return handler{r: h.r, h: h.h.WithAttrs(red)}
}

func (h handler) WithGroup(name string) slog.Handler {
	return handler{r: h.r, h: h.h.WithGroup(name)}
}

func (h handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.r.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, x := range g {
			red[i] = h.attr(x)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.Any(a.Key, h.r.Error(err))
		}
		s := fmt.Sprint(v.Any())
		if red := h.r.String(s); red != s {
			return slog.String(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
