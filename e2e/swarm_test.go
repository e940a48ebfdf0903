package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/testenv"
)

const gantrySwarm = `
project: PROJECT
compose: compose.yaml
environments:
  staging:
    swarm: SWARM
    health:
      window: 90s
      min_healthy: 1s
`

// webAPI is two services on a swarm; api comes after web.
const webAPI = `
services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    deploy: { replicas: 2 }
    networks: [front]
  api:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    depends_on: [web]
    networks: [front]
networks:
  front: {}
`

// TestSwarmCrashIsRecovered: gantry killed (SIGKILL, through a failpoint)
// at each step of a deploy to a swarm loses no record, and the next
// command brings every service back to one known release: the serving one,
// or the new one once it was committed.
func TestSwarmCrashIsRecovered(t *testing.T) {
	sc := testenv.Swarm(t)
	img := map[string]string{}
	for _, tag := range []string{testenv.Healthy, "healthy-v2", testenv.Unhealthy} {
		img[tag] = testenv.PushImage(t, sc.Manager, testenv.Image(t, tag), sc.Registry, "gantry-test/app:"+tag)
	}
	cases := []struct {
		point string
		api   string // api's image in the release being deployed
		want  string // the release serving after the recovery
	}{
		{"step:roll", "healthy-v2", "1.0.0"},
		{"step:verdict", "healthy-v2", "1.0.0"},
		{"state:verifying", "healthy-v2", "1.0.0"},
		{"state:succeeded", "healthy-v2", "2.0.0"},
		{"step:rollback", testenv.Unhealthy, "1.0.0"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.point, ":", "-"), func(t *testing.T) {
			p := newProject(t, "swcrash", strings.ReplaceAll(gantrySwarm, "SWARM", sc.Host), webAPI)
			p.deploy(0, "staging", "--release", "1.0.0", "--image", "web="+img[testenv.Healthy], "--image", "api="+img[testenv.Healthy])
			p.env = []string{"GANTRY_FAILPOINTS=" + tc.point}
			r := p.run("deploy", "staging", "--release", "2.0.0", "--image", "web="+img["healthy-v2"], "--image", "api="+img[tc.api])
			if r.code != -1 || !strings.Contains(r.stderr, "failpoint") {
				t.Fatalf("gantry should have been killed at %s: %s", tc.point, r)
			}
			p.env = nil
			st := p.status("staging")
			if st.Release != tc.want {
				t.Fatalf("after recovery the record says %q serves, want %q", st.Release, tc.want)
			}
			for _, s := range st.Services {
				if s.Release != tc.want || s.Replicas == nil || s.Replicas.Running != s.Replicas.Desired || s.State != "running" {
					t.Errorf("after recovery %s runs release %s, %+v, state %s; want %s, all replicas running", s.Name, s.Release, s.Replicas, s.State, tc.want)
				}
			}
			ctx := context.Background()
			list, err := sc.Manager.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.gantry.project="+p.name))})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range list {
				if s.Spec.Labels["io.gantry.release"] != tc.want {
					t.Errorf("service %s is release %s on the swarm, want %s", s.Spec.Name, s.Spec.Labels["io.gantry.release"], tc.want)
				}
				if u := s.UpdateStatus; u != nil && (u.State == swarm.UpdateStatePaused || u.State == swarm.UpdateStateUpdating || u.State == swarm.UpdateStateRollbackStarted) {
					t.Errorf("service %s is left %s", s.Spec.Name, u.State)
				}
			}
			for _, h := range p.history("staging") {
				if !h.State.Terminal() {
					t.Errorf("deployment %d is left %s", h.ID, h.State)
				}
			}
		})
	}
}

// TestSwarmKeepReleasesPrunes: with keep_releases 0, gantry deploy prunes
// the secret of a release that neither the serving release nor any
// service's PreviousSpec uses, says so, and gantry rollback --to that
// release is refused with exit 2 once the secret's source holds another
// value, changing nothing.
func TestSwarmKeepReleasesPrunes(t *testing.T) {
	sc := testenv.Swarm(t)
	img := map[string]string{}
	for _, tag := range []string{testenv.Healthy, "healthy-v2"} {
		img[tag] = testenv.PushImage(t, sc.Manager, testenv.Image(t, tag), sc.Registry, "gantry-test/app:"+tag)
	}
	p := newProject(t, "swkeep", strings.ReplaceAll(`
project: PROJECT
compose: compose.yaml
environments:
  staging:
    swarm: SWARM
    keep_releases: 0
    health: { window: 90s, min_healthy: 1s }
`, "SWARM", sc.Host), `
services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    secrets: [token]
secrets:
  token: { environment: TOKEN }
`)
	p.env = []string{"TOKEN=tok-value-one"}
	p.deploy(0, "staging", "--release", "1.0.0", "--image", "web="+img[testenv.Healthy])
	p.env = []string{"TOKEN=tok-value-two"}
	p.deploy(0, "staging", "--release", "2.0.0", "--image", "web="+img["healthy-v2"])
	p.env = []string{"TOKEN=tok-value-three"}
	r := p.run("deploy", "staging", "--release", "3.0.0", "--image", "web="+img[testenv.Healthy])
	if r.code != 0 {
		t.Fatalf("deploy 3.0.0: %s", r)
	}
	// 1.0.0's secret: neither 3.0.0 nor web's PreviousSpec (2.0.0) uses it.
	if !strings.Contains(r.stderr, "pruned what 3.0.0 does not use (keep_releases: 0): secret "+p.name+"-staging_token_") {
		t.Errorf("deploy 3.0.0 does not say it pruned 1.0.0's secret:\n%s", r.stderr)
	}
	secrets, err := sc.Manager.SecretList(context.Background(), swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("label", "io.gantry.project="+p.name))})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 2 {
		t.Errorf("%d secrets of the project on the swarm after 3.0.0, want 2 (3.0.0's, and 2.0.0's in web's PreviousSpec)", len(secrets))
	}

	r = p.run("rollback", "staging", "--to", "1.0.0")
	if r.code != 2 || !strings.Contains(r.stderr, "release 1.0.0 cannot run") || !strings.Contains(r.stderr, "environment variable TOKEN: it holds another value now") {
		t.Fatalf("rollback --to 1.0.0, whose secret was pruned: want exit 2 saying why, got %s", r)
	}
	if strings.Contains(r.stdout+r.stderr, "tok-value") {
		t.Errorf("the refusal shows a secret value:\n%s", r)
	}
	if st := p.status("staging"); st.Release != "3.0.0" || len(st.Services) != 1 || st.Services[0].Release != "3.0.0" || st.Services[0].State != "running" {
		t.Errorf("after the refused rollback: release %s, services %+v; want 3.0.0 running", st.Release, st.Services)
	}
	if h := p.history("staging"); len(h) != 3 {
		t.Errorf("the refused rollback left %d deployments in the history, want 3", len(h))
	}
}

// gantrySwarmRouted routes web on a swarm through `gantry proxy`.
const gantrySwarmRouted = `
project: PROJECT
compose: compose.yaml
proxy:
  listen: 127.0.0.1:PORT
  drain_timeout: 5s
environments:
  staging:
    swarm: SWARM
    health:
      window: 60s
      min_healthy: 1s
    routes:
      web: { port: 8080 }
`

// webSwarmRouted is web in two replicas; it publishes nothing itself
// (gantry publishes 8080 of each task on its node for the proxy).
const webSwarmRouted = `
services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 500ms, timeout: 3s, retries: 2 }
    deploy: { replicas: 2 }
`

// TestSwarmRoutedUnderLoad: a routed service on a swarm, behind `gantry
// proxy`, under a bounded load: a release Swarm rolls out task by task
// (start-first), then a release whose tasks never get healthy, which
// gantry rolls back, lose no request. The proxy follows the tasks: after
// each deploy it routes to the running release's tasks only, and a task
// Swarm replaces on its own (its container killed) is routed again.
func TestSwarmRoutedUnderLoad(t *testing.T) {
	sc := testenv.Swarm(t)
	img := map[string]string{}
	for _, tag := range []string{testenv.Healthy, "healthy-v2", testenv.Unhealthy} {
		img[tag] = testenv.PushImage(t, sc.Manager, testenv.Image(t, tag), sc.Registry, "gantry-test/app:"+tag)
	}
	p := newProject(t, "swroute", strings.ReplaceAll(gantrySwarmRouted, "SWARM", sc.Host), webSwarmRouted)
	p.startProxy()
	p.deploy(0, "staging", "--release", "1.0.0", "--image", "web="+img[testenv.Healthy])
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("through the proxy after the first deploy: %q", v)
	}
	// webRoute is web's route as `gantry proxy status` shows it.
	webRoute := func() *proxy.Route {
		t.Helper()
		r := p.run("proxy", "status", "--output", "json")
		var st proxy.Status
		if err := json.Unmarshal([]byte(r.stdout), &st); r.code != 0 || err != nil {
			t.Fatalf("proxy status: %v %s", err, r)
		}
		return st.Route("staging", "web")
	}
	tasksOf := func(want string) {
		t.Helper()
		rt := webRoute()
		if rt == nil || len(rt.Tasks) != 2 || rt.Upstream != nil {
			t.Fatalf("the route of web: %+v, want two tasks", rt)
		}
		for _, task := range rt.Tasks {
			if task.Release != want {
				t.Errorf("the route of web has a task of %s (%s), want only %s", task.Release, task.Addr, want)
			}
		}
	}
	tasksOf("1.0.0")
	if r := p.run("proxy", "status"); r.code != 0 || !strings.Contains(r.stdout, "2 swarm tasks") || !strings.Contains(r.stdout, "task: staging/web release 1.0.0 at ") {
		t.Errorf("proxy status does not show the tasks: %s", r)
	} else {
		t.Logf("gantry proxy status:\n%s", r.stdout)
	}

	load := testenv.StartLoad(t, fmt.Sprintf("http://127.0.0.1:%d/version", p.port), "", 100, 30*time.Second, nil)
	time.Sleep(500 * time.Millisecond)
	p.deploy(0, "staging", "--release", "2.0.0", "--image", "web="+img["healthy-v2"])
	if v := p.version(); v != "2.0.0" {
		t.Errorf("through the proxy after the rollout: %q", v)
	}
	tasksOf("2.0.0")
	r := p.run("deploy", "staging", "--release", "3.0.0", "--image", "web="+img[testenv.Unhealthy], "--output", "json")
	if r.code != 3 {
		t.Fatalf("deploy of a release that never gets healthy: want exit 3 (rolled back), got %s", r)
	}
	time.Sleep(500 * time.Millisecond)
	load.Stop()
	lr := load.Wait()
	t.Logf("load: %d requests, %d failed, by answer %v", lr.Total, lr.Failed, lr.ByKey)
	if lr.Failed != 0 {
		t.Errorf("%d of %d requests failed across the rollout and the rollback: %v", lr.Failed, lr.Total, lr.Errors)
	}
	if lr.ByKey["1.0.0"] == 0 || lr.ByKey["2.0.0"] == 0 {
		t.Errorf("answers by release %v: want some from 1.0.0 and from 2.0.0", lr.ByKey)
	}
	tasksOf("2.0.0")

	// Swarm replaces a task whose container dies, on a new port: the route
	// follows.
	ctx := context.Background()
	cs, err := sc.Manager.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "io.gantry.project="+p.name), filters.Arg("label", "io.gantry.service=web"))})
	if err != nil || len(cs) == 0 {
		t.Fatalf("web's containers on the manager: %v (%d)", err, len(cs))
	}
	if err := sc.Manager.ContainerKill(ctx, cs[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the route to follow the replaced task", func() bool {
		rt := webRoute()
		if rt == nil || len(rt.Tasks) != 2 {
			return false
		}
		for _, task := range rt.Tasks {
			if strings.HasSuffix(task.Addr, ":"+portOf(cs[0])) {
				return false
			}
		}
		return true
	})
	for range 10 {
		if v := p.version(); v != "2.0.0" {
			t.Fatalf("after the task was replaced: %q", v)
		}
	}

	// A canary needs two releases side by side; Swarm replaces tasks
	// itself: refused before anything changes.
	p.write("gantry.yaml", strings.Replace(strings.ReplaceAll(gantrySwarmRouted, "SWARM", sc.Host), "web: { port: 8080 }",
		"web:\n        port: 8080\n        canary: { steps: [{ weight: 10, pause: 1s }] }", 1))
	r = p.run("deploy", "staging", "--release", "4.0.0", "--image", "web="+img["healthy-v2"])
	if r.code != 2 || !strings.Contains(r.stderr, "has a canary, but staging is a swarm") {
		t.Errorf("a canary on a swarm: want exit 2 and why, got %s", r)
	}
	if st := p.status("staging"); st.Release != "2.0.0" {
		t.Errorf("after the refused deploy %s serves, want 2.0.0", st.Release)
	}
}

// portOf is the host port a task's container publishes for 8080.
func portOf(c container.Summary) string {
	for _, p := range c.Ports {
		if p.PrivatePort == 8080 && p.PublicPort != 0 {
			return fmt.Sprint(p.PublicPort)
		}
	}
	return "none"
}
