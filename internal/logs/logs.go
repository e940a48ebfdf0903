// Package logs streams the output of an environment's serving containers,
// every line prefixed with its service and release, several services
// interleaved line by line: in time order for a finished read, as lines
// arrive when following.
package logs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	timetypes "github.com/docker/docker/api/types/time"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/internal/deploy"
)

// ErrInput marks bad options; nothing was read.
var ErrInput = errors.New("invalid input")

// Target is a container whose output is streamed.
type Target struct {
	Service   string
	Release   string
	Container string
}

// Options say what to stream.
type Options struct {
	// Follow keeps streaming new lines until ctx ends or every container
	// stops.
	Follow bool
	// Since: only lines from then on: a duration back from now (10m, 1h)
	// or a time (2026-11-29T10:00:00Z, RFC 3339).
	Since string
	// Tail: only the last N lines of each container; "all" or "" for all.
	Tail string
	// Timestamps prints each line's time.
	Timestamps bool
}

// Check validates the options before anything is read.
func (o Options) Check(now time.Time) error {
	if o.Since != "" {
		if _, err := timetypes.GetTimestamp(o.Since, now); err != nil {
			return fmt.Errorf("%w: --since %q: give a duration back from now (10m, 2h) or a time (2026-11-29T10:00:00Z)", ErrInput, o.Since)
		}
	}
	if o.Tail != "" && o.Tail != "all" {
		if n, err := strconv.Atoi(o.Tail); err != nil || n < 0 {
			return fmt.Errorf("%w: --tail %q: give a number of lines (100) or all", ErrInput, o.Tail)
		}
	}
	return nil
}

// Docker is what Stream needs of the Docker client.
type Docker interface {
	ContainerLogs(ctx context.Context, container string, options container.LogsOptions) (io.ReadCloser, error)
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
}

// Targets picks the serving release's containers from a status, all of
// them or one service's.
func Targets(st *deploy.Status, service string) ([]Target, error) {
	if st.Release == "" {
		return nil, fmt.Errorf("%w: nothing is deployed in %s, so there are no logs to show", ErrInput, st.Env)
	}
	var out []Target
	var names []string
	for _, ss := range st.Services {
		if ss.Release != st.Release || ss.Container == "" {
			continue
		}
		names = append(names, ss.Name)
		if service == "" || ss.Name == service {
			out = append(out, Target{Service: ss.Name, Release: ss.Release, Container: ss.Container})
		}
	}
	if len(out) == 0 && service != "" {
		return nil, fmt.Errorf("%w: service %q has no container in release %s of %s (its services: %s)", ErrInput, service, st.Release, st.Env, strings.Join(names, ", "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: release %s of %s has no container left; gantry status %s says what happened", ErrInput, st.Release, st.Env, st.Env)
	}
	return out, nil
}

// line is one line of a container's output.
type line struct {
	at     time.Time
	prefix string
	stamp  string // Docker's timestamp as it sent it
	text   string
}

// Stream writes the targets' output to w, each line prefixed with
// "service@release | ", whole lines only. Without Follow the lines of all
// containers are merged in time order; with it they are written as they
// arrive, until ctx ends or every container's stream ends.
func Stream(ctx context.Context, d Docker, targets []Target, o Options, w io.Writer) error {
	if err := o.Check(time.Now()); err != nil {
		return err
	}
	width := 0
	for _, t := range targets {
		width = max(width, len(t.Service)+1+len(t.Release))
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chans := make([]chan line, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		chans[i] = make(chan line, 256)
		prefix := fmt.Sprintf("%-*s | ", width, t.Service+"@"+t.Release)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(chans[i])
			errs[i] = read(ctx, d, t, o, prefix, chans[i])
		}()
	}
	bw := bufio.NewWriter(w)
	write := func(l line) error {
		if o.Timestamps {
			bw.WriteString(l.stamp)
			bw.WriteByte(' ')
		}
		bw.WriteString(l.prefix)
		bw.WriteString(l.text)
		return bw.WriteByte('\n')
	}
	var err error
	if o.Follow {
		err = follow(ctx, chans, write, bw)
	} else {
		err = merge(chans, write)
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	cancel()
	wg.Wait()
	if err != nil {
		return err
	}
	if o.Follow && parent.Err() != nil {
		return nil // stopped following (Ctrl-C)
	}
	return errors.Join(errs...)
}

// merge writes the lines of finished streams in time order: it holds the
// next line of every stream and writes the earliest.
func merge(chans []chan line, write func(line) error) error {
	type head struct {
		l  line
		ch chan line
	}
	var heads []head
	for _, ch := range chans {
		if l, ok := <-ch; ok {
			heads = append(heads, head{l, ch})
		}
	}
	for len(heads) > 0 {
		sort.SliceStable(heads, func(i, j int) bool { return heads[i].l.at.Before(heads[j].l.at) })
		h := heads[0]
		if err := write(h.l); err != nil {
			return err
		}
		if l, ok := <-h.ch; ok {
			heads[0].l = l
		} else {
			heads = heads[1:]
		}
	}
	return nil
}

// follow writes lines as they arrive, flushing whenever no more are
// waiting, until every stream ends or ctx does.
func follow(ctx context.Context, chans []chan line, write func(line) error, bw *bufio.Writer) error {
	all := make(chan line, 256)
	var wg sync.WaitGroup
	for _, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range ch {
				select {
				case all <- l:
				case <-ctx.Done():
					for range ch {
					}
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(all) }()
	for {
		select {
		case l, ok := <-all:
			if !ok {
				return nil
			}
			if err := write(l); err != nil {
				return err
			}
			if len(all) == 0 {
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// read streams one container's output into out, line by line.
func read(ctx context.Context, d Docker, t Target, o Options, prefix string, out chan<- line) error {
	info, err := d.ContainerInspect(ctx, t.Container)
	if err != nil {
		return fmt.Errorf("logs of %s (%s): %w", t.Service, t.Container, err)
	}
	rc, err := d.ContainerLogs(ctx, t.Container, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: o.Follow, Since: o.Since, Tail: o.Tail, Timestamps: true,
	})
	if err != nil {
		return fmt.Errorf("logs of %s (%s): %w", t.Service, t.Container, err)
	}
	defer rc.Close()
	stdout := &lineWriter{ctx: ctx, prefix: prefix, out: out}
	stderr := &lineWriter{ctx: ctx, prefix: prefix, out: out}
	if info.Config != nil && info.Config.Tty {
		_, err = io.Copy(stdout, rc)
	} else {
		// Without a TTY, Docker multiplexes stdout and stderr in frames;
		// each has its own partial line.
		_, err = stdcopy.StdCopy(stdout, stderr, rc)
	}
	stdout.flush()
	stderr.flush()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of %s (%s): %w", t.Service, t.Container, err)
	}
	return nil
}

// lineWriter cuts one stream of a container into lines, each starting
// with the timestamp Docker adds, and sends them on.
type lineWriter struct {
	ctx    context.Context
	prefix string
	out    chan<- line
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if err := w.emit(string(w.buf[:i])); err != nil {
			return 0, err
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) emit(s string) error {
	s = strings.TrimSuffix(s, "\r")
	l := line{prefix: w.prefix, text: s}
	if stamp, rest, ok := strings.Cut(s, " "); ok {
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			l.at, l.stamp, l.text = at, stamp, rest
		}
	}
	select {
	case w.out <- l:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}
