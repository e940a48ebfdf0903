// Package e2e drives the gantry binary against the real Docker engine: the
// deploy engine's promises, tested the way users meet them.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const gantryStaging = `
project: PROJECT
compose: compose.yaml
environments:
  staging:
    health:
      window: 30s
      min_healthy: 1s
`

// webFixed is one web service on a fixed loopback port: stop-first.
const webFixed = `
services:
  web:
    image: IMG_healthy
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 3s
      retries: 2
    restart: unless-stopped
    read_only: true
    networks: [front]
networks:
  front: {}
`

func TestDeployThenRollbackByHand(t *testing.T) {
	p := newProject(t, "happy", gantryStaging, webFixed)
	r1 := p.deploy(0, "staging", "--release", "1.0.0")
	if r1.State != store.Succeeded || len(r1.Services) != 1 || !r1.Services[0].Healthy {
		t.Fatalf("first deploy: %+v", r1)
	}
	if r1.Services[0].Strategy != "stop-first" {
		t.Errorf("a fixed host port must be replaced stop-first, got %s", r1.Services[0].Strategy)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
	r2 := p.deploy(0, "staging", "--release", "2.0.0", "--image", "web=IMG_healthy-v2")
	if r2.Previous != "1.0.0" {
		t.Errorf("previous release: %q", r2.Previous)
	}
	if v := p.version(); v != "2.0.0" {
		t.Fatalf("serving %q, want 2.0.0", v)
	}
	// The old release's container is kept, stopped, for a fast rollback.
	if run := p.running(); len(run) != 1 || run[0] != "web@2.0.0" {
		t.Fatalf("running after deploy 2: %v", run)
	}
	if n := len(p.containers()); n != 2 {
		t.Fatalf("want the new container and the kept old one, got %d containers", n)
	}
	st := p.status("staging")
	if st.Release != "2.0.0" || len(st.Services) != 1 || st.Services[0].Health != "healthy" || st.Kept != 1 {
		t.Fatalf("status: %+v", st)
	}
	rb := p.run("rollback", "staging", "--output", "json")
	if rb.code != 0 {
		t.Fatalf("rollback: %s", rb)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("after rollback serving %q, want 1.0.0", v)
	}
	hs := p.history("staging")
	if len(hs) != 3 || hs[0].Kind != "rollback" || hs[0].Release != "1.0.0" || !hs[0].Serving || hs[0].State != store.Succeeded {
		t.Fatalf("history: %+v", hs)
	}
	// A rollback to the release already serving is refused and changes nothing.
	before := p.snapshot()
	bad := p.run("rollback", "staging", "--to", "1.0.0")
	if bad.code != 2 || !strings.Contains(bad.stderr, "already serving") {
		t.Fatalf("rollback to the serving release: %s", bad)
	}
	if after := p.snapshot(); after != before {
		t.Fatalf("a refused rollback changed containers:\n%s\n%s", before, after)
	}
}

func TestUnhealthyReleaseRolledBack(t *testing.T) {
	p := newProject(t, "unhealthy", gantryStaging, webFixed)
	p.deploy(0, "staging", "--release", "1.0.0")
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_unhealthy")
	if res.State != store.RolledBack || res.Failure == nil || res.Failure.Service != "web" || res.Failure.Check != "healthcheck" {
		t.Fatalf("result: %+v failure %+v", res, res.Failure)
	}
	if !strings.Contains(res.Failure.Logs, "mode=unhealthy") {
		t.Errorf("the failure should carry the container's last log lines, got %q", res.Failure.Logs)
	}
	// The reason says why the check failed: its last output.
	if !strings.Contains(res.Failure.Reason, "(last: exit code 1: check: /healthz returned 500: unhealthy (mode unhealthy))") {
		t.Errorf("the reason should carry the healthcheck's last output, got %q", res.Failure.Reason)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("after the rollback serving %q, want 1.0.0", v)
	}
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Fatalf("running: %v", run)
	}
	for _, c := range p.containers() {
		if c.Labels["io.gantry.release"] == "2.0.0" {
			t.Fatalf("the failed release's container %s was left behind", c.Names)
		}
	}
	if res.RollbackSeconds <= 0 || res.RollbackSeconds > 30 {
		t.Errorf("rollback took %.1fs", res.RollbackSeconds)
	}
	hs := p.history("staging")
	if hs[0].State != store.RolledBack || !strings.Contains(hs[0].Reason, "rolled back to 1.0.0") || !hs[1].Serving {
		t.Fatalf("history: %+v", hs)
	}
}

func TestCrashLoopingReleaseRolledBack(t *testing.T) {
	// The crashing release exits 2s after it starts, healthy until then:
	// min_healthy is what catches it.
	compose := strings.Replace(webFixed, "restart: unless-stopped", "restart: always", 1)
	gy := strings.Replace(gantryStaging, "min_healthy: 1s", "min_healthy: 5s", 1)
	p := newProject(t, "crash", gy, compose)
	p.deploy(0, "staging", "--release", "1.0.0")
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_crash")
	if res.Failure == nil || res.Failure.Check != "exit" || !strings.Contains(res.Failure.Reason, "code 3") {
		t.Fatalf("want an exit failure with code 3, got %+v", res.Failure)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

func TestDeadlineExceededRolledBack(t *testing.T) {
	// The slow release answers 503 for 20s; the window is 3s.
	// Many retries: Docker would call it unhealthy only after 50s.
	gy := strings.Replace(gantryStaging, "window: 30s", "window: 3s", 1)
	p := newProject(t, "deadline", gy, strings.Replace(webFixed, "retries: 2", "retries: 100", 1))
	p.deploy(0, "staging", "--release", "1.0.0")
	start := time.Now()
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_slow")
	if res.Failure == nil || res.Failure.Check != "deadline" || !strings.Contains(res.Failure.Reason, "health window (3s)") {
		t.Fatalf("want a deadline failure, got %+v", res.Failure)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the deadline verdict came after %s; the window is 3s", took)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

func TestProbeFailureRolledBack(t *testing.T) {
	// An image without a healthcheck in compose, gated by gantry's own probe.
	gy := gantryStaging + `
      probes:
        web:
          http: { port: 8080, path: /healthz, status: 200 }
          interval: 200ms
`
	gy = strings.Replace(gy, "window: 30s", "window: 4s", 1)
	compose := strings.Replace(webFixed, `    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 500ms
      timeout: 3s
      retries: 2
`, "    healthcheck: { disable: true }\n", 1)
	p := newProject(t, "probe", gy, compose)
	ok := p.deploy(0, "staging", "--release", "1.0.0")
	if !strings.Contains(ok.Services[0].Reason, "probes") {
		t.Errorf("the verdict should name the probe: %q", ok.Services[0].Reason)
	}
	res := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_unhealthy")
	if res.Failure == nil || res.Failure.Check != "deadline" || !strings.Contains(res.Failure.Reason, "status 500, want 200") {
		t.Fatalf("want the probe's status in the reason, got %+v", res.Failure)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

// shop is a stack with an ordering to respect: a migration job that must
// complete, an api that needs it, and a web front that needs a healthy api.
const shop = `
services:
  web:
    image: IMG_healthy
    environment:
      APP_BACKEND_URL: http://api:8080
    depends_on:
      api: { condition: service_healthy }
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck: { test: ["CMD", "/app", "check"], interval: 500ms, timeout: 3s, retries: 2 }
    networks: [front, back]
  api:
    image: IMG_healthy
    environment:
      APP_DATA_DIR: /data
    depends_on:
      migrate: { condition: service_completed_successfully }
    volumes: ["data:/data"]
    healthcheck: { test: ["CMD", "/app", "check"], interval: 500ms, timeout: 3s, retries: 2 }
    networks: [back]
  migrate:
    image: IMG_healthy
    command: ["migrate"]
    environment:
      APP_DATA_DIR: /data
      APP_MIGRATE_FAIL: ${MIGRATE_FAIL:-0}
    volumes: ["data:/data"]
    restart: "no"
    networks: [back]
networks:
  front: {}
  back: {}
volumes:
  data: {}
`

func TestDependsOnOrderAndJob(t *testing.T) {
	// web finds api by name: no swarm test may change the engine's swarm
	// mode meanwhile (it loses the names of containers connected then).
	testenv.NoSwarmChanges(t)
	p := newProject(t, "shop", gantryStaging, shop)
	res := p.deploy(0, "staging", "--release", "1.0.0")
	var order []string
	for _, s := range res.Services {
		order = append(order, s.Name+":"+s.Strategy)
	}
	if got := strings.Join(order, " "); got != "migrate:job api:start-first web:stop-first" {
		t.Fatalf("deploy order: %s", got)
	}
	ctx := context.Background()
	byService := map[string]string{}
	for _, c := range p.containers() {
		byService[c.Labels["io.gantry.service"]] = c.ID
	}
	migrate, err := p.c.ContainerInspect(ctx, byService["migrate"])
	if err != nil {
		t.Fatal(err)
	}
	api, _ := p.c.ContainerInspect(ctx, byService["api"])
	web, _ := p.c.ContainerInspect(ctx, byService["web"])
	if migrate.State.ExitCode != 0 || migrate.State.Running {
		t.Fatalf("migrate should have completed: %+v", migrate.State)
	}
	if !(migrate.State.FinishedAt < api.State.StartedAt) {
		t.Errorf("api started (%s) before migrate finished (%s)", api.State.StartedAt, migrate.State.FinishedAt)
	}
	healthyAt := ""
	for _, l := range api.State.Health.Log {
		if l.ExitCode == 0 {
			healthyAt = l.End.UTC().Format(time.RFC3339Nano)
			break
		}
	}
	if healthyAt == "" || !(healthyAt < web.State.StartedAt) {
		t.Errorf("web started (%s) before api was healthy (%s)", web.State.StartedAt, healthyAt)
	}
	// web is healthy only when it reaches api over the back network.
	if _, err := get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p.port)); err != nil {
		t.Fatalf("web health through the api: %v", err)
	}

	// A failing migration fails the release; what served stays.
	p.env = []string{"MIGRATE_FAIL=1"}
	bad := p.deploy(3, "staging", "--release", "2.0.0", "--image", "api=IMG_healthy-v2", "--image", "web=IMG_healthy-v2")
	if bad.Failure == nil || bad.Failure.Service != "migrate" || !strings.Contains(bad.Failure.Reason, "job exited with code 5") {
		t.Fatalf("want the migrate job's failure, got %+v", bad.Failure)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

func TestSecretsMountedNotExposed(t *testing.T) {
	const filePassword = "s3cr3t-from-file-91d2"
	const envToken = "t0ken-from-env-77ab"
	compose := `
services:
  api:
    image: IMG_healthy
    environment:
      APP_SECRET_FILE: /run/secrets/db_password
    secrets: [db_password, api_token]
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck: { test: ["CMD", "/app", "check"], interval: 500ms, timeout: 3s, retries: 2 }
    read_only: true
secrets:
  db_password: { file: ./db_password.txt }
  api_token: { environment: GANTRY_TEST_TOKEN }
`
	p := newProject(t, "secrets", gantryStaging, compose)
	p.write("db_password.txt", filePassword)
	p.env = []string{"GANTRY_TEST_TOKEN=" + envToken}
	p.deploy(0, "staging", "--release", "1.0.0")

	// The app reads the file secret and reports its hash.
	sum, err := get(fmt.Sprintf("http://127.0.0.1:%d/secret", p.port))
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256hex(filePassword); sum != want {
		t.Fatalf("/run/secrets/db_password hash %s, want %s", sum, want)
	}
	cs := p.containers()
	if len(cs) != 1 {
		t.Fatalf("containers: %d", len(cs))
	}
	ctx := context.Background()
	token := readFile(t, p, cs[0].ID, "/run/secrets/api_token")
	if token != envToken {
		t.Fatalf("/run/secrets/api_token = %q", token)
	}
	ins, raw, err := p.c.ContainerInspectWithRaw(ctx, cs[0].ID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{filePassword, envToken} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("docker inspect shows a secret value")
		}
	}
	for _, e := range ins.Config.Env {
		if strings.Contains(e, "GANTRY_TEST_TOKEN") {
			t.Errorf("secret variable in the container's environment: %s", e)
		}
	}
	for _, m := range ins.Mounts {
		if strings.HasPrefix(m.Destination, "/run/secrets/") && m.RW {
			t.Errorf("secret %s is mounted read-write", m.Destination)
		}
	}
	// Nor does gantry's own record hold them.
	hs := p.run("history", "staging", "--output", "json")
	if strings.Contains(hs.stdout, envToken) || strings.Contains(hs.stdout, filePassword) {
		t.Errorf("history output shows a secret value")
	}
}

func TestNamedVolumeSurvivesDeploysAndRollbacks(t *testing.T) {
	compose := `
services:
  api:
    image: IMG_healthy
    environment: { APP_DATA_DIR: /data }
    volumes: ["data:/data"]
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck: { test: ["CMD", "/app", "check"], interval: 500ms, timeout: 3s, retries: 2 }
volumes:
  data: {}
`
	p := newProject(t, "volume", gantryStaging, compose)
	p.deploy(0, "staging", "--release", "1.0.0")
	p.deploy(0, "staging", "--release", "2.0.0", "--image", "api=IMG_healthy-v2")
	p.deploy(3, "staging", "--release", "3.0.0", "--image", "api=IMG_unhealthy")
	if r := p.run("rollback", "staging", "--to", "1.0.0"); r.code != 0 {
		t.Fatalf("rollback: %s", r)
	}
	data, err := get(fmt.Sprintf("http://127.0.0.1:%d/data", p.port))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(data), "\n")
	// Starts: 1.0.0, 2.0.0, the unhealthy 2.0.0, 2.0.0 again after the
	// automatic rollback, 1.0.0 again after the manual one.
	if len(lines) < 5 || !strings.Contains(lines[0], "version=1.0.0") || !strings.Contains(lines[len(lines)-1], "version=1.0.0") {
		t.Fatalf("the volume lost data across deploys and rollbacks:\n%s", data)
	}
}

func TestKillDuringHealthWaitIsRecovered(t *testing.T) {
	gy := strings.Replace(gantryStaging, "window: 30s", "window: 2m", 1)
	p := newProject(t, "kill", gy, webFixed)
	p.deploy(0, "staging", "--release", "1.0.0")
	cmd, _, _ := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_slow")
	waitFor(t, 30*time.Second, "the slow release's container to run", func() bool {
		return contains(p.running(), "web@2.0.0")
	})
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// The kill left release 2 running and release 1 stopped (stop-first).
	// The next command on the environment recovers.
	st := p.status("staging")
	if len(st.Recovered) != 1 {
		t.Fatalf("status should have recovered the interrupted deployment: %+v", st)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("after recovery serving %q, want 1.0.0", v)
	}
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Fatalf("running after recovery: %v", run)
	}
	hs := p.history("staging")
	if hs[0].Release != "2.0.0" || hs[0].State != store.RolledBack || !strings.Contains(hs[0].Reason, "interrupted") {
		t.Fatalf("history: %+v", hs[0])
	}
	// And the environment deploys again.
	p.deploy(0, "staging", "--release", "2.1.0", "--image", "web=IMG_healthy-v2")
}

func TestConcurrentDeployRefusedAndCtrlCRollsBack(t *testing.T) {
	gy := strings.Replace(gantryStaging, "window: 30s", "window: 2m", 1)
	p := newProject(t, "busy", gy, webFixed)
	p.deploy(0, "staging", "--release", "1.0.0")
	cmd, out, errb := p.start("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_slow", "--output", "json")
	waitFor(t, 30*time.Second, "the slow release's container to run", func() bool {
		return contains(p.running(), "web@2.0.0")
	})
	second := p.run("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2")
	if second.code != 5 || !strings.Contains(second.stderr, "is busy") || !strings.Contains(second.stderr, fmt.Sprint(cmd.Process.Pid)) {
		t.Fatalf("a second deploy must be refused naming the holder: %s", second)
	}
	// Ctrl-C: the first deploy rolls back before it exits.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("gantry did not exit within 60s of Ctrl-C")
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("after Ctrl-C want exit 3 (rolled back), got %d\n%s\n%s", code, out, errb)
	}
	var res struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.State != "rolled_back" || !strings.Contains(res.Reason, "interrupted") {
		t.Fatalf("result after Ctrl-C: %v %+v\n%s", err, res, out)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
}

// TestDeployBesideStatusLoop: commands that only look at an environment
// (gantry status, gantry history) while deploys start do not make them
// fail as busy. Each looks for interrupted work under the environment's
// lock for a moment; a deploy that finds the lock held so waits for it.
// (A deploy started beside the e2e test's history polling once failed
// this way.)
func TestDeployBesideStatusLoop(t *testing.T) {
	p := newProject(t, "beside", gantryStaging, webFixed)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var looks atomic.Int64
	for _, look := range []string{"status", "history"} {
		wg.Go(func() {
			for ctx.Err() == nil {
				cmd, _, _ := p.command(ctx, look, "staging")
				cmd.Run()
				looks.Add(1)
			}
		})
	}
	for _, rel := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		if r := p.run("deploy", "staging", "--release", rel); r.code != 0 {
			t.Errorf("deploy %s beside a loop of status and history: %s", rel, r)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("%d looks at staging beside 4 deploys", looks.Load())
}
