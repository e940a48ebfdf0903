package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/health"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// obsProject writes a project of two services of the example app (web
// with a probe, worker without) into a temporary directory and returns it;
// the CLI runs in local mode.
func obsProject(t *testing.T) string {
	t.Helper()
	img := testenv.Image(t, testenv.Healthy)
	return writeProject(t, fmt.Sprintf(`project: %s
compose: compose.yaml
environments:
  staging:
    health:
      window: 30s
      min_healthy: 500ms
      cache: 1m
      probes:
        web: { http: { port: 8080, path: /healthz } }
`, testenv.Project(t, "obs")), fmt.Sprintf(`services:
  web:
    image: %[1]s
    ports: ["127.0.0.1:%[2]d:8080"]
    read_only: true
    healthcheck: &lenient   # a loaded machine answers slowly; unhealthy is not what this tests
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 5s
      retries: 10
  worker:
    image: %[1]s
    read_only: true
    healthcheck: *lenient
`, img, obsFreePort(t)))
}

// writeProject writes gantry.yaml and compose.yaml into a temporary
// directory for the CLI in local mode, and returns it.
func writeProject(t *testing.T, gantry, compose string) string {
	t.Helper()
	t.Setenv("GANTRY_SERVER", "")
	t.Setenv("GANTRY_CONTEXT", "local")
	dir := t.TempDir()
	for name, content := range map[string]string{"gantry.yaml": gantry, "compose.yaml": compose} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serveProject runs gantry server over the project in dir (its store in
// .gantry) until the test ends, and returns its URL and the store.
func serveProject(t *testing.T, dir string) (string, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, ".gantry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Options{ConfigPath: filepath.Join(dir, "gantry.yaml"), StateDir: filepath.Join(dir, ".gantry"), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	srv.Start(context.Background())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ts.URL, st
}

func obsFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHealthCommand: gantry health locally and against a server, with
// real containers: the table, --json, --service, and exit 1 for a project
// with nothing deployed.
func TestHealthCommand(t *testing.T) {
	dir := obsProject(t)
	out, errb, code := run(t, dir, "health", "staging")
	if code != ExitError || !strings.Contains(out, "staging: nothing deployed") || !strings.Contains(errb, "nothing is deployed") {
		t.Fatalf("health before a deploy: exit %d\n%s%s", code, out, errb)
	}
	if _, errb, code := run(t, dir, "deploy", "staging", "--release", "1.0.0"); code != 0 {
		t.Fatalf("deploy: exit %d: %s", code, errb)
	}
	out, errb, code = run(t, dir, "health", "staging")
	if code != 0 {
		t.Fatalf("health: exit %d\n%s%s", code, out, errb)
	}
	for _, want := range []string{"staging: healthy, release 1.0.0 (checked now)", "web", "http GET :8080/healthz", "worker"} {
		if !strings.Contains(out, want) {
			t.Errorf("health output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, dir, "health", "staging", "--json", "--service", "worker")
	var v health.View
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 {
		t.Fatalf("health --json: exit %d %v\n%s", code, err, out)
	}
	if len(v.Services) != 1 || v.Services[0].Service != "worker" || v.Services[0].Readiness != health.Pass || v.Services[0].Probe != "" {
		t.Fatalf("health --json --service worker: %s", out)
	}
	if _, errb, code := run(t, dir, "health", "staging", "--service", "nope"); code != ExitUsage || !strings.Contains(errb, `service "nope" does not serve in staging`) {
		t.Errorf("--service nope: exit %d %s", code, errb)
	}

	// The same through a server: the view comes from its cache.
	url, st := serveProject(t, dir)
	tok, _, err := auth.New(st).Create(context.Background(), auth.CreateOptions{Name: "ci", Role: auth.Viewer})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GANTRY_SERVER", url)
	t.Setenv("GANTRY_TOKEN", tok)
	out, errb, code = run(t, dir, "health", "staging")
	if code != 0 || !strings.Contains(out, "staging: healthy, release 1.0.0 (checked 0s ago, cached for 1m0s)") {
		t.Fatalf("health against the server: exit %d\n%s%s", code, out, errb)
	}
}

func TestHealthTable(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	v := &health.View{Env: "staging", Release: "1.4.0", Status: health.StatusDegraded, CheckedAt: at, CacheSeconds: 30, Services: []health.ServiceHealth{
		{Service: "web", Release: "1.4.0", Startup: health.Pass, Liveness: health.Pass, Readiness: health.Pass, Probe: "http GET :8080/healthz"},
		{Service: "api", Release: "1.4.0", Startup: health.Pass, Liveness: health.Pass, Readiness: health.Fail, Probe: "http GET :9000/ready", Detail: "probe failing: status 503, want 200: warming up"},
		{Service: "worker", Release: "1.4.0", Startup: health.Pending, Liveness: health.Pass, Readiness: health.Fail, Detail: "healthcheck starting"},
		{Service: "migrate", Release: "1.4.0", Startup: health.Pass, Liveness: health.Pass, Readiness: health.Pass, Detail: "job completed with exit code 0"},
	}}
	var b bytes.Buffer
	printHealth(&b, v, at.Add(12*time.Second))
	printHealth(&b, &health.View{Env: "production", Status: health.StatusEmpty, CheckedAt: at}, at)
	compareGolden(t, "health.golden", b.String())
}

func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with UPDATE_GOLDEN=1 to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (UPDATE_GOLDEN=1 rewrites it if the change is intended):\n%s", path, got)
	}
}
