package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// gantryRouted routes web through the gantry proxy on the project's port.
const gantryRouted = `
project: PROJECT
compose: compose.yaml
proxy:
  listen: 127.0.0.1:PORT
  drain_timeout: 5s
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
    routes:
      web: { port: 8080 }
`

// webRouted publishes no port: gantry publishes 8080 on loopback for the
// proxy.
const webRouted = `
services:
  web:
    image: IMG_healthy
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 2s
      retries: 3
    read_only: true
`

// startProxy runs `gantry proxy` for the project and waits for its socket.
func (p *project) startProxy() {
	p.t.Helper()
	_, out, errb := p.start("proxy")
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "admin socket") {
		if time.Now().After(deadline) {
			p.t.Fatalf("gantry proxy did not start:\n%s\n%s", out, errb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBlueGreenCrashIsRecovered kills gantry (SIGKILL, through failpoints)
// around the switch of a routed service; the next command recovers and the
// proxy sends traffic to exactly the release the record says serves, whose
// container runs.
func TestBlueGreenCrashIsRecovered(t *testing.T) {
	for _, tc := range []struct{ point, want string }{
		{"step:switch", "1.0.0"},     // recorded, not yet switched
		{"step:drain", "1.0.0"},      // switched, then killed: recovery switches back
		{"state:succeeded", "2.0.0"}, // committed
	} {
		t.Run(strings.ReplaceAll(tc.point, ":", "-"), func(t *testing.T) {
			p := newProject(t, "bgcrash", gantryRouted, webRouted)
			p.startProxy()
			p.deploy(0, "staging", "--release", "1.0.0")
			if v := p.version(); v != "1.0.0" {
				t.Fatalf("through the proxy: %q", v)
			}
			p.env = []string{"GANTRY_FAILPOINTS=" + tc.point}
			r := p.run("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
			if r.code != -1 || !strings.Contains(r.stderr, "failpoint") {
				t.Fatalf("gantry should have been killed at %s: %s", tc.point, r)
			}
			p.env = nil
			// The recovery (run by the next command) loses no request:
			// a route the killed gantry switched goes back before the new
			// container is removed.
			load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 50, 30*time.Second, nil)
			time.Sleep(200 * time.Millisecond)
			st := p.status("staging")
			time.Sleep(200 * time.Millisecond)
			load.Stop()
			if lr := load.Wait(); lr.Failed != 0 {
				t.Errorf("%d of %d requests failed during the recovery: %v", lr.Failed, lr.Total, lr.Errors)
			}
			if st.Release != tc.want {
				t.Fatalf("after recovery the record says %q serves, want %q", st.Release, tc.want)
			}
			if v := p.version(); v != tc.want {
				t.Fatalf("the proxy sends traffic to %q, want %q", v, tc.want)
			}
			r = p.run("proxy", "status", "--output", "json")
			if r.code != 0 || !strings.Contains(r.stdout, `"release": "`+tc.want+`"`) {
				t.Errorf("proxy status: %s", r)
			}
			// And the environment deploys again.
			p.deploy(0, "staging", "--release", "3.0.0", "--image", "web=IMG_healthy")
			if v := p.version(); v != "1.0.0" { // IMG_healthy reports 1.0.0
				t.Errorf("after a new deploy: %q", v)
			}
		})
	}
}
