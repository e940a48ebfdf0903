package server

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
)

// Failed logins are audited one by one up to a number per client address
// and minute; past it, they are counted, and the count becomes one audit
// event when the minute ends. A flood of requests without a valid token
// (no token, a wrong, expired or revoked one) then adds a bounded number of
// events to the append-only log instead of one per request, and every
// failure is still accounted for.
const (
	// DefaultLoginFailuresPerMinute is Options.LoginFailuresPerMinute's
	// default.
	DefaultLoginFailuresPerMinute = 20
	loginWindow                   = time.Minute
	// maxLoginAddrs bounds the addresses followed at once; failures from
	// further addresses share one count.
	maxLoginAddrs = 10000
	otherAddrs    = "other addresses"
)

// loginLimiter decides which failed logins are audited one by one.
type loginLimiter struct {
	perMinute int // <= 0: every failure is audited
	now       func() time.Time

	mu    sync.Mutex
	addrs map[string]*loginWindowState
}

type loginWindowState struct {
	start      time.Time
	recorded   int
	suppressed int
	reasons    map[string]int
	firstReqID string
	lastReqID  string
	lastAt     time.Time
}

func newLoginLimiter(perMinute int) *loginLimiter {
	return &loginLimiter{perMinute: perMinute, now: time.Now, addrs: map[string]*loginWindowState{}}
}

// clientHost is the address without its port: the unit of the limit.
func clientHost(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// allow reports whether a failed login from remote is audited on its own;
// otherwise it was counted, and due holds the summaries of windows that
// ended, to append now.
func (l *loginLimiter) allow(remote, reason, reqID string) (ok bool, due []audit.Event) {
	if l.perMinute <= 0 {
		return true, nil
	}
	now := l.now()
	host := clientHost(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.addrs[host]
	if w != nil && now.Sub(w.start) >= loginWindow {
		if ev, ok := w.summary(host); ok {
			due = append(due, ev)
		}
		delete(l.addrs, host)
		w = nil
	}
	if w == nil {
		if len(l.addrs) >= maxLoginAddrs {
			host = otherAddrs
			w = l.addrs[host]
		}
		if w == nil {
			w = &loginWindowState{start: now, reasons: map[string]int{}}
			l.addrs[host] = w
		}
	}
	if w.recorded < l.perMinute && host != otherAddrs {
		w.recorded++
		return true, due
	}
	w.suppressed++
	w.reasons[reason]++
	if w.firstReqID == "" {
		w.firstReqID = reqID
	}
	w.lastReqID, w.lastAt = reqID, now
	return false, due
}

// ended removes the windows that are over (all with flush) and returns
// their summaries.
func (l *loginLimiter) ended(flush bool) []audit.Event {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Event
	for host, w := range l.addrs {
		if !flush && now.Sub(w.start) < loginWindow {
			continue
		}
		if ev, ok := w.summary(host); ok {
			out = append(out, ev)
		}
		delete(l.addrs, host)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out
}

// summary is the audit event for the failures of a window that were not
// audited one by one; none when there were none.
func (w *loginWindowState) summary(host string) (audit.Event, bool) {
	if w.suppressed == 0 {
		return audit.Event{}, false
	}
	var reasons []string
	for r, n := range w.reasons {
		reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(reasons)
	return audit.Event{
		Action:    "login",
		Object:    "failed logins from " + host,
		Outcome:   audit.LoginFailed,
		RequestID: w.lastReqID,
		Client:    host,
		Detail: map[string]string{
			"repeated":         strconv.Itoa(w.suppressed),
			"reasons":          strings.Join(reasons, ","),
			"from":             w.start.UTC().Format(time.RFC3339Nano),
			"until":            w.lastAt.UTC().Format(time.RFC3339Nano),
			"first_request_id": w.firstReqID,
			"last_request_id":  w.lastReqID,
			"audited_singly":   strconv.Itoa(w.recorded),
		},
	}, true
}

// flushLogins appends the summaries of ended windows every few seconds,
// and all of them when ctx ends (shutdown).
func (s *Server) flushLogins(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, ev := range s.logins.ended(true) {
				s.appendAudit(context.WithoutCancel(ctx), ev)
			}
			return
		case <-t.C:
			for _, ev := range s.logins.ended(false) {
				s.appendAudit(ctx, ev)
			}
		}
	}
}
