package deploy

// Routes to swarm services. A routed service on a swarm publishes its
// route's port in mode host, on an ephemeral port of each task's node
// (planRoute), and the gantry proxy sends the route's requests to the
// running tasks in turn. Swarm starts, stops and moves tasks by itself,
// during a rollout (start-first: the new task runs, then the old one
// stops) and at any other time, so the tasks are followed, not switched:
// FollowTasks, beside the proxy, sets the running tasks on the route as
// they change; a deploy and a rollback set them once more when they end,
// so that when gantry says a release serves, the proxy sends it the
// traffic. Swarm stops an old task 2 s after it decides to (its gossip
// delay), time enough for the follower to take it off the route first;
// the proxy resends a request that a task refused anyway to another task
// (proxy/tasks.go).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
)

// taskPoll is how often FollowTasks lists a swarm's tasks. Swarm's events
// say nothing of tasks, so they are read; each look is a few requests to
// the manager.
const taskPoll = 250 * time.Millisecond

// routedServices are the services of plan with a route (jobs have none).
func routedServices(plan *runtime.Plan) []*runtime.Service {
	var out []*runtime.Service
	for _, name := range plan.Order {
		if s := plan.Services[name]; s.Route != nil && !s.Job {
			out = append(out, s)
		}
	}
	return out
}

// routedPorts are the routed services of plans, each with the route ports
// it has in any of them and its route in the last plan that has one
// (the newest), services in the first plan's order first. During a rollout
// the old and the new release's tasks run side by side, each publishing
// its own release's port: a port changed by the new release must not
// leave the old tasks (or the new ones) off the route.
func routedPorts(plans []*runtime.Plan) (names []string, ports map[string][]int, routes map[string]*runtime.Route) {
	ports, routes = map[string][]int{}, map[string]*runtime.Route{}
	for _, p := range plans {
		for _, s := range routedServices(p) {
			if _, ok := ports[s.Name]; !ok {
				names = append(names, s.Name)
			}
			if !slices.Contains(ports[s.Name], s.Route.Port) {
				ports[s.Name] = append(ports[s.Name], s.Route.Port)
			}
			routes[s.Name] = s.Route
		}
	}
	return names, ports, routes
}

// routeTasks sets, for each routed service of plans (the serving release
// and those deploying, of one environment), its running tasks on its route
// in the proxy, where they differ from last (nil: set them all); it
// returns what it set.
func (e *Engine) routeTasks(ctx context.Context, o runtime.Orchestrator, plans []*runtime.Plan, last map[string][]proxy.Upstream) (map[string][]proxy.Upstream, error) {
	set := map[string][]proxy.Upstream{}
	if len(plans) == 0 {
		return set, nil
	}
	project, env := plans[0].Project, plans[0].Env
	names, ports, routes := routedPorts(plans)
	var errs []error
	for _, name := range names {
		eps, err := o.Endpoints(ctx, project, env, name, ports[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tasks := make([]proxy.Upstream, 0, len(eps))
		for _, ep := range eps {
			tasks = append(tasks, proxy.Upstream{Addr: ep.Addr, Release: ep.Release})
		}
		if prev, ok := last[name]; ok && slices.Equal(prev, tasks) {
			set[name] = prev
			continue
		}
		r := routes[name]
		if _, err := e.proxyClient().SetTasks(ctx, proxy.TasksRequest{Env: env, Service: name, Host: r.Host, Path: r.Path, Tasks: tasks}); err != nil {
			errs = append(errs, fmt.Errorf("route %s to its tasks: %w", name, err))
			continue
		}
		set[name] = tasks
	}
	return set, errors.Join(errs...)
}

// routeTasksOnce is routeTasks at the end of a deploy or rollback: a
// failure is a warning, since the proxy's own follower sets the tasks too.
func (e *Engine) routeTasksOnce(ctx context.Context, o runtime.Orchestrator, plan *runtime.Plan) {
	if plan == nil || len(routedServices(plan)) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	set, err := e.routeTasks(ctx, o, []*runtime.Plan{plan}, nil)
	if err != nil {
		e.log.Warn("routes not set to the swarm's tasks; the proxy's follower will", "err", err)
	}
	for _, svc := range routedServices(plan) {
		if tasks, ok := set[svc.Name]; ok {
			e.report.Service(svc.Name, "routed", fmt.Sprintf("%d tasks", len(tasks)))
		}
	}
}

// FollowTasks keeps the routes of a swarm environment on the running
// tasks of its routed services until ctx ends: it lists them every
// taskPoll and sets them on the proxy when they change (and every resync,
// unchanged or not: a proxy restarted from an old state file). The routed
// services and their ports are those of the serving release and of any
// deployment under way.
func (e *Engine) FollowTasks(ctx context.Context, project, env string, resync time.Duration) {
	o, ok := e.rt.(runtime.Orchestrator)
	if !ok {
		return
	}
	poll := time.NewTicker(taskPoll)
	defer poll.Stop()
	var last map[string][]proxy.Upstream
	plans := map[int64]*runtime.Plan{} // decoded plans, by ID
	var using []int64                  // the plans of the last look
	// failingSince is when the looks began to fail (zero: they work);
	// a proxy starting beside the follower answers within a moment, so
	// only a failure that lasts is told.
	var failingSince time.Time
	warned := false
	lastFull := time.Now()
	for {
		ids, err := e.routedPlans(ctx, project, env)
		var cur []*runtime.Plan
		for _, id := range ids {
			if err != nil {
				break
			}
			if plans[id] == nil {
				plans[id], err = e.planOf(ctx, id)
			}
			cur = append(cur, plans[id])
		}
		if err == nil && len(cur) > 0 {
			if !slices.Equal(ids, using) || time.Since(lastFull) >= resync {
				last, lastFull, using = nil, time.Now(), ids
			}
			last, err = e.routeTasks(ctx, o, cur, last)
		}
		switch {
		case err != nil && failingSince.IsZero():
			failingSince = time.Now()
		case err != nil && !warned && ctx.Err() == nil && time.Since(failingSince) > 2*time.Second:
			e.log.Warn("routes not following the swarm's tasks; trying again", "env", env, "err", err)
			warned = true
		case err == nil && !failingSince.IsZero():
			if warned {
				e.log.Info("routes follow the swarm's tasks again", "env", env)
			}
			failingSince, warned = time.Time{}, false
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// routedPlans are the IDs of the plans whose routes FollowTasks keeps: the
// serving release's, then those of the deployments under way.
func (e *Engine) routedPlans(ctx context.Context, project, env string) ([]int64, error) {
	var ids []int64
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil {
		return nil, err
	}
	if serving != nil {
		ids = append(ids, serving.PlanID)
	}
	unfinished, err := e.store.Unfinished(ctx, project, env)
	if err != nil {
		return nil, err
	}
	for _, d := range unfinished {
		if d.PlanID != 0 && !slices.Contains(ids, d.PlanID) {
			ids = append(ids, d.PlanID)
		}
	}
	return ids, nil
}
