package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

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
