package swarm

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Endpoints lists the running tasks of a service of an environment that
// publish one of ports (a container port, published in mode host, which
// gantry does for a routed service; each release's tasks publish that
// release's port): each at its node's address and published port, sorted
// by address. Tasks Swarm is stopping (desired state not
// running), not yet running (a task with a healthcheck runs once healthy)
// or on a node that is not ready are left out. No service: none.
func (r *Runtime) Endpoints(ctx context.Context, project, env, service string, ports []int) ([]runtime.Endpoint, error) {
	f := envFilter(project, env)
	f.Add("label", runtime.LabelService+"="+service)
	svcs, err := r.c.ServiceList(ctx, swarm.ServiceListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list services on %s: %w", r.d.Host(), err)
	}
	if len(svcs) == 0 {
		return nil, nil
	}
	tasks, err := r.c.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", svcs[0].ID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, fmt.Errorf("list the tasks of %s: %w", svcs[0].Spec.Name, err)
	}
	nodes, err := r.c.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the swarm's nodes: %w", err)
	}
	addrs := map[string]string{}
	for _, n := range nodes {
		if n.Status.State == swarm.NodeStateReady {
			addrs[n.ID] = nodeAddr(n)
		}
	}
	var out []runtime.Endpoint
	for _, t := range tasks {
		host := addrs[t.NodeID]
		if t.Status.State != swarm.TaskStateRunning || t.DesiredState != swarm.TaskStateRunning || host == "" {
			continue
		}
		for _, p := range t.Status.PortStatus.Ports {
			if !slices.Contains(ports, int(p.TargetPort)) || p.PublishMode != swarm.PortConfigPublishModeHost || p.PublishedPort == 0 {
				continue
			}
			e := runtime.Endpoint{Addr: net.JoinHostPort(host, strconv.Itoa(int(p.PublishedPort))), Task: t.ID}
			if cs := t.Spec.ContainerSpec; cs != nil {
				e.Release = cs.Labels[runtime.LabelRelease]
			}
			out = append(out, e)
			break
		}
	}
	slices.SortFunc(out, func(a, b runtime.Endpoint) int { return cmp.Compare(a.Addr, b.Addr) })
	return out, nil
}

// nodeAddr is the address other machines reach a node at: the address it
// reports, or, where that is unspecified (a manager whose engine listens
// on every interface reports 0.0.0.0), the host of its manager address.
func nodeAddr(n swarm.Node) string {
	a, err := netip.ParseAddr(n.Status.Addr)
	if err == nil && !a.IsUnspecified() {
		return a.String()
	}
	if m := n.ManagerStatus; m != nil {
		if host, _, err := net.SplitHostPort(m.Addr); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
				return a.String()
			}
		}
	}
	return ""
}
