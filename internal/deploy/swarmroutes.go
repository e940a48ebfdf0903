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

// routeTasks sets, for each routed service of plan, its running tasks on
// its route in the proxy, where they differ from last (nil: set them all);
// it returns what it set. Only a plan's routes count: a service's route
// port comes from the release that serves.
func (e *Engine) routeTasks(ctx context.Context, o runtime.Orchestrator, plan *runtime.Plan, last map[string][]proxy.Upstream) (map[string][]proxy.Upstream, error) {
	set := map[string][]proxy.Upstream{}
	var errs []error
	for _, svc := range routedServices(plan) {
		eps, err := o.Endpoints(ctx, plan.Project, plan.Env, svc.Name, svc.Route.Port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tasks := make([]proxy.Upstream, 0, len(eps))
		for _, ep := range eps {
			tasks = append(tasks, proxy.Upstream{Addr: ep.Addr, Release: ep.Release})
		}
		if prev, ok := last[svc.Name]; ok && slices.Equal(prev, tasks) {
			set[svc.Name] = prev
			continue
		}
		if _, err := e.proxyClient().SetTasks(ctx, proxy.TasksRequest{Env: plan.Env, Service: svc.Name, Tasks: tasks}); err != nil {
			errs = append(errs, fmt.Errorf("route %s to its tasks: %w", svc.Name, err))
			continue
		}
		set[svc.Name] = tasks
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
	set, err := e.routeTasks(ctx, o, plan, nil)
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
// tasks of its serving release's routed services until ctx ends: it lists
// them every taskPoll and sets them on the proxy when they change (every
// resync, unchanged or not: a proxy restarted from an old state file).
func (e *Engine) FollowTasks(ctx context.Context, project, env string, resync time.Duration) {
	o, ok := e.rt.(runtime.Orchestrator)
	if !ok {
		return
	}
	poll := time.NewTicker(taskPoll)
	defer poll.Stop()
	var last map[string][]proxy.Upstream
	var planID int64
	var plan *runtime.Plan
	// failingSince is when the looks began to fail (zero: they work);
	// a proxy starting beside the follower answers within a moment, so
	// only a failure that lasts is told.
	var failingSince time.Time
	warned := false
	lastFull := time.Now()
	for {
		serving, err := e.store.Serving(ctx, project, env)
		if err == nil && serving != nil && serving.PlanID != planID {
			if p, perr := e.planOf(ctx, serving.PlanID); perr == nil {
				plan, planID, last = p, serving.PlanID, nil
			} else {
				err = perr
			}
		}
		if err == nil && plan != nil {
			if time.Since(lastFull) >= resync {
				last, lastFull = nil, time.Now()
			}
			last, err = e.routeTasks(ctx, o, plan, last)
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
