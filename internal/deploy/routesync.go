package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
)

// Docker gives a container a new ephemeral host port each time it starts:
// a routed container restarted by its restart policy, by `docker restart`
// or after a host reboot is out of the proxy's reach (502) until its route
// follows it. SyncRoutes makes it follow; FollowRoutes runs it whenever a
// container of the environment starts.

// SyncRoutes points each route of the environment at the serving release's
// running container where it no longer does, and returns the services it
// re-pointed. It changes nothing while another gantry holds the
// environment or a deployment is unfinished (that gantry, or the recovery
// after it, routes its services), and it starts no container: a stopped
// one stays stopped, as whoever stopped it wanted.
func (e *Engine) SyncRoutes(ctx context.Context, project, env string) ([]string, error) {
	stale, _, err := e.staleRoutes(ctx, project, env)
	if err != nil || len(stale) == 0 {
		return nil, err
	}
	lock, err := e.store.TryAcquire(ctx, project, env, "route-sync")
	if lock == nil || err != nil {
		return nil, err
	}
	defer lock.Release()
	// Under the lock, from the start: a deployment may have finished
	// between the first look and the lock.
	if u, err := e.store.Unfinished(ctx, project, env); err != nil || len(u) > 0 {
		return nil, err
	}
	stale, plan, err := e.staleRoutes(ctx, project, env)
	if err != nil {
		return nil, err
	}
	var synced []string
	var errs []error
	for _, service := range stale {
		if err := e.routeTo(ctx, 0, plan, service, proxy.ReasonManual); err != nil {
			errs = append(errs, err)
			continue
		}
		synced = append(synced, service)
	}
	return synced, errors.Join(errs...)
}

// staleRoutes returns the routed services of the serving release whose
// running container the proxy's route does not reach, and that release's
// plan. It only reads.
func (e *Engine) staleRoutes(ctx context.Context, project, env string) ([]string, *runtime.Plan, error) {
	if e.orchestrated() {
		return nil, nil, nil
	}
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil || serving == nil {
		return nil, nil, err
	}
	plan, err := e.planOf(ctx, serving.PlanID)
	if err != nil {
		return nil, nil, err
	}
	routed := map[string]*runtime.Service{}
	for _, name := range plan.Order {
		if s := plan.Services[name]; s.Route != nil && !s.Job {
			routed[name] = s
		}
	}
	if len(routed) == 0 {
		return nil, nil, nil
	}
	st, err := e.proxyClient().State(ctx)
	if err != nil {
		return nil, nil, err
	}
	cs, err := e.rt.Containers(ctx, project, env)
	if err != nil {
		return nil, nil, err
	}
	var stale []string
	for _, c := range cs {
		s := routed[c.Service]
		if s == nil || c.PlanID != plan.ID || !c.Running() {
			continue
		}
		addr, err := e.rt.Address(ctx, c.ID, s.Route.Port)
		if err != nil {
			return nil, nil, err
		}
		if !routesTo(st, env, c.Service, addr) {
			stale = append(stale, c.Service)
		}
	}
	return stale, plan, nil
}

// routesTo says whether the proxy sends a service's traffic to addr.
func routesTo(st proxy.Status, env, service, addr string) bool {
	for _, r := range st.Routes {
		if r.Env == env && r.Service == service {
			return r.Upstream != nil && r.Upstream.Addr == addr
		}
	}
	return false
}

// Starter is a runtime that tells when a container of an environment
// starts.
type Starter interface {
	Started(ctx context.Context, project, env string) <-chan struct{}
}

// FollowRoutes keeps the environment's routes on the serving release's
// containers until ctx ends: it syncs them at once, when a container of
// the environment starts (where the runtime tells, see Starter), and every
// resync. A sync that fails (the container not listening yet) is tried
// again after a second or two.
func (e *Engine) FollowRoutes(ctx context.Context, project, env string, resync time.Duration) {
	var started <-chan struct{}
	if s, ok := e.rt.(Starter); ok {
		started = s.Started(ctx, project, env)
	}
	tick := time.NewTicker(resync)
	defer tick.Stop()
	retry := time.NewTimer(0) // the first sync, at once
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-started:
			if !ok {
				started = nil
				continue
			}
			retry.Reset(200 * time.Millisecond) // let a burst of starts settle
			continue
		case <-tick.C:
		case <-retry.C:
		}
		synced, err := e.SyncRoutes(ctx, project, env)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("routes not synced; trying again", "env", env, "err", err)
			retry.Reset(2 * time.Second)
		}
		for _, s := range synced {
			e.log.Info("route follows its restarted container", "env", env, "service", s)
			e.report.Note(fmt.Sprintf("%s/%s: route re-pointed at its restarted container", env, s))
		}
	}
}
