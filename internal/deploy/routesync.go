package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Docker gives a container a new ephemeral host port each time it starts:
// a routed container restarted by its restart policy, by `docker restart`
// or after a host reboot is out of the proxy's reach (502) until its route
// follows it. SyncRoutes makes it follow; FollowRoutes runs it whenever a
// container of the environment starts.

// SyncRoutes points each route of the environment at the serving release's
// running container where it no longer does, and ends a canary that no
// deployment runs any more (the proxy was down when its deployment
// aborted it, and came back with it from its state file); it returns the
// services whose routes it changed. It changes nothing while another
// gantry holds the environment or a deployment is unfinished (that gantry,
// or the recovery after it, routes its services), and it starts no
// container: a stopped one stays stopped, as whoever stopped it wanted.
func (e *Engine) SyncRoutes(ctx context.Context, project, env string) ([]string, error) {
	if fix, err := e.staleRoutes(ctx, project, env); err != nil || fix.none() {
		return nil, err
	}
	lock, err := e.store.TryAcquire(ctx, project, env, store.PurposeRouteSync)
	if lock == nil || err != nil {
		return nil, err
	}
	defer lock.Release()
	// Under the lock, from the start: a deployment may have finished
	// between the first look and the lock.
	if u, err := e.store.Unfinished(ctx, project, env); err != nil || len(u) > 0 {
		return nil, err
	}
	fix, err := e.staleRoutes(ctx, project, env)
	if err != nil {
		return nil, err
	}
	var synced []string
	var errs []error
	for _, service := range fix.canaries {
		_, err := e.proxyClient().AbortCanary(ctx, env, service, "no deployment runs this canary any more")
		if err != nil && !errors.Is(err, proxy.ErrNotFound) {
			errs = append(errs, fmt.Errorf("end the canary of %s: %w", service, err))
			continue
		}
		synced = append(synced, service)
	}
	for _, service := range fix.moved {
		if err := e.routeTo(ctx, 0, fix.plan, service, proxy.ReasonManual); err != nil {
			errs = append(errs, err)
			continue
		}
		if !slices.Contains(synced, service) {
			synced = append(synced, service)
		}
	}
	return synced, errors.Join(errs...)
}

// routeFix is what SyncRoutes has to do.
type routeFix struct {
	// moved are the routed services of the serving release (plan) whose
	// running container the route does not reach.
	moved []string
	plan  *runtime.Plan
	// canaries are the services whose route has a canary: with the lock
	// free and no deployment unfinished, no deployment runs it.
	canaries []string
}

func (f routeFix) none() bool { return len(f.moved) == 0 && len(f.canaries) == 0 }

// staleRoutes finds what SyncRoutes has to do. It only reads.
func (e *Engine) staleRoutes(ctx context.Context, project, env string) (routeFix, error) {
	var fix routeFix
	if e.orchestrated() {
		return fix, nil
	}
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil || serving == nil {
		return fix, err
	}
	plan, err := e.planOf(ctx, serving.PlanID)
	if err != nil {
		return fix, err
	}
	routed := map[string]*runtime.Service{}
	for _, s := range routedServices(plan) {
		routed[s.Name] = s
	}
	if len(routed) == 0 {
		return fix, nil
	}
	st, err := e.proxyClient().State(ctx)
	if err != nil {
		return fix, err
	}
	for _, r := range st.Routes {
		if r.Env == env && r.Canary != nil {
			fix.canaries = append(fix.canaries, r.Service)
		}
	}
	cs, err := e.rt.Containers(ctx, project, env)
	if err != nil {
		return fix, err
	}
	for _, c := range cs {
		s := routed[c.Service]
		if s == nil || c.PlanID != plan.ID || !c.Running() {
			continue
		}
		addr, err := e.rt.Address(ctx, c.ID, s.Route.Port)
		if err != nil {
			return fix, err
		}
		if !st.Route(env, c.Service).Serves(addr) {
			fix.moved = append(fix.moved, c.Service)
		}
	}
	fix.plan = plan
	return fix, nil
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
