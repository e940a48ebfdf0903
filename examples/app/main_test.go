package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestHealthzByMode(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		mode  string
		since time.Duration
		want  int
	}{
		{"healthy", modeHealthy, 0, http.StatusOK},
		{"unhealthy", modeUnhealthy, 0, http.StatusInternalServerError},
		{"unhealthy stays unhealthy", modeUnhealthy, time.Hour, http.StatusInternalServerError},
		{"crash is healthy until it crashes", modeCrash, 0, http.StatusOK},
		{"slow while starting", modeSlow, 5 * time.Second, http.StatusServiceUnavailable},
		{"slow when ready", modeSlow, 20 * time.Second, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(config{Version: "1.0.0", Mode: tt.mode, SlowFor: 20 * time.Second}, start)
			s.now = func() time.Time { return start.Add(tt.since) }
			if code, body := get(t, s.handler(), "/healthz"); code != tt.want {
				t.Fatalf("GET /healthz = %d %q, want %d", code, body, tt.want)
			}
		})
	}
}

func TestVersionAndIndex(t *testing.T) {
	h := newServer(config{Version: "2.0.0", Mode: modeHealthy, Hostname: "box"}, time.Now()).handler()
	if code, body := get(t, h, "/version"); code != http.StatusOK || body != "2.0.0\n" {
		t.Fatalf("GET /version = %d %q", code, body)
	}
	code, body := get(t, h, "/")
	if code != http.StatusOK {
		t.Fatalf("GET / = %d", code)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET / is not JSON: %v: %q", err, body)
	}
	want := map[string]string{"version": "2.0.0", "mode": "healthy", "hostname": "box"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("GET / %s = %q, want %q", k, got[k], v)
		}
	}
	if code, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestHealthzFollowsBackend(t *testing.T) {
	backendCode := http.StatusOK
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(backendCode)
	}))
	defer backend.Close()

	h := newServer(config{Version: "1.0.0", Mode: modeHealthy, BackendURL: backend.URL}, time.Now()).handler()
	if code, body := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthy backend: GET /healthz = %d %q", code, body)
	}
	backendCode = http.StatusInternalServerError
	if code, body := get(t, h, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "500") {
		t.Fatalf("unhealthy backend: GET /healthz = %d %q, want 503 naming the backend's 500", code, body)
	}
	backend.Close()
	if code, _ := get(t, h, "/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("backend down: GET /healthz = %d, want 503", code)
	}
}

func TestSecretIsHashedNeverShown(t *testing.T) {
	const value = "s3cr3t-value"
	p := filepath.Join(t.TempDir(), "db_password")
	if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newServer(config{Mode: modeHealthy, SecretFile: p}, time.Now()).handler()
	code, body := get(t, h, "/secret")
	sum := sha256.Sum256([]byte(value))
	if code != http.StatusOK || strings.TrimSpace(body) != hex.EncodeToString(sum[:]) {
		t.Fatalf("GET /secret = %d %q, want the sha256 of the file", code, body)
	}
	if strings.Contains(body, value) {
		t.Fatal("GET /secret leaked the secret")
	}
	h = newServer(config{Mode: modeHealthy}, time.Now()).handler()
	if code, _ := get(t, h, "/secret"); code != http.StatusNotFound {
		t.Fatalf("no secret configured: GET /secret = %d, want 404", code)
	}
}

func TestServeRefusesMissingSecret(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"serve"}, env(map[string]string{
		"APP_SECRET_FILE": filepath.Join(t.TempDir(), "missing"),
		"PORT":            "0",
	}), io.Discard, &stderr)
	if code != exitNoSecret || !strings.Contains(stderr.String(), "APP_SECRET_FILE") {
		t.Fatalf("exit %d, stderr %q; want %d and a message naming APP_SECRET_FILE", code, stderr.String(), exitNoSecret)
	}
}

func TestDataRecordsStarts(t *testing.T) {
	dir := t.TempDir()
	cfg := config{Version: "1.0.0", Mode: modeHealthy, Hostname: "box", DataDir: dir}
	for range 2 {
		if err := recordStart(cfg, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	code, body := get(t, newServer(cfg, time.Now()).handler(), "/data")
	if code != http.StatusOK || strings.Count(body, "version=1.0.0 host=box\n") != 2 {
		t.Fatalf("GET /data = %d %q, want two start lines", code, body)
	}
}

func TestMigrate(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"migrate"}, env(map[string]string{"APP_DATA_DIR": dir}), io.Discard, io.Discard); code != exitOK {
		t.Fatalf("migrate exit %d, want 0", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, migratedName))
	if err != nil || string(b) != version+"\n" {
		t.Fatalf("migrated = %q, %v; want the version", b, err)
	}

	var stderr bytes.Buffer
	code := run([]string{"migrate"}, env(map[string]string{"APP_DATA_DIR": dir, "APP_MIGRATE_FAIL": "1"}), io.Discard, &stderr)
	if code != exitMigrate || stderr.Len() == 0 {
		t.Fatalf("APP_MIGRATE_FAIL=1: exit %d stderr %q, want %d and a message", code, stderr.String(), exitMigrate)
	}
	if code := run([]string{"migrate"}, env(nil), io.Discard, io.Discard); code != exitUsage {
		t.Fatalf("no APP_DATA_DIR: exit %d, want %d", code, exitUsage)
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		check   func(config) bool
	}{
		{"defaults", nil, false, func(c config) bool {
			return c.Mode == mode && c.Port == "8080" && c.CrashAfter == 2*time.Second && c.SlowFor == 20*time.Second
		}},
		{"APP_MODE overrides the build", map[string]string{"APP_MODE": "slow", "APP_SLOW_FOR": "3s"}, false, func(c config) bool {
			return c.Mode == modeSlow && c.SlowFor == 3*time.Second
		}},
		{"backend URL without trailing slash", map[string]string{"APP_BACKEND_URL": "http://api:8080/"}, false, func(c config) bool {
			return c.BackendURL == "http://api:8080"
		}},
		{"unknown mode", map[string]string{"APP_MODE": "sleepy"}, true, nil},
		{"bad duration", map[string]string{"APP_CRASH_AFTER": "soon"}, true, nil},
		{"delay", map[string]string{"APP_DELAY": "300ms"}, false, func(c config) bool { return c.Delay == 300*time.Millisecond }},
		{"bad delay", map[string]string{"APP_DELAY": "-1s"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(env(tt.env))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil && !tt.check(c) {
				t.Fatalf("config = %+v", c)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	if code := check(port, io.Discard); code != exitOK {
		t.Fatalf("healthy: check = %d", code)
	}
	healthy = false
	if code := check(port, io.Discard); code != exitCheck {
		t.Fatalf("unhealthy: check = %d", code)
	}
}

func TestErrorRateAndMetrics(t *testing.T) {
	s := newServer(config{Version: "2.0.0", Mode: modeHealthy}, time.Now())
	h := s.handler()
	for range 4 {
		if code, _ := get(t, h, "/version"); code != http.StatusOK {
			t.Fatalf("GET /version with error rate 0 = %d", code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/errors?rate=0.5", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /errors?rate=0.5 = %d %s", rec.Code, rec.Body)
	}
	fails := 0
	for range 10 {
		if code, _ := get(t, h, "/version"); code == http.StatusInternalServerError {
			fails++
		}
	}
	if fails != 5 {
		t.Fatalf("with error rate 0.5, %d of 10 requests failed, want 5", fails)
	}
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("the health check must stay green while requests fail, got %d", code)
	}
	_, body := get(t, h, "/metrics")
	for _, want := range []string{`http_requests_total{code="200",version="2.0.0"} 9`, `http_requests_total{code="500",version="2.0.0"} 5`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	for _, bad := range []string{"/errors?rate=2", "/errors?rate=x", "/errors"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, bad, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("POST %s = %d, want 400", bad, rec.Code)
		}
	}
	if _, err := loadConfig(env(map[string]string{"APP_ERROR_RATE": "1.5"})); err == nil {
		t.Error("APP_ERROR_RATE=1.5 was accepted")
	}
}

func TestHealthzCountsProbes(t *testing.T) {
	h := newServer(config{Version: "1.0.0", Mode: modeHealthy}, time.Now()).handler()
	for i, ua := range []string{"gantry-health", "gantry-health", "Go-http-client/1.1"} {
		req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
		req.Header.Set("User-Agent", ua)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("probe %d: %d", i, rec.Code)
		}
	}
	_, body := get(t, h, "/metrics")
	for _, want := range []string{`healthz_requests_total{prober="gantry"} 2`, `healthz_requests_total{prober="other"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

func TestDelay(t *testing.T) {
	h := newServer(config{Version: "2.0.0", Mode: modeHealthy, Delay: 50 * time.Millisecond}, time.Now()).handler()
	start := time.Now()
	if code, _ := get(t, h, "/version"); code != http.StatusOK {
		t.Fatalf("GET /version = %d", code)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("answered in %s with APP_DELAY 50ms", took)
	}
	start = time.Now()
	get(t, h, "/healthz")
	if took := time.Since(start); took >= 50*time.Millisecond {
		t.Errorf("the health check waited %s: the delay is for counted requests only", took)
	}
}
