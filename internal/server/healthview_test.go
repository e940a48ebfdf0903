package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/gantryhq/gantry/internal/health"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const healthGantry = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
      cache: 2s
      probes:
        web: { http: { port: 8080, path: /healthz } }
  production:
    health: { window: 30s, min_healthy: 1s }
`

// probeHits is how many requests with gantry's User-Agent the example app
// at port has answered on /healthz (its healthz_requests_total).
func probeHits(t *testing.T, port int) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^healthz_requests_total\{prober="gantry"\} (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("the app's /metrics has no healthz_requests_total{prober=\"gantry\"}:\n%s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestHealthView: /health/{env} against real containers: the view is
// right, a poll storm within the cache's TTL costs the app no probe, the
// first request after the TTL probes once for all concurrent ones, and a
// stopped container shows as not live and not ready, with 503.
func TestHealthView(t *testing.T) {
	f := newFixtureWith(t, healthGantry, "", nil)
	var v health.View
	empty := f.get("viewer", "/health/staging")
	empty.json(t, &v)
	if empty.status != http.StatusServiceUnavailable || v.Status != health.StatusEmpty {
		t.Fatalf("health before any deploy: %d %s", empty.status, empty.body)
	}
	if d := f.deploy("staging", `{"release":"1.0.0"}`); d.State != store.Succeeded {
		t.Fatalf("deploy: %s %s", d.State, d.Reason)
	}
	// The gate probed; wait out the view's empty answer cached above.
	time.Sleep(2 * time.Second)
	base := probeHits(t, f.port)

	r := f.get("viewer", "/health/staging")
	r.json(t, &v)
	if r.status != http.StatusOK || v.Status != health.StatusHealthy || v.Release != "1.0.0" || v.CacheSeconds != 2 || len(v.Services) != 1 {
		t.Fatalf("health after the deploy: %d %s", r.status, r.body)
	}
	web := v.Services[0]
	if web.Service != "web" || web.Startup != health.Pass || web.Liveness != health.Pass || web.Readiness != health.Pass || web.Probe != "http GET :8080/healthz" || web.Container == "" {
		t.Fatalf("web: %+v", web)
	}
	if n := probeHits(t, f.port); n != base+1 {
		t.Fatalf("one view probed the app %d times, want 1", n-base)
	}
	first := v.CheckedAt

	// Within the TTL: 50 requests, 10 at a time, are answered from the
	// cache: the same check, no probe.
	storm := func(n int) []health.View {
		var mu sync.Mutex
		var out []health.View
		var wg sync.WaitGroup
		sem := make(chan struct{}, 10)
		for range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var x health.View
				f.get("viewer", "/health/staging").json(t, &x)
				mu.Lock()
				out = append(out, x)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return out
	}
	for _, x := range storm(50) {
		if !x.CheckedAt.Equal(first) {
			t.Fatalf("an answer within the TTL was checked again: %s, first %s", x.CheckedAt, first)
		}
	}
	if n := probeHits(t, f.port); n != base+1 {
		t.Fatalf("50 requests within the TTL probed the app %d more times, want 0", n-base-1)
	}

	// After the TTL: the next requests, concurrent, share one new check.
	time.Sleep(time.Until(first.Add(2100 * time.Millisecond)))
	var second time.Time
	for _, x := range storm(10) {
		if !x.CheckedAt.After(first) {
			t.Fatalf("an answer after the TTL reused the old check of %s", first)
		}
		if second.IsZero() {
			second = x.CheckedAt
		}
		if !x.CheckedAt.Equal(second) {
			t.Fatalf("concurrent requests after the TTL checked more than once: %s and %s", second, x.CheckedAt)
		}
	}
	if n := probeHits(t, f.port); n != base+2 {
		t.Fatalf("after the TTL the app was probed %d more times, want 1", n-base-1)
	}

	// One service, and one that does not serve.
	if r := f.get("viewer", "/health/staging?service=web"); r.status != http.StatusOK {
		t.Errorf("?service=web: %d %s", r.status, r.body)
	}
	if r := f.get("viewer", "/health/staging?service=nope"); r.status != http.StatusNotFound {
		t.Errorf("?service=nope: %d %s", r.status, r.body)
	}

	// A stopped container: not live, not ready, 503 once the cache expires.
	c := testenv.Docker(t)
	stop := 0
	if err := c.ContainerStop(context.Background(), web.Container, container.StopOptions{Timeout: &stop}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(second.Add(2100 * time.Millisecond)))
	r = f.get("viewer", "/health/staging")
	r.json(t, &v)
	if r.status != http.StatusServiceUnavailable || v.Status != health.StatusUnhealthy || v.Services[0].Liveness != health.Fail || v.Services[0].Readiness != health.Fail || v.Services[0].Detail == "" {
		t.Fatalf("health with the container stopped: %d %s", r.status, r.body)
	}
}

// TestHealthPublic: with HealthPublic the view needs no token (for load
// balancers), and an unknown environment is still refused.
func TestHealthPublic(t *testing.T) {
	s, err := New(Options{ConfigPath: writeConfig(t), Store: openStore(t), HealthPublic: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s.Shutdown(ctx)
	})
	for path, want := range map[string]int{"/health/staging": http.StatusServiceUnavailable, "/health/nope": http.StatusNotFound} {
		req, _ := http.NewRequest("GET", path, nil)
		rec := newRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%s without a token: %d, want %d: %s", path, rec.Code, want, rec.Body)
		}
	}
}
