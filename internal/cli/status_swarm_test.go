package cli

import (
	"bytes"
	"testing"
	"text/tabwriter"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
)

// TestSwarmStatusTable: a swarm environment's status shows replicas
// running/desired per service and per node.
func TestSwarmStatusTable(t *testing.T) {
	st := &deploy.Status{Env: "staging", Release: "2.0.0", Deployment: 3, Services: []deploy.ServiceStatus{
		{Name: "web", Release: "2.0.0", Image: "registry.example.com/shop/web:2.0.0", State: "running", Replicas: &deploy.Replicas{Running: 4, Desired: 4},
			Nodes: []runtime.NodeTasks{{Node: "node-1 (manager)", Running: 2, Desired: 2}, {Node: "node-2 (worker)", Running: 2, Desired: 2}}},
		{Name: "api", Release: "2.0.0", Image: "registry.example.com/shop/api:2.0.0", State: "degraded", Replicas: &deploy.Replicas{Running: 1, Desired: 2},
			Nodes: []runtime.NodeTasks{{Node: "node-1 (manager)", Running: 1, Desired: 1}, {Node: "node-2 (worker, down)", Running: 0, Desired: 1}}},
		{Name: "cron", Release: "2.0.0", Image: "registry.example.com/shop/cron:2.0.0", State: "missing"},
	}}
	if !swarmStatus(st) {
		t.Fatal("a status with replicas is not taken for a swarm's")
	}
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	printSwarmServices(w, st)
	w.Flush()
	compareGolden(t, "status-swarm.golden", b.String())
}
