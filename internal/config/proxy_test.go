package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestRoutesNormalized: host names are lower-cased without a trailing dot,
// paths lose a trailing slash, the proxy section gets its defaults.
func TestRoutesNormalized(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env, svc, host, path string
		port                 int
	}{
		{"staging", "web", "staging.shop.example", "/", 8080},
		{"staging", "api", "staging.shop.example", "/api", 9090},
		{"production", "web", "shop.example", "/", 8080},
	} {
		r := f.Environments[tc.env].Routes[tc.svc]
		if r == nil || r.Host != tc.host || r.Path != tc.path || r.Port != tc.port {
			t.Errorf("%s/%s = %+v, want %s %s %d", tc.env, tc.svc, r, tc.host, tc.path, tc.port)
		}
	}
	p := f.Proxy
	if p.Listen != "127.0.0.1:8000" || p.TLS == nil || p.TLS.Listen != DefaultProxyTLSListen || p.MaxBody != 1<<20 || p.DrainTimeout.D() != 10*time.Second {
		t.Errorf("proxy section = %+v (tls %+v)", p, p.TLS)
	}
	d, err := Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Proxy.Listen != DefaultProxyListen || d.Proxy.MaxBody != DefaultProxyMaxBody || d.Proxy.DrainTimeout.D() != DefaultProxyDrainTimeout {
		t.Errorf("proxy defaults = %+v", d.Proxy)
	}
}

// TestRoutedStrategy: a routed service is blue-green (canary with a
// canary block), a job stays a job.
func TestRoutedStrategy(t *testing.T) {
	f := loadProject(t, "gantry.yaml")
	m, err := f.Resolve(t.Context(), "staging")
	if err != nil {
		t.Fatal(err)
	}
	m.Env.Routes = map[string]*ProxyRoute{"web": {Path: "/", Port: 8080}, "migrate": {Path: "/m", Port: 8080}}
	if s := m.Strategy("web"); s != StrategyBlueGreen {
		t.Errorf("routed web: %s, want blue-green", s)
	}
	if s := m.Strategy("migrate"); s != "job" {
		t.Errorf("routed job: %s, want job", s)
	}
	if s := m.Strategy("worker"); s == StrategyBlueGreen {
		t.Errorf("worker without a route: %s", s)
	}
	m.Env.Routes["web"].Canary = &Canary{Steps: []CanaryStep{{Weight: 10}}}
	if s := m.Strategy("web"); s != StrategyCanary {
		t.Errorf("routed web with a canary: %s, want canary", s)
	}
}

// TestCanaryDefaults: a canary block gets its defaults where it leaves
// them out and keeps what it says (min_requests 0 included).
func TestCanaryDefaults(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.canary.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	web := f.Environments["staging"].Routes["web"].Canary
	api := f.Environments["staging"].Routes["api"].Canary
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		{"web steps", len(web.Steps), 3},
		{"web step 1 manual", web.Steps[0].Manual(), false},
		{"web step 3 manual", web.Steps[2].Manual(), true},
		{"web sticky", web.Sticky, Sticky{Cookie: DefaultCanaryCookie}},
		{"web abort", web.Abort, CanaryAbort{MaxErrorRatio: 0.02, MaxP99: Duration(800 * time.Millisecond), MinRequests: 0, Interval: Duration(DefaultCanaryInterval)}},
		{"api sticky", api.Sticky, Sticky{Header: "X-User-Id"}},
		{"api abort", api.Abort, CanaryAbort{MaxErrorRatio: DefaultCanaryMaxErrorRatio, MinRequests: DefaultCanaryMinRequests, Interval: Duration(DefaultCanaryInterval)}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
}

// TestCanaryJSONRoundTrip: a canary block goes into a stored plan as JSON
// and comes back the same (durations included).
func TestCanaryJSONRoundTrip(t *testing.T) {
	in := Canary{Steps: []CanaryStep{{Weight: 10, Pause: Duration(2 * time.Minute)}, {Weight: 50}},
		Sticky: Sticky{Cookie: "c"}, Abort: CanaryAbort{MaxErrorRatio: 0.05, MaxP99: Duration(800 * time.Millisecond), MinRequests: 20, Interval: Duration(time.Second)}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Canary
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if fmt.Sprint(out) != fmt.Sprint(in) {
		t.Errorf("round trip: %+v, want %+v (%s)", out, in, b)
	}
}
