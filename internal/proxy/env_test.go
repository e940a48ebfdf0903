package proxy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/testenv"
)

const upstreamImage = "gantry-test/proxy-upstream:1"

var (
	upstreamOnce sync.Once
	upstreamErr  error
)

// buildUpstream builds testdata/upstream static and makes it an image FROM
// scratch, once per test process.
func buildUpstream(t testing.TB, c *client.Client) string {
	t.Helper()
	upstreamOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gantry-proxy-upstream")
		if err != nil {
			upstreamErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "upstream")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./testdata/upstream")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			upstreamErr = fmt.Errorf("go build testdata/upstream: %v\n%s", err, out)
			return
		}
		app, err := os.ReadFile(bin)
		if err != nil {
			upstreamErr = err
			return
		}
		dockerfile := []byte("FROM scratch\nCOPY upstream /upstream\nUSER 65532:65532\nEXPOSE 8080\nENTRYPOINT [\"/upstream\"]\n")
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))})
		tw.Write(dockerfile)
		tw.WriteHeader(&tar.Header{Name: "upstream", Mode: 0o755, Size: int64(len(app))})
		tw.Write(app)
		tw.Close()
		resp, err := c.ImageBuild(context.Background(), &buf, build.ImageBuildOptions{
			Tags: []string{upstreamImage}, Labels: map[string]string{testenv.LabelTest: "1"},
			Remove: true, ForceRemove: true, Version: build.BuilderV1,
		})
		if err != nil {
			upstreamErr = fmt.Errorf("build %s: %w", upstreamImage, err)
			return
		}
		defer resp.Body.Close()
		upstreamErr = docker.DrainStream(resp.Body)
	})
	if upstreamErr != nil {
		t.Fatal(upstreamErr)
	}
	return upstreamImage
}

// upstream is a test application container, its port 8080 published on an
// ephemeral 127.0.0.1 port, as gantry publishes a routed service.
type upstream struct {
	id, addr, release string
}

// startUpstream runs a container of the test application that says it is
// release, labelled for the test's project (removed at the end).
func startUpstream(t testing.TB, project, release string) upstream {
	t.Helper()
	c := testenv.Docker(t)
	img := buildUpstream(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := nat.Port("8080/tcp")
	created, err := c.ContainerCreate(ctx, &container.Config{
		Image: img, Env: []string{"RELEASE=" + release},
		ExposedPorts: nat.PortSet{port: {}},
		Labels:       map[string]string{testenv.LabelTest: "1", "io.gantry.project": project},
	}, &container.HostConfig{
		PortBindings: nat.PortMap{port: {{HostIP: "127.0.0.1", HostPort: ""}}},
	}, nil, nil, project+"-"+release)
	if err != nil {
		t.Fatalf("create the %s container: %v", release, err)
	}
	t.Cleanup(func() {
		c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start the %s container: %v", release, err)
	}
	info, err := c.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	b := info.NetworkSettings.Ports[port]
	if len(b) == 0 {
		t.Fatalf("the %s container published no port", release)
	}
	u := upstream{id: created.ID, addr: net.JoinHostPort("127.0.0.1", b[0].HostPort), release: release}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + u.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s container did not answer on %s within 20s: %v", release, u.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopUpstream stops a container: its port refuses connections.
func stopUpstream(t testing.TB, u upstream) {
	t.Helper()
	c := testenv.Docker(t)
	zero := 0
	if err := c.ContainerStop(context.Background(), u.id, container.StopOptions{Timeout: &zero}); err != nil {
		t.Fatal(err)
	}
}

// running is a proxy serving on loopback for a test.
type running struct {
	p       *Proxy
	reg     *prometheus.Registry
	http    string // http://127.0.0.1:port
	https   string
	admin   string
	stop    context.CancelFunc
	stopped chan struct{} // closed when Serve returned, with its error in err
	err     error
}

type proxyConf struct {
	stateFile string
	listen    string // default 127.0.0.1:0
	tls       bool
	maxBody   int64
	drain     time.Duration
}

// startProxy runs a proxy on ephemeral loopback ports, with its admin
// socket, until the test ends (or stop is called).
func startProxy(t testing.TB, pc proxyConf) *running {
	t.Helper()
	dir := t.TempDir()
	if pc.stateFile == "" {
		pc.stateFile = filepath.Join(dir, "state.json")
	}
	if pc.listen == "" {
		pc.listen = "127.0.0.1:0"
	}
	reg := prometheus.NewRegistry()
	p, err := New(Options{StateFile: pc.stateFile, MaxBody: pc.maxBody, DrainTimeout: pc.drain, Registerer: reg,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	so := ServeOptions{Listen: pc.listen, AdminSocket: filepath.Join(dir, "admin.sock"), ShutdownTimeout: 5 * time.Second}
	if pc.tls {
		cert := selfSigned(t)
		so.TLSListen = "127.0.0.1:0"
		so.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, reg: reg, stop: cancel, stopped: make(chan struct{})}
	ready := make(chan Listening, 1)
	go func() {
		r.err = p.Serve(ctx, so, func(l Listening) { ready <- l })
		close(r.stopped)
	}()
	select {
	case l := <-ready:
		r.http, r.admin = "http://"+l.HTTP, l.Admin
		if l.HTTPS != "" {
			r.https = "https://" + l.HTTPS
		}
	case <-r.stopped:
		t.Fatalf("proxy did not start: %v", r.err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.stopped:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop within 10s")
		}
	})
	return r
}

// testWriter sends the proxy's log to the test's.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// selfSigned makes a certificate for 127.0.0.1 and localhost.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry proxy test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "shop.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// get sends a GET for host and path through the proxy at base.
func get(t testing.TB, c *http.Client, base, host, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s (Host %s): %v", base, path, host, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}
