package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
	gswarm "github.com/gantryhq/gantry/internal/swarm"
	"github.com/gantryhq/gantry/internal/testenv"
)

// The example image's own healthcheck gives a check 1s; on a machine busy
// with other tests, healthy tasks then fail it. The compose files of these
// tests give it 3s, as a user would on a busy swarm.

// fixture is one test's project on a test swarm: gantry.yaml and a compose
// file in a directory, a store, and an engine over the swarm runtime.
type fixture struct {
	t       *testing.T
	sc      *testenv.SwarmCluster
	dir     string
	project string
	rt      *gswarm.Runtime
	st      *store.Store
	eng     *deploy.Engine
	images  map[string]string
}

const gantryYAML = `project: PROJECT
compose: compose.yaml
environments:
  staging:
    swarm: HOST
    health: { window: 90s, min_healthy: 2s }
`

func newFixture(t *testing.T, sc *testenv.SwarmCluster, compose string) *fixture {
	t.Helper()
	f := &fixture{t: t, sc: sc, dir: t.TempDir(), project: testenv.Project(t, "sw"), images: map[string]string{}}
	for _, tag := range []string{testenv.Healthy, "healthy-v2", testenv.Unhealthy} {
		f.images[tag] = testenv.PushImage(t, sc.Manager, testenv.Image(t, tag), sc.Registry, "gantry-test/app:"+tag)
	}
	y := strings.NewReplacer("PROJECT", f.project, "HOST", sc.Host).Replace(gantryYAML)
	f.write("gantry.yaml", y)
	f.write("compose.yaml", compose)
	rt, err := gswarm.New(sc.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	st, err := store.Open(filepath.Join(f.dir, ".gantry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.rt, f.st = rt, st
	f.eng = deploy.New(rt, st, filepath.Join(f.dir, ".gantry"), deploy.WithReporter(testReporter{t}))
	return f
}

func (f *fixture) write(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) model() (*config.Model, error) {
	file, err := config.Load(filepath.Join(f.dir, "gantry.yaml"))
	if err != nil {
		return nil, err
	}
	return file.Resolve(context.Background(), "staging")
}

// deploy deploys release with images given as SERVICE=TAG of the pushed
// test images.
func (f *fixture) deploy(release string, tags map[string]string) (*deploy.Result, error) {
	f.t.Helper()
	m, err := f.model()
	if err != nil {
		return nil, err
	}
	images := map[string]string{}
	for svc, tag := range tags {
		images[svc] = f.images[tag]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	return f.eng.Deploy(ctx, m, release, images)
}

// service reads a service of the environment from the manager.
func (f *fixture) service(name string) swarm.Service {
	f.t.Helper()
	s, _, err := f.sc.Manager.ServiceInspectWithRaw(context.Background(), f.project+"-staging_"+name, swarm.ServiceInspectOptions{})
	if err != nil {
		f.t.Fatalf("inspect service %s: %v", name, err)
	}
	return s
}

// running counts a service's running tasks of release, per node.
func (f *fixture) running(name, release string) map[string]int {
	f.t.Helper()
	s := f.service(name)
	tasks, err := f.sc.Manager.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", s.ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning && t.Spec.ContainerSpec.Labels[runtime.LabelRelease] == release {
			out[t.NodeID]++
		}
	}
	return out
}

// completed counts a job's completed tasks of release.
func (f *fixture) completed(name, release string) int {
	f.t.Helper()
	s := f.service(name)
	tasks, err := f.sc.Manager.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", s.ID))})
	if err != nil {
		f.t.Fatal(err)
	}
	n := 0
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateComplete && t.Spec.ContainerSpec.Labels[runtime.LabelRelease] == release {
			n++
		}
	}
	return n
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// assertRelease checks that a service runs release, with replicas tasks
// running and no update left paused or in progress.
func (f *fixture) assertRelease(name, release string, replicas int) {
	f.t.Helper()
	s := f.service(name)
	if got := s.Spec.Labels[runtime.LabelRelease]; got != release {
		f.t.Errorf("service %s runs release %q, want %q", name, got, release)
	}
	if u := s.UpdateStatus; u != nil && u.State != swarm.UpdateStateCompleted && u.State != swarm.UpdateStateRollbackCompleted {
		f.t.Errorf("service %s is left in update state %s (%s)", name, u.State, u.Message)
	}
	if n := total(f.running(name, release)); n != replicas {
		f.t.Errorf("service %s: %d tasks of release %s running, want %d", name, n, release, replicas)
	}
}

// secretValue reads a secret file as a running task of a service on the
// manager sees it: through /proc/PID/root of its process, which follows
// the container's mounts (docker cp sees only an empty placeholder).
func (f *fixture) secretValue(service, release, path string) string {
	f.t.Helper()
	ctx := context.Background()
	s := f.service(service)
	cs, err := f.sc.Manager.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", "com.docker.swarm.service.id="+s.ID), filters.Arg("label", runtime.LabelRelease+"="+release),
		filters.Arg("status", "running"))})
	if err != nil || len(cs) == 0 {
		f.t.Fatalf("no running task container of %s on the manager (%v)", service, err)
	}
	ci, err := f.sc.Manager.ContainerInspect(ctx, cs[0].ID)
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", ci.State.Pid, path))
	if err != nil {
		f.t.Fatalf("read %s in the task of %s: %v", path, service, err)
	}
	return string(b)
}

type testReporter struct{ t *testing.T }

func (r testReporter) Service(service, phase, detail string) {
	r.t.Logf("%-6s %s %s", service, phase, detail)
}
func (r testReporter) Note(msg string) { r.t.Logf("note: %s", msg) }

const twoServices = `services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    deploy:
      replicas: 2
    environment:
      APP_SECRET_FILE: /run/secrets/token
    secrets: [token]
    networks: [front]
  migrate:
    image: placeholder
    command: [migrate]
    environment: { APP_DATA_DIR: /data }
    volumes: [data:/data]
    healthcheck: { disable: true }
  api:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    depends_on:
      web: { condition: service_started }
      migrate: { condition: service_completed_successfully }
    networks: [front]
networks:
  front: {}
volumes:
  data: {}
secrets:
  token:
    environment: TOKEN
`

// TestSingleNode deploys a release of two services to a single-node
// swarm, updates it, has its second service fail so that both go back
// together, and rolls back to the first release by name: every service
// pinned by digest, labelled, with its own secret value.
func TestSingleNode(t *testing.T) {
	sc := testenv.Swarm(t)
	f := newFixture(t, sc, twoServices)
	t.Setenv("TOKEN", "value-one")

	res, err := f.deploy("1.0.0", map[string]string{"web": testenv.Healthy, "api": testenv.Healthy, "migrate": testenv.Healthy})
	if err != nil {
		t.Fatalf("deploy 1.0.0: %v", err)
	}
	if res.State != store.Succeeded {
		t.Fatalf("deploy 1.0.0 ended %s: %s", res.State, res.Reason)
	}
	f.assertRelease("web", "1.0.0", 2)
	f.assertRelease("api", "1.0.0", 1)
	// The migration ran to completion, once, before api started.
	if n := f.completed("migrate", "1.0.0"); n != 1 {
		t.Errorf("the migrate job of 1.0.0 completed %d times, want once", n)
	}
	web := f.service("web")
	cs := web.Spec.TaskTemplate.ContainerSpec
	if !strings.Contains(cs.Image, "@sha256:") || !strings.HasPrefix(cs.Image, f.images[testenv.Healthy]) {
		t.Errorf("web's image is %q, want %s pinned by digest", cs.Image, f.images[testenv.Healthy])
	}
	for k, want := range map[string]string{runtime.LabelProject: f.project, runtime.LabelEnv: "staging", runtime.LabelRelease: "1.0.0",
		runtime.LabelDeployment: "1", gswarm.LabelStack: f.project + "-staging"} {
		if web.Spec.Labels[k] != want || cs.Labels[k] != want {
			t.Errorf("label %s: service %q, container %q, want %q", k, web.Spec.Labels[k], cs.Labels[k], want)
		}
	}
	if u := web.Spec.UpdateConfig; u == nil || u.FailureAction != swarm.UpdateFailureActionRollback || u.Order != swarm.UpdateOrderStartFirst || u.Monitor != 2*time.Second {
		t.Errorf("web's update_config is %+v, want failure_action rollback, start-first, monitor 2s (min_healthy)", u)
	}
	if got := f.secretValue("web", "1.0.0", "/run/secrets/token"); got != "value-one" {
		t.Errorf("web's task reads %q from /run/secrets/token, want value-one", got)
	}
	oldSecret := cs.Secrets[0].SecretName

	// A new release with a new secret value: a new secret, the old kept.
	t.Setenv("TOKEN", "value-two")
	res, err = f.deploy("2.0.0", map[string]string{"web": "healthy-v2", "api": "healthy-v2", "migrate": "healthy-v2"})
	if err != nil || res.State != store.Succeeded {
		t.Fatalf("deploy 2.0.0: %v (%+v)", err, res)
	}
	f.assertRelease("web", "2.0.0", 2)
	f.assertRelease("api", "2.0.0", 1)
	newSecret := f.service("web").Spec.TaskTemplate.ContainerSpec.Secrets[0].SecretName
	if newSecret == oldSecret {
		t.Errorf("release 2.0.0 uses secret %s like 1.0.0, though its value changed", newSecret)
	}
	if got := f.secretValue("web", "2.0.0", "/run/secrets/token"); got != "value-two" {
		t.Errorf("web's task reads %q, want value-two", got)
	}
	if _, _, err := sc.Manager.SecretInspectWithRaw(context.Background(), oldSecret); err != nil {
		t.Errorf("release 1.0.0's secret %s is gone: %v", oldSecret, err)
	}

	// The second service fails its update: every service goes back to
	// 2.0.0 together, web included though its own update succeeded.
	res, err = f.deploy("3.0.0", map[string]string{"web": testenv.Healthy, "api": testenv.Unhealthy, "migrate": testenv.Healthy})
	if !errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("deploy 3.0.0 with an unhealthy api: err = %v, want rolled back", err)
	}
	if res.Failure == nil || res.Failure.Service != "api" {
		t.Errorf("failure = %+v, want service api", res.Failure)
	}
	if !strings.Contains(res.Reason, "rolled back to 2.0.0 together") {
		t.Errorf("reason %q does not say every service went back to 2.0.0", res.Reason)
	}
	f.assertRelease("web", "2.0.0", 2)
	f.assertRelease("api", "2.0.0", 1)

	st, err := f.eng.Status(context.Background(), f.project, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if st.Release != "2.0.0" || len(st.Services) != 3 {
		t.Fatalf("status: release %s, %d services", st.Release, len(st.Services))
	}
	for _, s := range st.Services {
		if s.Name == "migrate" {
			if !s.Job {
				t.Errorf("status of migrate: not a job: %+v", s)
			}
			continue
		}
		want := 1
		if s.Name == "web" {
			want = 2
		}
		if s.Replicas == nil || s.Replicas.Running != want || s.Replicas.Desired != want || len(s.Nodes) != 1 || s.Nodes[0].Running != want {
			t.Errorf("status of %s: replicas %+v, nodes %+v; want %d/%d on one node", s.Name, s.Replicas, s.Nodes, want, want)
		}
	}

	// Any release the store remembers, not only Swarm's one PreviousSpec.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := &config.Environment{Name: "staging", Health: config.Health{Window: config.Duration(90 * time.Second), MinHealthy: config.Duration(2 * time.Second)}}
	res, err = f.eng.Rollback(ctx, f.project, env, "1.0.0")
	if err != nil || res.State != store.Succeeded {
		t.Fatalf("rollback to 1.0.0: %v (%+v)", err, res)
	}
	f.assertRelease("web", "1.0.0", 2)
	f.assertRelease("api", "1.0.0", 1)
	if n := f.completed("migrate", "1.0.0"); n != 1 {
		t.Errorf("after the rollback the migrate job of 1.0.0 completed %d times, want once (a rollback does not run it again)", n)
	}
	if got := f.service("web").Spec.TaskTemplate.ContainerSpec.Secrets[0].SecretName; got != oldSecret {
		t.Errorf("after the rollback web uses secret %s, want 1.0.0's %s", got, oldSecret)
	}
	if got := f.secretValue("web", "1.0.0", "/run/secrets/token"); got != "value-one" {
		t.Errorf("after the rollback web's task reads %q, want value-one", got)
	}
}

// TestRefusedBeforeAnythingChanges: what a swarm cannot run, and an image
// no registry has, are refused before any service, network or record is
// made.
func TestRefusedBeforeAnythingChanges(t *testing.T) {
	sc := testenv.Swarm(t)
	f := newFixture(t, sc, `services:
  web:
    image: placeholder
    network_mode: host
    ports: ["8080:8080"]
`)
	_, err := f.deploy("1.0.0", map[string]string{"web": testenv.Healthy})
	var cerr *config.Error
	if !errors.As(err, &cerr) || !strings.Contains(err.Error(), "network_mode: host with published ports") {
		t.Errorf("network_mode host with ports: err = %v, want a config error naming it", err)
	}
	f.write("compose.yaml", "services:\n  web:\n    image: gantry-test/app:healthy\n")
	m, err := f.model()
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.eng.Deploy(context.Background(), m, "1.0.0", nil)
	if !errors.Is(err, runtime.ErrImageNotFound) || !strings.Contains(err.Error(), "registry every node reaches") {
		t.Errorf("an image only on the manager: err = %v, want image not found, saying to push it", err)
	}
	list, err := sc.Manager.ServiceList(context.Background(), swarm.ServiceListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("%d services exist after refused deploys", len(list))
	}
	hist, err := f.st.History(context.Background(), f.project, "staging", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 0 {
		t.Errorf("%d deployments recorded after refused deploys", len(hist))
	}
}
