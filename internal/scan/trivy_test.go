package scan_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// vulnRelease builds the test image FROM scratch (the vulnapp binary,
// which links golang.org/x/text v0.3.7, at /app) into an image store,
// pushes it to Debian's distribution registry on 127.0.0.1, and returns a
// release of it and the store.
func vulnRelease(t *testing.T) (*store.Release, *image.Store) {
	t.Helper()
	ctx := context.Background()
	bin := testenv.VulnBinary(t, runtime.GOARCH)
	addr := testenv.DistributionRegistry(t)
	imgs, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	platform := "linux/" + runtime.GOARCH
	b, err := imgs.Build(ctx, nil, image.BuildRequest{Service: "web", Dir: filepath.Dir(bin),
		Build: &config.Build{Binaries: map[string]string{platform: bin}, Path: "/app"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo := addr + "/scan/web"
	if _, err := imgs.Push(ctx, []image.Target{{Service: "web", Digest: b.Digest, Repository: repo, Tags: []string{"1.0.0"}}}, image.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	return &store.Release{Project: "scan", Version: "1.0.0", State: store.ReleaseReleased,
		Images: map[string]store.ReleaseImage{"web": {Repository: repo, Digest: b.Digest, Platforms: b.Manifests}}}, imgs
}

// project writes gantry.yaml with gates.scan pointing at the test Trivy and
// its offline database, and an ignore file, and loads it.
func project(t *testing.T, scanSection, ignores string) *config.File {
	t.Helper()
	dir := t.TempDir()
	yaml := fmt.Sprintf("project: scan\nenvironments:\n  staging:\ngates:\n  scan:\n    trivy: %s\n    cache_dir: %s\n    offline: true\n%s",
		testenv.Trivy(t), testenv.TrivyCache(t), scanSection)
	if err := os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if ignores != "" {
		if err := os.WriteFile(filepath.Join(dir, ".gantry-ignore.yaml"), []byte(ignores), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func gate(t *testing.T, f *config.File) *scan.Gate {
	t.Helper()
	o, p, err := scan.Settings(f, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g, err := scan.Open(context.Background(), o, p)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func finding(v *scan.Verdict, id string) *scan.Finding {
	for i := range v.Findings {
		if v.Findings[i].ID == id {
			return &v.Findings[i]
		}
	}
	return nil
}

// TestTrivyGate: real Trivy, offline, against the database the test setup
// writes with Trivy's own packages, finds golang.org/x/text v0.3.7 in the
// image's binary, from the registry by digest and from the image store
// before a push; the gate fails on it, an ignore entry until a future day
// lets it pass, and one whose day has passed does not.
func TestTrivyGate(t *testing.T) {
	ctx := context.Background()
	rel, imgs := vulnRelease(t)
	platform := "linux/" + runtime.GOARCH

	v, err := gate(t, project(t, "", "")).Run(ctx, scan.ReleaseImages(rel), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed || v.Counts.Fail != 1 || v.Trivy != "0.74.0" {
		t.Fatalf("want one failing finding from trivy 0.74.0, got %+v", v)
	}
	f := finding(v, testenv.TrivyAdvisory)
	if f == nil || f.Outcome != scan.Fail || f.Package != "golang.org/x/text" || f.Installed != "v0.3.7" || f.Fixed != "v0.3.8" ||
		f.Severity != scan.High || f.Service != "web" || f.Platform != platform || f.Target != "app" {
		t.Fatalf("CVE-2022-32149: %+v", f)
	}
	if u := finding(v, "GANTRY-TEST-0001"); u == nil || u.Severity != scan.Medium || u.Fixed != "" || u.Outcome != scan.Below {
		t.Errorf("the unfixed MEDIUM one: %+v", u)
	}
	if img := v.Images[0]; img.Ref != rel.Images["web"].Repository+"@"+rel.Images["web"].Platforms[platform] {
		t.Errorf("scanned %s, want the platform manifest by digest", img.Ref)
	}
	if err := v.Err("1.0.0"); !errors.Is(err, scan.ErrFailed) || !strings.Contains(err.Error(), "HIGH CVE-2022-32149 in golang.org/x/text v0.3.7 (web)") {
		t.Errorf("error: %v", err)
	}

	// Before the push: the same image, read from the image store.
	stored, err := gate(t, project(t, "", "")).Run(ctx, scan.StoredImages(rel, imgs.Dir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Passed || finding(stored, testenv.TrivyAdvisory) == nil || len(stored.Findings) != len(v.Findings) {
		t.Errorf("from the image store: %+v", stored)
	}

	today := time.Now().UTC()
	ignore := func(expires time.Time) string {
		return fmt.Sprintf("vulnerabilities:\n  - id: CVE-2022-32149\n    package: golang.org/x/text\n    reason: the service never parses Accept-Language headers\n    expires: %s\n",
			expires.Format(time.DateOnly))
	}
	tests := []struct {
		name          string
		scan, ignores string
		passed        bool
		expired       int
		outcome       scan.Outcome
	}{
		{name: "an ignore until next month passes", ignores: ignore(today.AddDate(0, 1, 0)), passed: true, outcome: scan.Ignored},
		{name: "an ignore until today passes", ignores: ignore(today), passed: true, outcome: scan.Ignored},
		{name: "an ignore that ended yesterday fails", ignores: ignore(today.AddDate(0, 0, -1)), expired: 1, outcome: scan.Fail},
		{name: "fail_on critical passes HIGH", scan: "    fail_on: critical\n", passed: true, outcome: scan.Below},
		{name: "fail_on medium fails the unfixed one too", scan: "    fail_on: medium\n", outcome: scan.Fail},
		{name: "ignore_unfixed passes the unfixed one", scan: "    fail_on: medium\n    ignore_unfixed: true\n    ignore_file: accepted.yaml\n", outcome: scan.Fail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := project(t, tc.scan, tc.ignores)
			if strings.Contains(tc.scan, "accepted.yaml") {
				if err := os.WriteFile(f.RelPath("accepted.yaml"), []byte(ignore(today.AddDate(1, 0, 0))), 0o644); err != nil {
					t.Fatal(err)
				}
				tc.passed, tc.outcome = true, scan.Ignored
			}
			v, err := gate(t, f).Run(ctx, scan.ReleaseImages(rel), nil)
			if err != nil {
				t.Fatal(err)
			}
			if v.Passed != tc.passed || len(v.ExpiredIgnores) != tc.expired || finding(v, testenv.TrivyAdvisory).Outcome != tc.outcome {
				t.Fatalf("passed %v, expired %d, outcome %s; want %v, %d, %s\n%s", v.Passed, len(v.ExpiredIgnores),
					finding(v, testenv.TrivyAdvisory).Outcome, tc.passed, tc.expired, tc.outcome, v.Summary())
			}
			if strings.Contains(tc.scan, "ignore_unfixed") && finding(v, "GANTRY-TEST-0001").Outcome != scan.Unfixed {
				t.Errorf("the unfixed one: %+v", finding(v, "GANTRY-TEST-0001"))
			}
			if strings.Contains(tc.scan, "fail_on: medium") && !strings.Contains(tc.scan, "ignore_unfixed") && v.Counts.Fail != 2 {
				t.Errorf("fail_on medium: %+v", v.Counts)
			}
		})
	}
}

// TestTrivyServerMode: the same verdict through a real `trivy server` on
// loopback, which holds the database; the client reads the image.
func TestTrivyServerMode(t *testing.T) {
	ctx := context.Background()
	rel, _ := vulnRelease(t)
	bin := testenv.Trivy(t)
	// The server gets its own copy of the database.
	cache := t.TempDir()
	if err := os.CopyFS(filepath.Join(cache, "db"), os.DirFS(filepath.Join(testenv.TrivyCache(t), "db"))); err != nil {
		t.Fatal(err)
	}
	addr := loopbackPort(t)
	srv := exec.Command(bin, "server", "--listen", addr, "--cache-dir", cache, "--skip-db-update", "--quiet")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Kill()
		srv.Wait()
	})
	waitHealthy(t, "http://"+addr+"/healthz")

	f := project(t, "    server: http://"+addr+"\n", "")
	v, err := gate(t, f).Run(ctx, scan.ReleaseImages(rel), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Passed || v.Server != "http://"+addr || finding(v, testenv.TrivyAdvisory) == nil || finding(v, testenv.TrivyAdvisory).Outcome != scan.Fail {
		t.Fatalf("through the server: %+v", v)
	}

	// A server that does not answer: the error says so and what to do.
	down := project(t, "    server: http://"+testenv.ClosedPort(t)+"\n    timeout: 20s\n", "")
	_, err = gate(t, down).Run(ctx, scan.ReleaseImages(rel), nil)
	if err == nil || !strings.Contains(err.Error(), "no Trivy server answers") {
		t.Errorf("a server that is down: %v", err)
	}
}

// TestTrivyMissing: without Trivy, the error names the install command and
// the script.
func TestTrivyMissing(t *testing.T) {
	ctx := context.Background()
	for name, o := range map[string]scan.Options{
		"not on PATH":  {},
		"a wrong path": {Trivy: filepath.Join(t.TempDir(), "trivy")},
		"not trivy":    {Trivy: "/bin/false"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			_, err := scan.Open(ctx, o, scan.Policy{})
			if !errors.Is(err, scan.ErrTrivyMissing) || !strings.Contains(err.Error(), scan.TrivyInstall) {
				t.Fatalf("want ErrTrivyMissing naming %q, got %v", scan.TrivyInstall, err)
			}
			if name != "not trivy" && !strings.Contains(err.Error(), "scripts/ensure-trivy.sh") {
				t.Errorf("the error does not name scripts/ensure-trivy.sh: %v", err)
			}
		})
	}
	// gates.scan.trivy naming a program that is not on PATH.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: p\nenvironments:\n  staging:\ngates:\n  scan:\n    trivy: trivy-0.74\n"), 0o644)
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, _, err := scan.Settings(f, time.Now()); !errors.Is(err, scan.ErrTrivyMissing) || !strings.Contains(err.Error(), `"trivy-0.74"`) {
		t.Errorf("gates.scan.trivy not on PATH: %v", err)
	}
}

// TestSettingsBadIgnoreFile: a bad ignore file stops the gate before Trivy
// runs, naming the file and the line.
func TestSettingsBadIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: p\nenvironments:\n  staging:\ngates:\n  scan:\n    ignore_file: sec/ignore.yaml\n"), 0o644)
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := scan.Settings(f, time.Now()); !errors.Is(err, scan.ErrInput) || !strings.Contains(err.Error(), "sec/ignore.yaml does not exist") {
		t.Errorf("missing ignore file: %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "sec"), 0o755)
	os.WriteFile(filepath.Join(dir, "sec", "ignore.yaml"), []byte("vulnerabilities:\n  - id: CVE-2022-32149\n    expires: 2030-01-01\n"), 0o644)
	if _, _, err := scan.Settings(f, time.Now()); !errors.Is(err, scan.ErrInput) || !strings.Contains(err.Error(), "ignore.yaml:2") || !strings.Contains(err.Error(), "reason is missing") {
		t.Errorf("entry without a reason: %v", err)
	}
	// Without ignore_file, a missing .gantry-ignore.yaml is no error.
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: p\nenvironments:\n  staging:\n"), 0o644)
	f, _ = config.Load(filepath.Join(dir, "gantry.yaml"))
	if _, p, err := scan.Settings(f, time.Now()); err != nil || p.FailOn != scan.High || p.IgnoreFile != "" {
		t.Errorf("defaults: %+v %v", p, err)
	}
}

// loopbackPort picks a free 127.0.0.1 port in 21000-21999.
func loopbackPort(t *testing.T) string {
	t.Helper()
	for range 50 {
		addr := fmt.Sprintf("127.0.0.1:%d", 21000+rand.IntN(1000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port in 127.0.0.1:21000-21999")
	return ""
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("trivy server at %s did not become healthy in 30s", url)
}
