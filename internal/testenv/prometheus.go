package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries of Debian's prometheus and prometheus-alertmanager packages
// (scripts/ensure-prometheus.sh installs them).
const (
	PrometheusBin   = "/usr/bin/prometheus"
	AlertmanagerBin = "/usr/bin/prometheus-alertmanager"
)

// Server is a Prometheus or an Alertmanager a test started on loopback.
type Server struct {
	// URL is http://127.0.0.1:PORT.
	URL string
	// Dir holds its configuration and data.
	Dir  string
	cmd  *exec.Cmd
	out  *SyncBuffer
	done chan struct{}
}

// Output is what the process printed, for a failing test's message.
func (s *Server) Output() string { return s.out.String() }

// Stop kills the process; the test's cleanup also does.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// StartPrometheus writes config (prometheus.yml) to a temporary directory,
// starts Debian's Prometheus on a free 127.0.0.1 port with its data there,
// waits until it is ready, and kills it when the test ends.
func StartPrometheus(t testing.TB, config string) *Server {
	t.Helper()
	return startServer(t, "prometheus", PrometheusBin, "prometheus.yml", config, func(dir, addr string) []string {
		return []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--web.enable-lifecycle",
			"--log.level=warn"}
	})
}

// StartAlertmanager is StartPrometheus for Debian's Alertmanager, with
// clustering off (it would bind 0.0.0.0:9094 otherwise).
func StartAlertmanager(t testing.TB, config string) *Server {
	t.Helper()
	return startServer(t, "alertmanager", AlertmanagerBin, "alertmanager.yml", config, func(dir, addr string) []string {
		return []string{"--config.file=" + filepath.Join(dir, "alertmanager.yml"),
			"--storage.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--cluster.listen-address=",
			"--log.level=warn"}
	})
}

func startServer(t testing.TB, name, bin, file, config string, args func(dir, addr string) []string) *Server {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("this test needs %s (Debian's %s package) and it is missing: run `make deps` as root, or apt-get install prometheus prometheus-alertmanager",
			bin, map[string]string{"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}[name])
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var last error
	// A port that was free when chosen may be taken before the process
	// binds it: try a few.
	for range 3 {
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		s := &Server{URL: "http://" + addr, Dir: dir, out: &SyncBuffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, args(dir, addr)...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		// Its own process group, so that it never gets the terminal's
		// Ctrl-C before the test's cleanup has run.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		go func() { s.cmd.Wait(); close(s.done) }()
		t.Cleanup(s.Stop)
		if last = waitReady(s, 30*time.Second); last == nil {
			return s
		}
		s.Stop()
	}
	t.Fatalf("%s did not become ready: %v", name, last)
	return nil
}

// waitReady polls /-/ready until it answers 200, the process exits, or the
// timeout passes.
func waitReady(s *Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s; output:\n%s", timeout, s.Output())
		case <-s.done:
			return fmt.Errorf("it exited; output:\n%s", s.Output())
		case <-time.After(50 * time.Millisecond):
		}
		if strings.Contains(s.Output(), "address already in use") {
			return fmt.Errorf("port taken; output:\n%s", s.Output())
		}
	}
}

// SyncBuffer is a bytes.Buffer safe to read while another goroutine (a
// process's output, a command under test) writes it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
