package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const fixtureGantry = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    health: { window: 30s, min_healthy: 1s }
  production:
    health: { window: 30s, min_healthy: 1s }
`

const fixtureCompose = `services:
  web:
    image: IMG
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 3s
      retries: 2
    read_only: true
`

// fixture is a server over a real store and the real Docker engine, with a
// token for each identity of the role matrix.
type fixture struct {
	t       testing.TB
	dir     string
	project string
	port    int
	st      *store.Store
	srv     *Server
	reg     *prometheus.Registry
	url     string
	logs    *syncBuffer
	tokens  map[string]string
	secrets []string
}

type syncBuffer = testenv.SyncBuffer

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, fixtureGantry, "", nil)
}

// newFixtureWith writes gantryYAML and more files (name -> content) with
// PROJECT, IMG (img, default the healthy test image), PORT and PORT2
// replaced.
func newFixtureWith(t testing.TB, gantryYAML, img string, files map[string]string) *fixture {
	t.Helper()
	if img == "" {
		img = testenv.Image(t, testenv.Healthy)
	}
	f := &fixture{t: t, dir: t.TempDir(), project: testenv.Project(t, "srv"), port: testenv.FreePort(t), logs: &syncBuffer{}, tokens: map[string]string{}}
	r := strings.NewReplacer("PROJECT", f.project, "IMG", img, "PORT2", fmt.Sprint(testenv.FreePort(t)), "PORT", fmt.Sprint(f.port))
	os.WriteFile(filepath.Join(f.dir, "gantry.yaml"), []byte(r.Replace(gantryYAML)), 0o644)
	os.WriteFile(filepath.Join(f.dir, "compose.yaml"), []byte(r.Replace(fixtureCompose)), 0o644)
	for name, content := range files {
		os.WriteFile(filepath.Join(f.dir, name), []byte(r.Replace(content)), 0o644)
	}
	state := filepath.Join(f.dir, ".gantry")
	st, err := store.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	f.reg = prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.srv, err = New(Options{ConfigPath: filepath.Join(f.dir, "gantry.yaml"), StateDir: state, Store: st, Log: log, Registry: f.reg, Resync: time.Second, ShutdownGrace: 5 * time.Second,
		// The role matrix checks that each failed login is audited with its request id.
		LoginFailuresPerMinute: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(f.srv.Handler())
	f.url = ts.URL
	f.srv.Start(context.Background())
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f.srv.Shutdown(ctx)
		st.Close()
	})
	mk := f.mkToken
	f.tokens["viewer"] = mk("viewer", auth.Viewer, nil, 0)
	f.tokens["editor"] = mk("editor", auth.Editor, nil, 0)
	f.tokens["admin"] = mk("admin", auth.Admin, nil, 0)
	f.tokens["other-env"] = mk("prod-editor", auth.Editor, []string{"production"}, 0)
	f.tokens["expired"] = mk("expired", auth.Admin, nil, time.Nanosecond)
	f.tokens["revoked"] = mk("revoked", auth.Admin, nil, 0)
	if _, err := auth.New(st).Revoke(context.Background(), "revoked"); err != nil {
		t.Fatal(err)
	}
	f.tokens["wrong"] = "gnt_aaaaaaaa_" + strings.Repeat("x", 43)
	f.tokens["none"] = ""
	return f
}

func (f *fixture) mkToken(name string, role auth.Role, envs []string, ttl time.Duration) string {
	f.t.Helper()
	secret, _, err := auth.New(f.st).Create(context.Background(), auth.CreateOptions{Name: name, Role: role, Envs: envs, TTL: ttl})
	if err != nil {
		f.t.Fatal(err)
	}
	f.secrets = append(f.secrets, secret)
	return secret
}

func (f *fixture) token(name, role string) string {
	return f.mkToken(name, auth.Role(role), nil, 0)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.status, err, r.body)
	}
}

// do sends a request as an identity of f.tokens.
func (f *fixture) do(who, method, path string, body io.Reader, hdr ...string) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if tok := f.tokens[who]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (f *fixture) get(who, path string) response {
	f.t.Helper()
	return f.do(who, "GET", path, nil)
}

func (f *fixture) post(who, path, body string) response {
	f.t.Helper()
	return f.do(who, "POST", path, strings.NewReader(body))
}

// waitDeployment polls a deployment until its state is final.
func (f *fixture) waitDeployment(id int64) DeploymentView {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		var v DeploymentView
		r := f.get("viewer", fmt.Sprintf("/api/v1/deployments/%d", id))
		if r.status != 200 {
			f.t.Fatalf("deployment %d: %d %s", id, r.status, r.body)
		}
		r.json(f.t, &v)
		if v.State.Terminal() {
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.t.Fatalf("deployment %d did not finish in 2 minutes", id)
	return DeploymentView{}
}

// deploy deploys through the API as editor and waits for the outcome.
func (f *fixture) deploy(env, body string) DeploymentView {
	f.t.Helper()
	r := f.post("editor", "/api/v1/envs/"+env+"/deploy", body)
	if r.status != http.StatusAccepted {
		f.t.Fatalf("deploy %s: %d %s", body, r.status, r.body)
	}
	var a Accepted
	r.json(f.t, &a)
	if a.Deployment == 0 || r.header.Get("Location") != a.URL {
		f.t.Fatalf("accepted: %+v, Location %q", a, r.header.Get("Location"))
	}
	return f.waitDeployment(a.Deployment)
}

// record is the state a bad request must not change.
func (f *fixture) record() string {
	f.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, env := range []string{"staging", "production"} {
		ds, err := f.st.History(ctx, f.project, env, 0)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, d := range ds {
			fmt.Fprintf(&b, "d %d %s %s %s\n", d.ID, d.Env, d.Release, d.State)
		}
	}
	ts, _ := f.st.Tokens(ctx)
	for _, t := range ts {
		fmt.Fprintf(&b, "t %s %s %v %v\n", t.ID, t.Name, t.RevokedAt != nil, t.Envs)
	}
	rs, _ := f.st.Releases(ctx, f.project, 0)
	for _, r := range rs {
		fmt.Fprintf(&b, "r %s %s\n", r.Version, r.State)
	}
	return b.String()
}
