package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

const fourReplicas = `services:
  web:
    image: placeholder
    healthcheck: { test: [CMD, /app, check], interval: 1s, timeout: 3s, retries: 3 }
    deploy:
      replicas: 4
      update_config: { parallelism: 1 }
    networks: [front]
networks:
  front: {}
`

// fourReplicasRouted publishes web's 8080 as gantry does for a routed
// service: in mode host, on an ephemeral port of each task's node.
var fourReplicasRouted = strings.Replace(fourReplicas, "    networks: [front]\n", "    networks: [front]\n    ports: [{ target: 8080, mode: host }]\n", 1)

// TestTwoNodes deploys a release across a real two-node swarm (the local
// engine and a second dockerd in a network namespace, which pulls the
// image from the test registry by digest), then a second release, reads
// replicas per node in the status, reaches every task at the endpoint the
// proxy would route to, and kills a task on the worker
// (workerTaskSeenByManager).
func TestTwoNodes(t *testing.T) {
	sc := testenv.SwarmWithWorker(t)
	if !strings.Contains(fourReplicasRouted, "mode: host") {
		t.Fatal("fourReplicasRouted publishes no port")
	}
	f := newFixture(t, sc, fourReplicasRouted)
	res, err := f.deploy("1.0.0", map[string]string{"web": testenv.Healthy})
	if err != nil || res.State != store.Succeeded {
		t.Fatalf("deploy 1.0.0: %v (%+v)", err, res)
	}
	perNode := f.running("web", "1.0.0")
	if total(perNode) != 4 || perNode[sc.Worker.NodeID] == 0 || len(perNode) != 2 {
		t.Fatalf("release 1.0.0 runs %v per node, want 4 tasks across both nodes (worker %s)", perNode, sc.Worker.NodeID)
	}
	res, err = f.deploy("2.0.0", map[string]string{"web": "healthy-v2"})
	if err != nil || res.State != store.Succeeded {
		t.Fatalf("deploy 2.0.0: %v (%+v)", err, res)
	}
	f.assertRelease("web", "2.0.0", 4)
	if n := f.running("web", "2.0.0")[sc.Worker.NodeID]; n == 0 {
		t.Errorf("no task of 2.0.0 runs on the worker")
	}
	st, err := f.eng.Status(context.Background(), f.project, "staging")
	if err != nil {
		t.Fatal(err)
	}
	web := st.Services[0]
	if web.Replicas == nil || web.Replicas.Running != 4 || len(web.Nodes) != 2 {
		t.Fatalf("status: replicas %+v, nodes %+v; want 4/4 on 2 nodes", web.Replicas, web.Nodes)
	}
	for _, n := range web.Nodes {
		if n.Running == 0 || n.Running != n.Desired {
			t.Errorf("status of node %s: %d/%d", n.Node, n.Running, n.Desired)
		}
	}
	endpointsAnswer(t, f, "2.0.0", 4)
	workerTaskSeenByManager(t, sc, f)
}

// TestWorkerStoppedDuringRollout stops the worker's engine while a
// release rolls out. Whatever Swarm makes of it, gantry ends with one
// known release serving on every replica, and no service left paused or
// updating.
func TestWorkerStoppedDuringRollout(t *testing.T) {
	sc := testenv.SwarmWithWorker(t)
	f := newFixture(t, sc, fourReplicas)
	if res, err := f.deploy("1.0.0", map[string]string{"web": testenv.Healthy}); err != nil {
		t.Fatalf("deploy 1.0.0: %v (%+v)", err, res)
	}
	type outcome struct {
		res *deploy.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := f.deploy("2.0.0", map[string]string{"web": "healthy-v2"})
		done <- outcome{res, err}
	}()
	// Stop the worker once the rolling update has replaced a task.
	deadline := time.Now().Add(60 * time.Second)
	for total(f.running("web", "2.0.0")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the rollout of 2.0.0 did not start within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Log("stopping the worker's engine")
	stopped := time.Now()
	sc.Worker.Stop()
	t.Logf("the worker's engine stopped in %.1fs", time.Since(stopped).Seconds())
	o := <-done
	t.Logf("the deploy ended %.1fs after the worker was told to stop", time.Since(stopped).Seconds())
	t.Logf("deploy 2.0.0 with the worker stopped (%.1fs, rollback %.1fs): %v", o.res.DurationSeconds, o.res.RollbackSeconds, o.err)
	if o.res == nil {
		t.Fatalf("no result: %v", o.err)
	}
	want := "2.0.0"
	switch {
	case o.err == nil && o.res.State == store.Succeeded:
	case errors.Is(o.err, deploy.ErrRolledBack):
		want = "1.0.0"
	default:
		t.Fatalf("deploy ended %s: %v", o.res.State, o.err)
	}
	s := f.service("web")
	if u := s.UpdateStatus; u != nil && (u.State == swarm.UpdateStatePaused || u.State == swarm.UpdateStateRollbackPaused || u.State == swarm.UpdateStateUpdating) {
		t.Errorf("web is left %s (%s)", u.State, u.Message)
	}
	if got := s.Spec.Labels["io.gantry.release"]; got != want {
		t.Errorf("web's spec is release %s after the deploy ended %s", got, o.res.State)
	}
	perNode := f.running("web", want)
	if total(perNode) != 4 || perNode[sc.Worker.NodeID] != 0 {
		t.Errorf("release %s runs %v per node, want all 4 tasks on the manager", want, perNode)
	}
	st, err := f.eng.Status(context.Background(), f.project, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if st.Release != want || st.Services[0].Replicas.Running != 4 {
		t.Errorf("status: release %s, replicas %+v; want %s 4/4", st.Release, st.Services[0].Replicas, want)
	}
}

// workerTaskSeenByManager checks what gantry server's watcher can know of
// a task that dies on a worker. The watcher follows the container events
// of the environment on the manager, and reads everything again every
// 15 s; docs/swarm.md says what this finds: the manager's API sees the
// worker's failed task within a second or so, but its event stream carries
// nothing for it (container events are the node's own, and the Engine API
// has no task events).
func workerTaskSeenByManager(t *testing.T, sc *testenv.SwarmCluster, f *fixture) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The watcher's own subscription, and the manager's service and node
	// events, which carry no labels to filter on.
	watched, _ := sc.Manager.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", runtime.LabelProject+"="+f.project), filters.Arg("label", runtime.LabelEnv+"=staging"))})
	all, _ := sc.Manager.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ServiceEventType)), filters.Arg("type", string(events.NodeEventType)))})
	list, err := sc.Worker.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", runtime.LabelProject+"="+f.project), filters.Arg("status", "running"))})
	if err != nil || len(list) == 0 {
		t.Fatalf("no task container of web runs on the worker (%v)", err)
	}
	victim := list[0].ID
	time.Sleep(500 * time.Millisecond) // both subscriptions are open
	killed := time.Now()
	if err := sc.Worker.Client.ContainerKill(ctx, victim, "KILL"); err != nil {
		t.Fatal(err)
	}
	var seen, back time.Duration
	var watchedEvents, allEvents []string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.After(30 * time.Second)
wait:
	for {
		select {
		case m := <-watched:
			// What the watcher acts on: not the healthchecks' exec events.
			if !strings.HasPrefix(string(m.Action), "exec_") {
				watchedEvents = append(watchedEvents, fmt.Sprintf("%.1fs %s %s", time.Since(killed).Seconds(), m.Action, short(m.Actor.ID)))
			}
		case m := <-all:
			allEvents = append(allEvents, fmt.Sprintf("%.1fs %s %s %s", time.Since(killed).Seconds(), m.Type, m.Action, m.Actor.Attributes["name"]))
		case <-tick.C:
			states, err := f.rt.Services(ctx, f.project, "staging")
			if err != nil || len(states) != 1 {
				t.Fatalf("services: %v %+v", err, states)
			}
			switch st := states[0]; {
			case seen == 0 && st.Running < 4:
				seen = time.Since(killed)
			case seen != 0 && back == 0 && st.Running == 4:
				back = time.Since(killed)
				end = time.After(2 * time.Second) // the events of the replacement
			}
		case <-end:
			break wait
		}
	}
	t.Logf("killed task container %s on the worker; the manager's task list showed it gone after %.1fs, 4/4 running again after %.1fs", short(victim), seen.Seconds(), back.Seconds())
	t.Logf("the watcher's subscription (container events of the environment, on the manager) got: %q", watchedEvents)
	t.Logf("the manager's service and node events: %q", allEvents)
	if seen == 0 || seen > 10*time.Second {
		t.Errorf("the manager's task list did not show the worker's dead task within 10s (%s)", seen)
	}
	for _, e := range watchedEvents {
		if strings.Contains(e, short(victim)) {
			t.Errorf("the manager sent an event for the worker's container (%s); docs/swarm.md says it does not", e)
		}
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// endpointsAnswer lists web's endpoints (what the gantry proxy routes to)
// and wants n of them, on both nodes' addresses, each answering its
// release from this machine.
func endpointsAnswer(t *testing.T, f *fixture, release string, n int) {
	t.Helper()
	eps, err := f.rt.Endpoints(context.Background(), f.project, "staging", "web", []int{8080})
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, ep := range eps {
		host, _, _ := net.SplitHostPort(ep.Addr)
		hosts[host] = true
		if ep.Release != release {
			t.Errorf("endpoint %s is release %s, want %s", ep.Addr, ep.Release, release)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ep.Addr + "/version")
		if err != nil {
			t.Errorf("endpoint %s: %v", ep.Addr, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if v := strings.TrimSpace(string(b)); v != release {
			t.Errorf("endpoint %s answers %q, want %s", ep.Addr, v, release)
		}
	}
	if len(eps) != n || !hosts["10.210.0.1"] || !hosts["10.210.0.2"] {
		t.Errorf("endpoints %+v: want %d on both nodes (10.210.0.1, 10.210.0.2)", eps, n)
	}
}
