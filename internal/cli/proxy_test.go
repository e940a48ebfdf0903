package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/proxy"
)

// TestProxyCommand runs `gantry proxy` and drives it with its subcommands,
// as an operator would: switch, status, maintenance, and bad input.
func TestProxyCommand(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream saw "+r.Host+" from "+r.Header.Get("X-Forwarded-For"))
	}))
	defer up.Close()
	dir, err := os.MkdirTemp("", "gp") // short: the admin socket's path has a limit
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte(`project: shop
proxy:
  listen: 127.0.0.1:0
environments:
  staging:
    routes:
      web: { host: shop.test, port: 8080 }
`), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	exited := make(chan int, 1)
	go func() {
		code := Main(ctx, []string{"--file", filepath.Join(dir, "gantry.yaml"), "proxy"}, pw, io.Discard)
		pw.Close()
		exited <- code
	}()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("gantry proxy exited %d after SIGTERM-like cancel, want 0", code)
			}
		case <-time.After(10 * time.Second):
			t.Error("gantry proxy did not stop")
		}
	}()
	sc := bufio.NewScanner(pr)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "gantry proxy listening on http://"); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("gantry proxy printed no address")
	}
	go io.Copy(io.Discard, pr)

	fetch := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = "shop.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := fetch(); code != http.StatusServiceUnavailable {
		t.Errorf("before any switch: %d, want 503 (no release routed)", code)
	}
	upAddr := strings.TrimPrefix(up.URL, "http://")
	if out, errb, code := run(t, dir, "proxy", "switch", "staging", "web", upAddr, "--release", "1.4.0"); code != 0 || !strings.Contains(out, "switched web in staging: nothing -> "+upAddr) {
		t.Fatalf("proxy switch: exit %d %q %q", code, out, errb)
	}
	if code, body := fetch(); code != http.StatusOK || body != "upstream saw shop.test from 127.0.0.1" {
		t.Errorf("after the switch: %d %q", code, body)
	}
	out, _, code := run(t, dir, "--output", "json", "proxy", "status")
	var st proxy.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Routes) != 1 || st.Routes[0].Upstream == nil || st.Routes[0].Upstream.Release != "1.4.0" {
		t.Errorf("proxy status --output json: exit %d %s", code, out)
	}
	if out, _, code := run(t, dir, "proxy", "status"); code != 0 || !strings.Contains(out, "staging  web      shop.test  /     1.4.0") {
		t.Errorf("proxy status: exit %d\n%s", code, out)
	}
	// A canary (as a deploy sets it through the admin socket) shows.
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "canary") }))
	defer canary.Close()
	admin := proxy.NewClient(proxy.AdminSocket(filepath.Join(dir, ".gantry")))
	if _, err := admin.SetCanary(context.Background(), proxy.CanaryRequest{Env: "staging", Service: "web",
		To: proxy.Upstream{Addr: strings.TrimPrefix(canary.URL, "http://"), Release: "1.5.0"}, Weight: 25, Step: 2,
		Sticky: proxy.Sticky{Header: "X-User"}}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := run(t, dir, "proxy", "status"); code != 0 || !strings.Contains(out, "canary 25%") ||
		!strings.Contains(out, "canary: staging/web release 1.5.0 at "+strings.TrimPrefix(canary.URL, "http://")+" takes 25% (step 2, since ") ||
		!strings.Contains(out, "sticky by header X-User; 0 in flight") || strings.Contains(out, "draining") {
		t.Errorf("proxy status with a canary: exit %d\n%s", code, out)
	}
	if _, err := admin.AbortCanary(context.Background(), "staging", "web", "test"); err != nil {
		t.Fatal(err)
	}
	if _, errb, code := run(t, dir, "proxy", "maintenance", "staging", "on", "--message", "Back soon."); code != 0 {
		t.Fatalf("maintenance on: %d %s", code, errb)
	}
	if code, body := fetch(); code != http.StatusServiceUnavailable || !strings.Contains(body, "Back soon.") {
		t.Errorf("in maintenance: %d %q", code, body)
	}
	run(t, dir, "proxy", "maintenance", "staging", "off")
	if code, _ := fetch(); code != http.StatusOK {
		t.Errorf("after maintenance: %d", code)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"proxy", "switch", "staging", "api", upAddr}, ExitUsage, "api has no route in staging"},
		{[]string{"proxy", "switch", "staging", "web"}, ExitUsage, "needs ENV SERVICE HOST:PORT"},
		{[]string{"proxy", "switch", "staging", "web", "127.0.0.1:1"}, ExitUsage, "does not accept connections"},
		{[]string{"proxy", "maintenance", "staging", "maybe"}, ExitUsage, "on or off"},
		{[]string{"proxy", "maintenance", "prod", "on"}, ExitUsage, `no environment "prod"`},
		{[]string{"proxy", "--max-body", "lots"}, ExitUsage, `"lots" is not a size`},
		{[]string{"proxy", "--tls-cert", "x.pem"}, ExitUsage, "go together"},
		{[]string{"--state-dir", t.TempDir(), "proxy", "status"}, ExitError, "no gantry proxy answers"},
	} {
		_, errb, code := run(t, dir, tc.args...)
		if code != tc.code || !strings.Contains(errb, tc.msg) {
			t.Errorf("%v: exit %d %q; want %d and %q", tc.args, code, errb, tc.code, tc.msg)
		}
	}
	// Bad input changed nothing.
	if code, body := fetch(); code != http.StatusOK || !strings.HasPrefix(body, "upstream saw") {
		t.Errorf("after bad input: %d %q", code, body)
	}
}
