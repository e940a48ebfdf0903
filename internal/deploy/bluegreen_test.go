package deploy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// bgEnv is a project with a routed service, the real Docker engine, the
// store, and a real gantry proxy on loopback with its admin socket where
// the engine looks for it.
type bgEnv struct {
	t     *testing.T
	m     *config.Model
	eng   *Engine
	proxy *proxy.Proxy
	url   string // the proxy's http://127.0.0.1:port/version
}

func newBGEnv(t *testing.T, composeYAML string) *bgEnv {
	t.Helper()
	name := testenv.Project(t, "bg")
	dir, err := os.MkdirTemp("", "gbg") // short: the admin socket's path has a limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: "+name+`
environments:
  staging:
    health: { window: 40s, min_healthy: 1s }
    routes:
      web: { host: shop.test, port: 8080 }
`), 0o644)
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(composeYAML), 0o644)
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Resolve(context.Background(), "staging")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, ".gantry")
	rt, err := docker.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	p, err := proxy.New(proxy.Options{StateFile: proxy.StateFile(state), DrainTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan proxy.Listening, 1)
	stopped := make(chan error, 1)
	go func() {
		stopped <- p.Serve(ctx, proxy.ServeOptions{Listen: "127.0.0.1:0", AdminSocket: proxy.AdminSocket(state)}, func(l proxy.Listening) { ready <- l })
	}()
	var l proxy.Listening
	select {
	case l = <-ready:
	case err := <-stopped:
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() { cancel(); <-stopped })
	return &bgEnv{t: t, m: m, eng: New(rt, st, state, WithReporter(testReporter{t, time.Now()})), proxy: p, url: "http://" + l.HTTP + "/version"}
}

// testReporter puts the engine's progress in the test's log, timed.
type testReporter struct {
	t     *testing.T
	start time.Time
}

func (r testReporter) Service(service, phase, detail string) {
	r.t.Logf("[%5.1fs] %s %s %s", time.Since(r.start).Seconds(), service, phase, detail)
}
func (r testReporter) Note(msg string) { r.t.Logf("[%5.1fs] %s", time.Since(r.start).Seconds(), msg) }

// version is what the proxy answers for the routed service now.
func (b *bgEnv) version() string {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.url, nil)
	req.Host = "shop.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.Status + " " + resp.Header.Get(proxy.ErrorHeader)
	}
	return strings.TrimSpace(string(body))
}

// underLoad runs fn while 200 requests/s go through the proxy (for 30 s
// at most) and fails the test on any failed request; it returns the
// answers by version.
func (b *bgEnv) underLoad(what string, fn func()) map[string]int {
	b.t.Helper()
	load := testenv.StartLoad(b.t, b.url, "shop.test", 200, 30*time.Second, nil)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	fn()
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	load.Stop()
	r := load.Wait()
	b.t.Logf("%s (%.1fs): %d requests, by version %v", what, took.Seconds(), r.Total, r.ByKey)
	if r.Failed != 0 {
		b.t.Errorf("%s: %d of %d requests failed: %v", what, r.Failed, r.Total, r.Errors)
	}
	return r.ByKey
}

const webCompose = "services:\n  web:\n    image: IMAGE\n"

// TestBlueGreen deploys a routed service under 200 requests/s: a new
// release, a release that fails its gate, and a gantry rollback, each with
// no failed request; the old release drains and is switched back to.
func TestBlueGreen(t *testing.T) {
	b := newBGEnv(t, strings.Replace(webCompose, "IMAGE", testenv.Image(t, testenv.Healthy), 1))
	ctx := context.Background()
	res, err := b.eng.Deploy(ctx, b.m, "1.0.0", nil)
	if err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	if res.Services[0].Strategy != StrategyBlueGreen {
		t.Errorf("strategy %q, want blue-green", res.Services[0].Strategy)
	}
	if v := b.version(); v != "1.0.0" {
		t.Fatalf("through the proxy after the first deploy: %q", v)
	}

	seen := b.underLoad("deploy 2.0.0", func() {
		if _, err := b.eng.Deploy(ctx, b.m, "2.0.0", map[string]string{"web": testenv.Image(t, "healthy-v2")}); err != nil {
			t.Errorf("deploy 2.0.0: %v", err)
		}
	})
	if seen["1.0.0"] == 0 || seen["2.0.0"] == 0 || b.version() != "2.0.0" {
		t.Errorf("the deploy did not move traffic from 1.0.0 to 2.0.0: %v, now %s", seen, b.version())
	}
	st := b.proxy.State()
	if len(st.Routes) != 1 || st.Routes[0].Previous == nil || st.Routes[0].Previous.Release != "1.0.0" {
		t.Errorf("route after the deploy: %+v", st.Routes)
	}

	seen = b.underLoad("a release that fails its gate", func() {
		_, err := b.eng.Deploy(ctx, b.m, "3.0.0", map[string]string{"web": testenv.Image(t, testenv.Unhealthy)})
		if !errors.Is(err, ErrRolledBack) {
			t.Errorf("deploy of an unhealthy release: %v, want rolled back", err)
		}
	})
	if len(seen) != 1 || seen["2.0.0"] == 0 {
		t.Errorf("traffic during a failed deploy: %v, want 2.0.0 only", seen)
	}

	seen = b.underLoad("gantry rollback", func() {
		if _, err := b.eng.Rollback(ctx, b.m.File.Project, b.m.Env, ""); err != nil {
			t.Errorf("rollback: %v", err)
		}
	})
	if v := b.version(); v != "1.0.0" || seen["1.0.0"] == 0 {
		t.Errorf("after the rollback: %s (%v), want 1.0.0", v, seen)
	}
}

// TestBlueGreenRollbackAfterSwitch: web is switched to the new release,
// then a service that depends on it fails; the rollback switches web back
// before removing its new container, and no request fails.
func TestBlueGreenRollbackAfterSwitch(t *testing.T) {
	compose := `services:
  web:
    image: ` + testenv.Image(t, testenv.Healthy) + `
  worker:
    image: ` + testenv.Image(t, testenv.Healthy) + `
    depends_on: [web]
`
	b := newBGEnv(t, compose)
	ctx := context.Background()
	if _, err := b.eng.Deploy(ctx, b.m, "1.0.0", nil); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	var res *Result
	seen := b.underLoad("a deploy that fails after the switch", func() {
		var err error
		res, err = b.eng.Deploy(ctx, b.m, "2.0.0", map[string]string{"web": testenv.Image(t, "healthy-v2"), "worker": testenv.Image(t, testenv.Crash)})
		if !errors.Is(err, ErrRolledBack) {
			t.Errorf("deploy: %v, want rolled back", err)
		}
	})
	if seen["2.0.0"] == 0 {
		t.Errorf("web was never switched to 2.0.0 (%v): the test did not test a switch back", seen)
	}
	if v := b.version(); v != "1.0.0" {
		t.Errorf("after the rollback: %q, want 1.0.0", v)
	}
	if res == nil || res.Failure == nil || res.Failure.Service != "worker" {
		t.Errorf("failure: %+v, want worker's", res)
	}
	steps, _ := b.eng.store.Steps(ctx, res.Deployment)
	var phases []string
	for _, s := range steps {
		if s.Service == "web" {
			phases = append(phases, s.Phase)
		}
	}
	if got := strings.Join(phases, " "); !strings.Contains(got, "switch drain") || !strings.Contains(got, "switch-back") ||
		strings.Index(got, "switch-back") > strings.Index(got, "rollback") {
		t.Errorf("web's steps: %s; want switch, drain, then switch-back before rollback", got)
	}
}

// TestBlueGreenNeedsProxy: a routed service with no proxy running fails
// before any container is made, saying what to start.
func TestBlueGreenNeedsProxy(t *testing.T) {
	b := newBGEnv(t, strings.Replace(webCompose, "IMAGE", testenv.Image(t, testenv.Healthy), 1))
	b.eng.stateDir = t.TempDir() // no proxy's socket there
	_, err := b.eng.Deploy(context.Background(), b.m, "1.0.0", nil)
	if err == nil || !strings.Contains(err.Error(), "no gantry proxy answers") || !strings.Contains(err.Error(), "gantry proxy") {
		t.Fatalf("deploy without a proxy: %v", err)
	}
	cs, _ := b.eng.rt.Containers(context.Background(), b.m.File.Project, "staging")
	if len(cs) != 0 {
		t.Errorf("%d containers made without a proxy", len(cs))
	}
}

// TestRouteFollowsRestartedContainer: Docker gives a restarted container a
// new ephemeral port; FollowRoutes sees the start and re-points the route,
// so the proxy reaches the release again. A stopped container is not
// started by a sync.
func TestRouteFollowsRestartedContainer(t *testing.T) {
	b := newBGEnv(t, strings.Replace(webCompose, "IMAGE", testenv.Image(t, testenv.Healthy), 1))
	ctx := context.Background()
	if _, err := b.eng.Deploy(ctx, b.m, "1.0.0", nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	project, env := b.m.File.Project, b.m.Env.Name
	web := func() runtime.Container {
		t.Helper()
		cs, err := b.eng.rt.Containers(ctx, project, env)
		if err != nil || len(cs) != 1 {
			t.Fatalf("containers: %v %+v", err, cs)
		}
		return cs[0]
	}
	before := b.proxy.State().Routes[0].Upstream.Addr
	c := web()
	dc := b.eng.rt.(*docker.Runtime).Client()
	if err := dc.ContainerRestart(ctx, c.ID, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	now, err := b.eng.rt.Address(ctx, c.ID, 8080)
	if err != nil {
		t.Fatal(err)
	}
	if now == before {
		t.Fatalf("Docker gave the restarted container its old port %s; the test cannot tell a sync", now)
	}
	if v := b.version(); !strings.HasPrefix(v, "502") {
		t.Fatalf("through the proxy before any sync: %q, want 502 (the route still points at %s)", v, before)
	}

	follow, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.eng.FollowRoutes(follow, project, env, time.Hour); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	testenv.WaitFor(t, 10*time.Second, "the route to follow the restarted container", func() bool {
		return b.proxy.State().Routes[0].Upstream.Addr == now
	})
	if v := b.version(); v != "1.0.0" {
		t.Errorf("through the proxy after the sync: %q, want 1.0.0", v)
	}

	// A restart seen through the event stream, while FollowRoutes runs.
	if err := dc.ContainerRestart(ctx, c.ID, container.StopOptions{}); err != nil {
		t.Fatal(err)
	}
	again, _ := b.eng.rt.Address(ctx, c.ID, 8080)
	testenv.WaitFor(t, 10*time.Second, "the route to follow a second restart", func() bool {
		return b.proxy.State().Routes[0].Upstream.Addr == again
	})

	if err := b.eng.rt.Stop(ctx, c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	synced, err := b.eng.SyncRoutes(ctx, project, env)
	if err != nil || len(synced) != 0 || web().Running() {
		t.Errorf("sync with the container stopped: %v %v, running %v; want nothing done", synced, err, web().Running())
	}
}

// TestSyncEndsAnOrphanCanary: a canary left on a route with no deployment
// running it (the proxy was down when its deployment aborted it) is ended
// by the route sync, all traffic back to the serving release; while a
// gantry holds the environment it is left alone.
func TestSyncEndsAnOrphanCanary(t *testing.T) {
	b := newBGEnv(t, strings.Replace(webCompose, "IMAGE", testenv.Image(t, testenv.Healthy), 1))
	ctx := context.Background()
	if _, err := b.eng.Deploy(ctx, b.m, "1.0.0", nil); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer gone.Close()
	if _, err := b.proxy.SetCanary(ctx, proxy.CanaryRequest{Env: "staging", Service: "web",
		To: proxy.Upstream{Addr: strings.TrimPrefix(gone.URL, "http://"), Release: "2.0.0"}, Weight: 50}); err != nil {
		t.Fatal(err)
	}
	project, env := b.m.File.Project, b.m.Env.Name

	lock, err := b.eng.store.Acquire(ctx, project, env, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if synced, err := b.eng.SyncRoutes(ctx, project, env); err != nil || len(synced) != 0 || b.proxy.State().Routes[0].Canary == nil {
		t.Errorf("sync while a gantry holds the environment: %v %v, canary %+v; want nothing done", synced, err, b.proxy.State().Routes[0].Canary)
	}
	lock.Release()

	synced, err := b.eng.SyncRoutes(ctx, project, env)
	if err != nil || len(synced) != 1 || synced[0] != "web" {
		t.Fatalf("sync: %v %v, want web", synced, err)
	}
	if c := b.proxy.State().Routes[0].Canary; c != nil {
		t.Errorf("the orphan canary is still on the route: %+v", c)
	}
	for range 20 {
		if v := b.version(); v != "1.0.0" {
			t.Fatalf("through the proxy after the sync: %q, want 1.0.0 every time", v)
		}
	}
}
