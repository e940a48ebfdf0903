package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// DistributionBinary is Debian's distribution registry (package docker-registry).
const DistributionBinary = "/usr/bin/docker-registry"

// DistributionRegistry starts Debian's distribution registry
// (docker-registry) on a free 127.0.0.1 port with storage in a temporary
// directory, without authentication, and returns its host:port. It is
// stopped when the test ends.
func DistributionRegistry(t testing.TB) string {
	t.Helper()
	return startDistribution(t, "", "")
}

// DistributionRegistryAuth is DistributionRegistry with basic
// authentication (htpasswd, bcrypt) for one user.
func DistributionRegistryAuth(t testing.TB, user, password string) string {
	t.Helper()
	return startDistribution(t, user, password)
}

func startDistribution(t testing.TB, user, password string) string {
	t.Helper()
	bin := DistributionBinary
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("docker-registry")
		if lerr != nil {
			t.Fatalf("this test needs Debian's distribution registry (%s) and it is not installed.\n"+
				"Run `make deps` as root (scripts/ensure-docker-registry.sh installs it), or `apt-get install docker-registry`.", bin)
		}
		bin = p
	}
	dir := t.TempDir()
	addr := FreeAddr(t)
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: gantry-test\n    path: %s\n", htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, auth)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The registry reads REGISTRY_* variables as configuration; keep the
	// environment of the test run from changing it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return addr
			}
		}
		select {
		case <-done:
			out, _ := os.ReadFile(logPath)
			t.Fatalf("docker-registry exited at start:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			t.Fatalf("docker-registry did not answer on %s within 15s (%v):\n%s", addr, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClosedPort is a 127.0.0.1 address where nothing listens, for tests of
// connection errors.
func ClosedPort(t testing.TB) string {
	t.Helper()
	return FreeAddr(t)
}

var staticBins struct {
	sync.Mutex
	dir  string
	bins map[string]string
}

// helloSource prints its message, its arguments and $MODE, then exits 0:
// a program small enough to cross-compile in a test.
const helloSource = `package main

import (
	"fmt"
	"os"
	"runtime"
)

var message = "hello"

func main() {
	fmt.Printf("%s from %s/%s args=%v mode=%s uid=%d\n", message, runtime.GOOS, runtime.GOARCH, os.Args[1:], os.Getenv("MODE"), os.Getuid())
}
`

// StaticBinary cross-compiles a tiny static Go program (CGO_ENABLED=0) for
// linux/goarch that prints message, its os/arch, its arguments, $MODE and
// its uid. Binaries are built once per test process and message.
func StaticBinary(t testing.TB, goarch, message string) string {
	t.Helper()
	staticBins.Lock()
	defer staticBins.Unlock()
	key := goarch + "/" + message
	if p, ok := staticBins.bins[key]; ok {
		return p
	}
	if staticBins.dir == "" {
		d, err := os.MkdirTemp("", "gantry-static-")
		if err != nil {
			t.Fatal(err)
		}
		staticBins.dir, staticBins.bins = d, map[string]string{}
		if err := os.WriteFile(filepath.Join(d, "main.go"), []byte(helloSource), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(staticBins.dir, fmt.Sprintf("hello-%s-%d", goarch, len(staticBins.bins)))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.message="+message, "-o", out, "main.go")
	cmd.Dir = staticBins.dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GO111MODULE=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross-compile for linux/%s: %v\n%s", goarch, err, b)
	}
	staticBins.bins[key] = out
	return out
}
