package deploy

// Blue/green for routed services: a service with a route in gantry.yaml
// (environments.<env>.routes) is started beside its old container, its
// route's container port published on an ephemeral 127.0.0.1 port, gated
// directly, and then the gantry proxy switches the route to it at once.
// The old container drains (its requests in flight finish, up to the
// proxy's drain timeout) and keeps running through the watch window after
// the switch, so that a rollback then, automatic or `gantry rollback`, is a
// switch back rather than a restart; prune stops it afterwards, like any
// kept release.
//
// The steps, each recorded before it is taken: create and start the new
// container, gate it, "switch" (the point of no return for traffic),
// "drain". A failure before the switch leaves the route untouched; after
// it, rollbackFailed switches back first, then removes the new container.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// StrategyBlueGreen is the strategy of a routed service.
const StrategyBlueGreen = string(config.StrategyBlueGreen)

// checkProxy is the step at which a deploy finds no proxy to switch.
const checkProxy = "proxy"

// planRoute makes a routed service blue/green in its plan: the route goes
// with the plan (a rollback or a recovery switches to what the release was
// deployed with), and the container port is published on an ephemeral
// loopback port for the proxy. A fixed host port cannot run side by side,
// so it is refused with what to do.
func (e *Engine) planRoute(m *config.Model, s *runtime.Service) error {
	r := m.Env.Routes[s.Name]
	if r == nil || s.Job {
		return nil
	}
	switch {
	case e.orchestrated() && r.Canary != nil:
		return inputError("service %s has a canary, but %s is a swarm: Swarm replaces tasks one by one itself, and the proxy follows them; remove routes.%s.canary (or deploy the canary to a Docker host)", s.Name, m.Env.Name, s.Name)
	case e.orchestrated():
		// Each task publishes the route's port on an ephemeral port of
		// its node; the proxy follows the tasks (swarmroutes.go).
		s.Route = &runtime.Route{Host: r.Host, Path: r.Path, Port: r.Port}
		s.Config.Ports = append(s.Config.Ports, types.ServicePortConfig{Target: uint32(r.Port), Protocol: "tcp", Mode: "host"})
		return nil
	case !e.rt.Local():
		return inputError("service %s has a route, but the Docker host %s is remote: the gantry proxy and the containers it routes to run on one machine; run gantry (and gantry proxy) on that host", s.Name, e.rt.Host())
	case m.FixedHostPort(s.Name):
		return inputError("service %s has a route and also publishes a fixed host port, so its old and new containers cannot run side by side; remove the fixed port from the compose file (the proxy reaches the service on a loopback port gantry chooses)", s.Name)
	}
	s.Route = &runtime.Route{Host: r.Host, Path: r.Path, Port: r.Port, Canary: r.Canary}
	s.StopFirst = false
	s.Config.Ports = append(s.Config.Ports, types.ServicePortConfig{
		Target: uint32(r.Port), HostIP: "127.0.0.1", Protocol: "tcp", Mode: "ingress",
	})
	return nil
}

// proxyClient is the admin client of the proxy next to gantry's state.
func (e *Engine) proxyClient() *proxy.Client {
	return proxy.NewClient(proxy.AdminSocket(e.stateDir))
}

// requireProxy fails fast, before any container is made, when a plan has
// routed services and no proxy answers.
func (e *Engine) requireProxy(ctx context.Context, plan *runtime.Plan) error {
	for _, name := range plan.Order {
		if plan.Services[name].Route != nil {
			if _, err := e.proxyClient().State(ctx); err != nil {
				return fmt.Errorf("service %s is routed through the gantry proxy, but %w", name, err)
			}
			return nil
		}
	}
	return nil
}

// switchTo sends a routed service's traffic to its new, healthy container
// and drains the old one. It records the switch before taking it, and
// leaves the old containers running (for a switch back).
func (e *Engine) switchTo(ctx context.Context, d *store.Deployment, plan *runtime.Plan, svc *runtime.Service, c runtime.Container) (*Failure, error) {
	r := svc.Route
	addr, err := e.rt.Address(ctx, c.ID, r.Port)
	if err != nil {
		return &Failure{Service: svc.Name, Check: "switch", Reason: err.Error()}, nil
	}
	if err := e.step(ctx, d.ID, svc.Name, "switch", addr); err != nil {
		return nil, err
	}
	reason := proxy.ReasonDeploy
	if d.Kind == "rollback" {
		reason = proxy.ReasonRollback
	}
	res, err := e.proxyClient().Switch(ctx, proxy.SwitchRequest{Env: plan.Env, Service: svc.Name, Host: r.Host, Path: r.Path,
		To: proxy.Upstream{Addr: addr, Release: plan.Release}, Reason: reason})
	if err != nil {
		return &Failure{Service: svc.Name, Check: "switch", Reason: err.Error()}, nil
	}
	e.report.Service(svc.Name, "switched", "traffic to "+addr)
	if prev := res.Previous; prev != nil && prev.Addr != addr {
		if err := e.drainOld(ctx, d, plan, svc.Name, prev.Addr); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// drainOld records and follows the drain of addr, a release that traffic
// moved away from; the container stays (for a switch back, or until the
// failed release's is removed). Only recording the step can fail it.
func (e *Engine) drainOld(ctx context.Context, d *store.Deployment, plan *runtime.Plan, service, addr string) error {
	if err := e.step(ctx, d.ID, service, "drain", addr); err != nil {
		return err
	}
	e.report.Service(service, "draining", addr)
	dr, err := e.proxyClient().Drain(ctx, proxy.DrainRequest{Env: plan.Env, Service: service, Addr: addr})
	switch {
	case err != nil:
		// Traffic has moved; a drain that could not be followed
		// leaves the old container running until prune stops it.
		e.log.Warn("drain not followed", "service", service, "upstream", addr, "err", err)
	case dr.Cut > 0:
		e.report.Service(service, "drained", fmt.Sprintf("%d requests cut at the drain timeout", dr.Cut))
	default:
		e.report.Service(service, "drained", "")
	}
	return nil
}

// switchBack returns every routed service of plan whose route the failed
// deployment moved to the containers of prev, before those of the failed
// release are removed: the old containers still run, so no request fails.
// It returns what could not be switched back.
func (e *Engine) switchBack(ctx context.Context, d *store.Deployment, plan *runtime.Plan, prev *store.Deployment, done []applied) []error {
	var routed []applied
	for _, a := range done {
		if s := plan.Services[a.service]; s != nil && s.Route != nil && a.switched {
			routed = append(routed, a)
		}
	}
	if len(routed) == 0 {
		return nil
	}
	if prev == nil {
		return nil // nothing served before: the proxy answers 502 until a release is routed
	}
	prevPlan, err := e.planOf(ctx, prev.PlanID)
	if err != nil {
		return []error{fmt.Errorf("switch back: %w", err)}
	}
	var errs []error
	for _, a := range routed {
		if err := e.routeTo(ctx, d.ID, prevPlan, a.service, proxy.ReasonRollback); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// routeTo switches a service's route to its container of plan (started
// when it was stopped), unless the route already goes there.
func (e *Engine) routeTo(ctx context.Context, id int64, plan *runtime.Plan, service, reason string) error {
	svc := plan.Services[service]
	if svc == nil || svc.Route == nil {
		return nil
	}
	cs, err := e.rt.Containers(ctx, plan.Project, plan.Env)
	if err != nil {
		return err
	}
	var own *runtime.Container
	for i, c := range cs {
		if c.Service == service && c.PlanID == plan.ID {
			own = &cs[i]
		}
	}
	if own == nil {
		return fmt.Errorf("switch %s back to %s: its container is gone", service, plan.Release)
	}
	if !own.Running() {
		e.report.Service(service, "restoring previous", own.Name)
		if err := e.rt.Start(ctx, own.ID); err != nil {
			return fmt.Errorf("switch %s back to %s: %w", service, plan.Release, err)
		}
		if v := e.waitServing(ctx, own.ID, time.Minute); !v.Healthy {
			return fmt.Errorf("switch %s back to %s: its container did not come back healthy: %s", service, plan.Release, v.Reason)
		}
	}
	addr, err := e.rt.Address(ctx, own.ID, svc.Route.Port)
	if err != nil {
		return fmt.Errorf("switch %s back to %s: %w", service, plan.Release, err)
	}
	c := e.proxyClient()
	st, err := c.State(ctx)
	if err != nil {
		return fmt.Errorf("switch %s back to %s: %w", service, plan.Release, err)
	}
	// A route with a canary is switched even when its release is already
	// this one: the switch ends the canary, whose container may be about
	// to go.
	if r := st.Route(plan.Env, service); r.Serves(addr) && r.Canary == nil {
		return nil
	}
	if id != 0 {
		if err := e.step(ctx, id, service, "switch-back", addr); err != nil {
			return err
		}
	}
	if _, err := c.Switch(ctx, proxy.SwitchRequest{Env: plan.Env, Service: service, Host: svc.Route.Host, Path: svc.Route.Path,
		To: proxy.Upstream{Addr: addr, Release: plan.Release}, Reason: reason}); err != nil {
		return fmt.Errorf("switch %s back to %s: %w", service, plan.Release, err)
	}
	e.report.Service(service, "switched back", "traffic to "+addr)
	return nil
}

// routeServing points every routed service of the serving plan at its
// container: what a recovery does after a gantry killed mid-switch.
func (e *Engine) routeServing(ctx context.Context, plan *runtime.Plan) error {
	var errs []error
	for _, name := range plan.Order {
		if plan.Services[name].Route == nil {
			continue
		}
		if err := e.routeTo(ctx, 0, plan, name, proxy.ReasonRollback); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) planOf(ctx context.Context, planID int64) (*runtime.Plan, error) {
	row, err := e.store.Get(ctx, planID)
	if err != nil {
		return nil, err
	}
	return DecodePlan(row.Plan, planID)
}

// routedStrategy names a routed service's strategy in results.
func routedStrategy(svc *runtime.Service, s string) string {
	if svc.Route != nil && !strings.EqualFold(s, "job") {
		return StrategyBlueGreen
	}
	return s
}
