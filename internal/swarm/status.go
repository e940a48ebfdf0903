package swarm

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Services reports an environment's services: the release each runs, its
// replicas running and desired, its update state, and its tasks per node.
func (r *Runtime) Services(ctx context.Context, project, env string) ([]runtime.ServiceState, error) {
	list, err := r.services(ctx, project, env)
	if err != nil {
		return nil, err
	}
	nodes, err := r.c.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the swarm's nodes: %w", err)
	}
	names := nodeNames(nodes)
	ready := map[string]bool{}
	for _, n := range nodes {
		ready[n.ID] = n.Status.State == swarm.NodeStateReady
	}
	out := make([]runtime.ServiceState, 0, len(list))
	for _, s := range list {
		l := s.Spec.Labels
		st := runtime.ServiceState{ID: s.ID, Name: l[runtime.LabelService], Release: l[runtime.LabelRelease], Image: l[runtime.LabelImageRef]}
		st.PlanID, _ = strconv.ParseInt(l[runtime.LabelDeployment], 10, 64)
		if s.ServiceStatus != nil {
			st.Desired, st.Running = int(s.ServiceStatus.DesiredTasks), int(s.ServiceStatus.RunningTasks)
		}
		if u := s.UpdateStatus; u != nil {
			st.UpdateState, st.UpdateMsg = string(u.State), u.Message
		}
		tasks, err := r.c.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", s.ID), filters.Arg("desired-state", "running"))})
		if err != nil {
			return nil, fmt.Errorf("list tasks of %s: %w", s.Spec.Name, err)
		}
		per := map[string]*runtime.NodeTasks{}
		for _, t := range tasks {
			n := per[t.NodeID]
			if n == nil {
				name := names[t.NodeID]
				if name == "" {
					name = "unassigned"
					if t.NodeID != "" {
						name = short(t.NodeID)
					}
				}
				n = &runtime.NodeTasks{Node: name}
				per[t.NodeID] = n
			}
			n.Desired++
			// A down node's tasks last reported running; they run nowhere.
			if t.Status.State == swarm.TaskStateRunning && ready[t.NodeID] {
				n.Running++
			}
		}
		// Swarm's own count of running tasks includes those shutting down;
		// a task counts here while it is meant to run.
		st.Running = 0
		for _, n := range per {
			st.Nodes = append(st.Nodes, *n)
			st.Running += n.Running
		}
		sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Node < st.Nodes[j].Node })
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// nodeNames names nodes by hostname and role; nodes that share a hostname
// (engines on one machine) are told apart by their short ID.
func nodeNames(nodes []swarm.Node) map[string]string {
	count := map[string]int{}
	for _, n := range nodes {
		count[n.Description.Hostname]++
	}
	out := map[string]string{}
	for _, n := range nodes {
		name := n.Description.Hostname
		if name == "" || count[name] > 1 {
			name = fmt.Sprintf("%s/%s", name, short(n.ID)[:8])
		}
		role := string(n.Spec.Role)
		if n.Status.State != swarm.NodeStateReady {
			role += ", " + string(n.Status.State)
		}
		out[n.ID] = name + " (" + role + ")"
	}
	return out
}
