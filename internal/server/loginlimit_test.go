package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
)

// TestFailedLoginsAuditedPerAddressAndMinute: a flood of requests without
// a valid token adds at most LoginFailuresPerMinute single events per
// client address and minute, then one event with the count of the rest;
// every failure is accounted for, other addresses and valid tokens are not
// affected, and the log still verifies.
func TestFailedLoginsAuditedPerAddressAndMinute(t *testing.T) {
	st := openStore(t)
	s, err := New(Options{ConfigPath: writeConfig(t), Store: st, LoginFailuresPerMinute: 3})
	if err != nil {
		t.Fatal(err)
	}
	s.started.Store(true) // the routes, without the watchers (no Docker here)
	var mu sync.Mutex
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s.logins.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	admin, _, err := auth.New(st).Create(context.Background(), auth.CreateOptions{Name: "root", Role: auth.Admin})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	send := func(addr, token string, want int) {
		t.Helper()
		n++
		req := httptest.NewRequest("GET", "/api/v1/releases", nil)
		req.RemoteAddr = addr
		req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d", n))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("request %d from %s: %d, want %d", n, addr, rec.Code, want)
		}
	}
	failed := func() []audit.Event {
		t.Helper()
		evs, err := s.audit.List(context.Background(), audit.Filter{Outcome: audit.LoginFailed, Limit: -1})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}

	for i := 0; i < 50; i++ {
		send("192.0.2.1:40000", "", http.StatusUnauthorized)
	}
	for i := 0; i < 5; i++ {
		send("192.0.2.1:40001", "gnt_nope_"+fmt.Sprint(i), http.StatusUnauthorized) // same host, other port, wrong token
	}
	send("192.0.2.2:1234", "", http.StatusUnauthorized)
	send("192.0.2.1:40000", admin, http.StatusOK)
	if evs := failed(); len(evs) != 4 {
		t.Fatalf("%d failed-login events in the first minute, want 3 from 192.0.2.1 and 1 from 192.0.2.2: %+v", len(evs), evs)
	}
	if got := s.logins.ended(false); len(got) != 0 {
		t.Fatalf("windows ended before their minute: %+v", got)
	}

	// The minute ends: the next failure from 192.0.2.1 writes the count of
	// the ones not audited singly, and opens a new window.
	advance(61 * time.Second)
	send("192.0.2.1:40002", "", http.StatusUnauthorized)
	evs := failed()
	if len(evs) != 6 {
		t.Fatalf("%d failed-login events after the minute, want 4 + a summary + 1: %+v", len(evs), evs)
	}
	sum := evs[1] // newest first: the new single one, then the summary
	if sum.Client != "192.0.2.1" || sum.Detail["repeated"] != "52" || sum.Detail["reasons"] != "invalid_token=5,no_token=47" ||
		sum.Detail["first_request_id"] != "req-4" || sum.Detail["last_request_id"] != "req-55" || sum.Detail["audited_singly"] != "3" {
		t.Fatalf("summary event: %+v", sum)
	}
	if evs[0].RequestID != fmt.Sprintf("req-%d", n) {
		t.Fatalf("the first failure of the new window is not audited singly: %+v", evs[0])
	}
	// 192.0.2.2 had nothing beyond its single event: no summary.
	advance(61 * time.Second)
	if got := s.logins.ended(false); len(got) != 0 {
		t.Fatalf("summaries for windows with nothing counted: %+v", got)
	}
	if rep, err := s.audit.Verify(context.Background()); err != nil || rep.Problem != nil {
		t.Fatalf("verify: %v %+v", err, rep)
	}

	// Negative: every failure audited.
	s2, err := New(Options{ConfigPath: writeConfig(t), Store: openStore(t), LoginFailuresPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if ok, due := s2.logins.allow("192.0.2.9:1", "no_token", "x"); !ok || due != nil {
			t.Fatalf("limit off: failure %d not audited singly", i)
		}
	}
}

// TestLoginLimiterBoundsAddresses: past maxLoginAddrs addresses, failures
// share one count and are summarized together when flushed.
func TestLoginLimiterBoundsAddresses(t *testing.T) {
	l := newLoginLimiter(1)
	for i := 0; i < maxLoginAddrs+10; i++ {
		l.allow(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), "no_token", fmt.Sprint(i))
	}
	if len(l.addrs) != maxLoginAddrs+1 {
		t.Fatalf("%d addresses followed, want %d and the shared one", len(l.addrs), maxLoginAddrs)
	}
	evs := l.ended(true)
	if len(evs) != 1 || evs[0].Client != otherAddrs || evs[0].Detail["repeated"] != "10" {
		t.Fatalf("flush: %+v", evs)
	}
	if len(l.addrs) != 0 {
		t.Fatalf("%d windows left after a flush", len(l.addrs))
	}
}
