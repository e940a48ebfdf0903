package swarm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/deploy"
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

// TestTwoNodes deploys a release across a real two-node swarm (the local
// engine and a second dockerd in a network namespace, which pulls the
// image from the test registry by digest), then a second release, and
// reads replicas per node in the status.
func TestTwoNodes(t *testing.T) {
	sc := testenv.SwarmWithWorker(t)
	f := newFixture(t, sc, fourReplicas)
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
