package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
)

func TestHTTPProber(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.UserAgent() != "gantry-health" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/healthz", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rt := &fakeRuntime{addr: srv.Listener.Addr().String()}

	for _, tc := range []struct {
		path    string
		status  int
		timeout time.Duration
		wantErr []string
	}{
		{path: "/healthz", status: 200},
		{path: "/empty", status: 204},
		{path: "/down", status: 200, wantErr: []string{"status 503", "want 200", "database unreachable"}},
		{path: "/healthz", status: 204, wantErr: []string{"status 200", "want 204"}},
		// Redirects are not followed: the probe checks what the port says.
		{path: "/moved", status: 200, wantErr: []string{"status 302", "want 200"}},
		{path: "/moved", status: 302},
		{path: "/slow", status: 200, timeout: 50 * time.Millisecond, wantErr: []string{"deadline exceeded"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := &HTTPProber{probe: probe{timeout: tc.timeout}, Port: 8080, Path: tc.path, Status: tc.status}
			start := time.Now()
			err := p.Probe(context.Background(), target(rt))
			if tc.timeout > 0 && time.Since(start) > time.Second {
				t.Errorf("probe took %s; its timeout is %s", time.Since(start), tc.timeout)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Probe: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Probe succeeded; want an error")
			}
			for _, sub := range tc.wantErr {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q; want it to contain %q", err, sub)
				}
			}
		})
	}
	if len(rt.ports) == 0 || rt.ports[0] != 8080 {
		t.Errorf("Address asked for ports %v; want the container port 8080", rt.ports)
	}
}

func TestHTTPProberConnectionRefused(t *testing.T) {
	rt := &fakeRuntime{addr: closedPort(t)}
	p := &HTTPProber{Port: 8080, Path: "/", Status: 200}
	if err := p.Probe(context.Background(), target(rt)); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Probe to a closed port = %v; want connection refused", err)
	}
}

func TestTCPProber(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	p := &TCPProber{Port: 5432}
	if err := p.Probe(context.Background(), target(&fakeRuntime{addr: l.Addr().String()})); err != nil {
		t.Errorf("Probe to a listening port: %v", err)
	}
	if err := p.Probe(context.Background(), target(&fakeRuntime{addr: closedPort(t)})); err == nil {
		t.Error("Probe to a closed port succeeded")
	}
	addrErr := errors.New("port 5432 is not published")
	if err := p.Probe(context.Background(), target(&fakeRuntime{addrErr: addrErr})); !errors.Is(err, addrErr) {
		t.Errorf("Probe with an Address error = %v; want it returned", err)
	}
}

func TestExecProber(t *testing.T) {
	p := &ExecProber{Command: []string{"pg_isready", "-q"}}
	rt := &fakeRuntime{}
	if err := p.Probe(context.Background(), target(rt)); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	if len(rt.execs) != 1 || strings.Join(rt.execs[0], " ") != "pg_isready -q" {
		t.Errorf("exec'd %v", rt.execs)
	}
	rt = &fakeRuntime{exitCode: 2, execOut: "no response\n"}
	if err := p.Probe(context.Background(), target(rt)); err == nil || err.Error() != "exit code 2: no response" {
		t.Errorf("exit 2 = %v; want exit code 2: no response", err)
	}
	execErr := errors.New("container not running")
	if err := p.Probe(context.Background(), target(&fakeRuntime{execErr: execErr})); !errors.Is(err, execErr) {
		t.Errorf("exec error = %v; want it returned", err)
	}
}

func TestFromConfig(t *testing.T) {
	iv, to := config.Duration(3*time.Second), config.Duration(time.Second)
	for _, tc := range []struct {
		p    config.Probe
		want string
	}{
		{config.Probe{HTTP: &config.HTTPProbe{Port: 8080, Path: "/healthz", Status: 200}, Interval: iv, Timeout: to}, "http GET :8080/healthz"},
		{config.Probe{TCP: &config.TCPProbe{Port: 5432}, Interval: iv, Timeout: to}, "tcp :5432"},
		{config.Probe{Exec: &config.ExecProbe{Command: []string{"/app", "check"}}, Interval: iv, Timeout: to}, "exec /app check"},
	} {
		p := FromConfig(tc.p)
		if p == nil {
			t.Fatalf("FromConfig(%+v) = nil", tc.p)
		}
		if p.String() != tc.want || p.Interval() != 3*time.Second {
			t.Errorf("FromConfig = %s every %s; want %s every 3s", p, p.Interval(), tc.want)
		}
	}
	if p := FromConfig(config.Probe{}); p != nil {
		t.Errorf("FromConfig(empty) = %v, want nil", p)
	}
}
