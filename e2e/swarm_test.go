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
