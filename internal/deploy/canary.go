package deploy

// Canary for routed services whose route has a canary block: once a stable
// release is routed, the new container starts beside it and is gated
// directly (as for blue/green); then, step by step, the proxy sends the
// step's weight of the requests (or of sticky clients) to it, and the
// engine reads both releases' figures from the proxy every interval. A step
// fails when the canary, with at least min_requests requests, answers more
// 5xx than max_error_ratio or slower than max_p99 at p99; with too few
// requests at the end of its pause it waits for them up to twice the pause,
// then fails as inconclusive. A step without a pause waits for `gantry
// promote --step ENV`, and `gantry promote --abort ENV` fails any step.
// After the last step the canary is promoted: it becomes the route's
// release and the old one drains but keeps running through the watch
// window, exactly as after a blue/green switch. A failed step sends all
// traffic back to the stable release at once, drains the canary, and the
// deployment rolls back like one whose health gate failed, with the
// figures of both releases in its failure.
//
// Every step is recorded ("canary") before the proxy takes it; a gantry
// killed mid-canary leaves the route with a canary, which the next
// gantry's recovery aborts (recoverCanaries) before it removes the
// canary's container. The environment's lock is held for the whole canary,
// as for the watch window: another deploy to the environment is refused
// as busy (exit 5), told who holds it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/proxy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// StrategyCanary is the strategy of a routed service deployed as a canary.
const StrategyCanary = string(config.StrategyCanary)

const (
	// checkCanary is the failure check of a canary that was aborted.
	checkCanary = "canary"
	// phaseCanary is the step recorded before each canary step is taken.
	phaseCanary = "canary"
	// phaseCanaryAbort is recorded before a canary is aborted.
	phaseCanaryAbort = "canary-abort"
)

// How a canary step was judged, in CanaryReport.Verdict.
const (
	CanaryErrorRatio   = "error_ratio"
	CanaryLatency      = "latency"
	CanaryInconclusive = "inconclusive"
	CanaryManualAbort  = "manual_abort"
	CanaryInterrupted  = "interrupted"
	CanaryProxy        = "proxy"
)

// signalPoll is how often a canary looks for `gantry promote --step|--abort`.
const signalPoll = 500 * time.Millisecond

// CanaryReport says why a canary step failed, with the thresholds and both
// releases' figures over the step: what `gantry history` and --output json
// show of a canary's failure.
type CanaryReport struct {
	Step   int `json:"step"`
	Steps  int `json:"steps"`
	Weight int `json:"weight"`
	// Verdict is error_ratio, latency, inconclusive, manual_abort,
	// interrupted or proxy.
	Verdict string `json:"verdict"`
	// Actor is who aborted the canary by hand.
	Actor         string             `json:"actor,omitempty"`
	MaxErrorRatio float64            `json:"max_error_ratio"`
	MaxP99        config.Duration    `json:"max_p99,omitempty"`
	MinRequests   int                `json:"min_requests"`
	Stable        proxy.ReleaseStats `json:"stable"`
	Canary        proxy.ReleaseStats `json:"canary"`
}

// stableUpstream is the release the proxy routes svc to in env, nil when
// none: a first deploy is blue/green, there is nothing to compare with.
func (e *Engine) stableUpstream(ctx context.Context, env, service string) (*proxy.Upstream, error) {
	st, err := e.proxyClient().State(ctx)
	if err != nil {
		return nil, err
	}
	if r := st.Route(env, service); r != nil {
		return r.Upstream, nil
	}
	return nil, nil
}

// routeNew sends a routed service's traffic to its new, healthy container:
// as a canary when its route has one, it is a deploy (a rollback is a
// switch back, never stepped) and a stable release is routed; else at
// once (blue/green). It returns the strategy it took.
func (e *Engine) routeNew(ctx context.Context, d *store.Deployment, plan *runtime.Plan, svc *runtime.Service, c runtime.Container) (string, *Failure, error) {
	if svc.Route.Canary == nil || d.Kind != "deploy" {
		f, err := e.switchTo(ctx, d, plan, svc, c)
		return StrategyBlueGreen, f, err
	}
	stable, err := e.stableUpstream(ctx, plan.Env, svc.Name)
	if err != nil {
		return StrategyCanary, &Failure{Service: svc.Name, Check: checkCanary, Reason: "before its first step: " + err.Error()}, nil
	}
	if stable == nil {
		e.report.Service(svc.Name, "blue/green", "no stable release routed yet (first deploy): switching at once, canaries start with the next deploy")
		f, err := e.switchTo(ctx, d, plan, svc, c)
		return StrategyBlueGreen, f, err
	}
	f, err := e.canaryTo(ctx, d, plan, svc, c, stable)
	return StrategyCanary, f, err
}

// canaryTo steps svc's new container c in beside the stable release, and
// promotes it after the last step; a failed step is aborted (all traffic
// back to stable) before canaryTo returns its failure.
func (e *Engine) canaryTo(ctx context.Context, d *store.Deployment, plan *runtime.Plan, svc *runtime.Service, c runtime.Container, stable *proxy.Upstream) (f *Failure, err error) {
	cfg := svc.Route.Canary
	addr, err := e.rt.Address(ctx, c.ID, svc.Route.Port)
	if err != nil {
		return &Failure{Service: svc.Name, Check: checkCanary, Reason: "before its first step: " + err.Error()}, nil
	}
	cl := e.proxyClient()
	started := false
	defer func() {
		// Whatever ends a canary other than its promotion (a failed step,
		// Ctrl-C, a store that cannot record) sends traffic back first.
		if started && (f != nil || err != nil) {
			why := "the deployment stopped"
			if f != nil {
				why = f.Reason
			} else if err != nil {
				why = err.Error()
			}
			e.abortCanary(ctx, d, plan, svc.Name, why)
		}
	}()
	e.report.Service(svc.Name, "canary", fmt.Sprintf("%d steps beside %s (release %s)", len(cfg.Steps), stable.Addr, stable.Release))
	for i, st := range cfg.Steps {
		n := i + 1
		detail := fmt.Sprintf("%s to %s, pause %s", stepName(n, len(cfg.Steps), st.Weight), addr, st.Pause.D())
		if st.Manual() {
			detail = fmt.Sprintf("%s to %s, manual: waits for gantry promote --step %s", stepName(n, len(cfg.Steps), st.Weight), addr, plan.Env)
		}
		if err := e.step(ctx, d.ID, svc.Name, phaseCanary, detail); err != nil {
			return nil, err
		}
		// From the first request on, the proxy may hold the canary (a
		// refusal or a lost answer included): an abort that finds none is
		// a no-op.
		started = true
		if _, err := cl.SetCanary(ctx, proxy.CanaryRequest{Env: plan.Env, Service: svc.Name, To: proxy.Upstream{Addr: addr, Release: plan.Release},
			Weight: st.Weight, Step: n, Sticky: proxy.Sticky{Cookie: cfg.Sticky.Cookie, Header: cfg.Sticky.Header}}); err != nil {
			return &Failure{Service: svc.Name, Check: checkCanary, Reason: fmt.Sprintf("%s: the proxy refused the canary: %v", stepName(n, len(cfg.Steps), st.Weight), err),
				Canary: &CanaryReport{Step: n, Steps: len(cfg.Steps), Weight: st.Weight, Verdict: CanaryProxy}}, nil
		}
		if f := e.watchStep(ctx, d, plan, svc.Name, cfg, i); f != nil {
			return f, nil
		}
	}
	if err := e.step(ctx, d.ID, svc.Name, "switch", addr+" (canary promoted)"); err != nil {
		return nil, err
	}
	res, err := cl.PromoteCanary(ctx, plan.Env, svc.Name)
	if err != nil {
		return &Failure{Service: svc.Name, Check: checkCanary, Reason: "promoting the canary: " + err.Error(),
			Canary: &CanaryReport{Step: len(cfg.Steps), Steps: len(cfg.Steps), Weight: 100, Verdict: CanaryProxy}}, nil
	}
	started = false
	e.report.Service(svc.Name, "switched", "canary promoted: all traffic to "+addr)
	if prev := res.Previous; prev != nil && prev.Addr != addr {
		if err := e.drainOld(ctx, d, plan, svc.Name, prev.Addr); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// abortCanary sends all of a service's traffic back to its stable release
// and drains the canary; it finishes even after Ctrl-C.
func (e *Engine) abortCanary(ctx context.Context, d *store.Deployment, plan *runtime.Plan, service, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	e.step(ctx, d.ID, service, phaseCanaryAbort, why)
	res, err := e.proxyClient().AbortCanary(ctx, plan.Env, service, e.redact.String(why))
	switch {
	case errors.Is(err, proxy.ErrNotFound):
		return // no canary on the route any more
	case err != nil:
		e.report.Service(service, "canary abort failed", err.Error())
		return
	}
	e.report.Service(service, "canary aborted", "all traffic back to the stable release")
	if res.Previous != nil {
		e.drainOld(ctx, d, plan, service, res.Previous.Addr)
	}
}

// stepName is how a step is named in records and progress: 10% (step 1/3).
func stepName(n, total, weight int) string {
	return fmt.Sprintf("%d%% (step %d/%d)", weight, n, total)
}

// watchStep follows step i of a canary until it passes (its pause ended
// with enough requests within the thresholds, or `gantry promote --step`
// at a manual step) or fails, and returns the failure.
func (e *Engine) watchStep(ctx context.Context, d *store.Deployment, plan *runtime.Plan, service string, cfg *config.Canary, i int) *Failure {
	st, ab := cfg.Steps[i], cfg.Abort
	n, total := i+1, len(cfg.Steps)
	name := stepName(n, total, st.Weight)
	pause, start := st.Pause.D(), time.Now()
	rep := &CanaryReport{Step: n, Steps: total, Weight: st.Weight, MaxErrorRatio: ab.MaxErrorRatio, MaxP99: ab.MaxP99, MinRequests: ab.MinRequests}
	fail := func(verdict, reason string) *Failure {
		rep.Verdict = verdict
		return &Failure{Service: service, Check: checkCanary, Reason: name + ": " + reason, Canary: rep}
	}
	cl := e.proxyClient()
	var lastReport time.Time
	proxyErrs := 0
	for {
		stats, err := cl.CanaryStats(ctx, plan.Env, service)
		switch {
		case ctx.Err() != nil:
			return fail(CanaryInterrupted, "interrupted; "+figures(rep))
		case errors.Is(err, proxy.ErrNotFound):
			return fail(CanaryProxy, "the proxy has no canary on the route any more (aborted or replaced outside this deployment); "+figures(rep))
		case err != nil:
			if proxyErrs++; proxyErrs >= 3 {
				return fail(CanaryProxy, "the proxy's figures cannot be read: "+err.Error())
			}
		default:
			proxyErrs = 0
			rep.Stable, rep.Canary = stats.Stable, stats.Canary
		}
		c := rep.Canary
		elapsed := time.Since(start)
		switch verdict, pass := judgeStep(st, ab, c, elapsed); {
		case pass:
			e.report.Service(service, "canary", fmt.Sprintf("%s passed: %s", name, canaryFigures(c)))
			return nil
		case verdict == CanaryErrorRatio:
			return fail(verdict, fmt.Sprintf("the canary answered %s 5xx (%d of %d requests), over max_error_ratio %s; %s",
				pct(c.ErrorRatio), c.Errors, c.Requests, pct(ab.MaxErrorRatio), figures(rep)))
		case verdict == CanaryLatency:
			return fail(verdict, fmt.Sprintf("the canary's p99 latency %s is over max_p99 %s; %s", c.P99, ab.MaxP99.D(), figures(rep)))
		case verdict == CanaryInconclusive:
			return fail(verdict, fmt.Sprintf("inconclusive: the canary answered %d requests in %s (twice the pause), fewer than min_requests %d; %s",
				c.Requests, elapsed.Round(time.Second), ab.MinRequests, figures(rep)))
		}
		if time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			left := "waiting for `gantry promote --step " + plan.Env + "`"
			switch {
			case st.Manual():
			case elapsed < pause:
				left = (pause - elapsed).Round(time.Second).String() + " left"
			default:
				left = fmt.Sprintf("waiting for %d requests, up to %s", ab.MinRequests, (2*pause - elapsed).Round(time.Second))
			}
			e.report.Service(service, "canary", fmt.Sprintf("%s, %s, %s", name, canaryFigures(c), left))
		}
		// Wait for the next reading (or the end of the pause), looking for
		// a person's signal meanwhile.
		next := time.Now().Add(ab.Interval.D())
		if end := start.Add(pause); !st.Manual() && end.After(time.Now()) && end.Before(next) {
			next = end
		}
		for wait := time.Until(next); wait > 0; wait = time.Until(next) {
			select {
			case <-ctx.Done():
				return fail(CanaryInterrupted, "interrupted; "+figures(rep))
			case <-time.After(min(wait, signalPoll)):
			}
			sig, err := e.store.TakeCanarySignal(ctx, d.ID, service, func(sig store.CanarySignal) string {
				return ignoredSignal(sig, st, n, name)
			})
			if err != nil || sig == nil {
				continue
			}
			switch {
			case sig.Ignored != "":
				e.log.Info("canary signal ignored", "deployment", d.ID, "service", service, "action", sig.Action, "signal_step", sig.Step, "step", n, "why", sig.Ignored)
			case sig.Action == store.CanaryAbort, sig.Action == store.SignalRollback:
				rep.Actor = sig.Actor
				how := "gantry promote --abort"
				if sig.Action == store.SignalRollback {
					how = "gantry rollback"
				}
				return fail(CanaryManualAbort, fmt.Sprintf("aborted by %s (%s); %s", sig.Actor, how, figures(rep)))
			default:
				e.step(ctx, d.ID, service, "canary-advance", fmt.Sprintf("%s advanced by %s", name, sig.Actor))
				e.report.Service(service, "canary", fmt.Sprintf("%s advanced by %s: %s", name, sig.Actor, canaryFigures(rep.Canary)))
				return nil
			}
		}
	}
}

// ignoredSignal says why a signal is not acted on at step n (named name),
// or "" when it is: an abort always is; a step signal only at the manual
// step it was given at.
func ignoredSignal(sig store.CanarySignal, st config.CanaryStep, n int, name string) string {
	switch {
	case sig.Action == store.CanaryAbort, sig.Action == store.SignalRollback:
		return ""
	case sig.Action != store.CanaryStep:
		return fmt.Sprintf("unknown action %q", sig.Action)
	case sig.Step != n:
		return fmt.Sprintf("it was given at step %d; the canary has moved on to %s", sig.Step, name)
	case !st.Manual():
		return fmt.Sprintf("the canary is at %s, a step with a pause that ends by itself", name)
	}
	return ""
}

// judgeStep judges a canary step from the canary's figures c, elapsed
// into the step: a failing verdict (error_ratio, latency, inconclusive),
// or pass, or neither (read again). Thresholds judge only with at least
// min_requests requests (and one); a step with a pause passes at its end
// with enough requests, and is inconclusive without them at twice the
// pause; a manual step passes only by `gantry promote --step`.
func judgeStep(st config.CanaryStep, ab config.CanaryAbort, c proxy.ReleaseStats, elapsed time.Duration) (verdict string, pass bool) {
	enough := c.Requests >= int64(ab.MinRequests)
	if enough && c.Requests > 0 {
		if c.ErrorRatio > ab.MaxErrorRatio {
			return CanaryErrorRatio, false
		}
		if ab.MaxP99 > 0 && c.P99 > ab.MaxP99.D() {
			return CanaryLatency, false
		}
	}
	switch pause := st.Pause.D(); {
	case st.Manual():
		return "", false
	case elapsed >= pause && enough:
		return "", true
	case elapsed >= 2*pause:
		return CanaryInconclusive, false
	}
	return "", false
}

// canaryFigures is one release's figures: 214 requests, 0.0% 5xx, p99 12ms.
func canaryFigures(s proxy.ReleaseStats) string {
	if s.Requests == 0 {
		return "no requests yet"
	}
	return fmt.Sprintf("%d requests, %s 5xx, p99 %s", s.Requests, pct(s.ErrorRatio), s.P99)
}

// figures are both releases' figures and the thresholds, for a failure.
func figures(r *CanaryReport) string {
	p99 := "not judged"
	if r.MaxP99 > 0 {
		p99 = r.MaxP99.D().String()
	}
	return fmt.Sprintf("canary %s: %s; stable %s: %s (thresholds: max_error_ratio %s, max_p99 %s, min_requests %d)",
		r.Canary.Release, canaryFigures(r.Canary), r.Stable.Release, canaryFigures(r.Stable), pct(r.MaxErrorRatio), p99, r.MinRequests)
}

func pct(r float64) string { return fmt.Sprintf("%.1f%%", 100*r) }

// recoverCanaries aborts the canaries that interrupted deployments left on
// their routes, before their containers go: all traffic returns to the
// stable release at once.
func (e *Engine) recoverCanaries(ctx context.Context, unfinished []*store.Deployment) {
	for _, u := range unfinished {
		if u.Kind != "deploy" {
			continue
		}
		row, err := e.store.Get(ctx, u.PlanID)
		if err != nil {
			continue
		}
		plan, err := DecodePlan(row.Plan, u.PlanID)
		if err != nil {
			continue
		}
		for _, name := range plan.Order {
			svc := plan.Services[name]
			if svc.Route == nil || svc.Route.Canary == nil {
				continue
			}
			why := fmt.Sprintf("recovery: deployment %d (release %s) was interrupted mid-canary", u.ID, u.Release)
			res, err := e.proxyClient().AbortCanary(ctx, plan.Env, name, why)
			switch {
			case errors.Is(err, proxy.ErrNotFound):
				continue
			case err != nil:
				// routeServing, next, switches the route to the serving
				// release, which ends the canary too.
				e.report.Note(fmt.Sprintf("warning: the canary of %s could not be aborted: %v", name, err))
				continue
			}
			e.step(ctx, u.ID, name, phaseCanaryAbort, why)
			e.report.Service(name, "canary aborted", "all traffic back to the stable release")
			if res.Previous != nil {
				e.drainOld(ctx, u, plan, name, res.Previous.Addr)
			}
		}
	}
}

// CanarySignal is what `gantry promote --step|--abort` asked of a running
// canary.
type CanarySignal struct {
	Deployment int64  `json:"deployment"`
	Env        string `json:"env"`
	Service    string `json:"service"`
	Release    string `json:"release"`
	Step       int    `json:"step"`
	Steps      int    `json:"steps"`
	Weight     int    `json:"weight"`
	Action     string `json:"action"`
	Actor      string `json:"actor"`
	// Taken says that the deploying gantry (PID) acted on the signal
	// within the wait; false: it is recorded and taken when that gantry
	// next looks (within half a second while it runs).
	Taken bool `json:"taken"`
	PID   int  `json:"pid"`
}

// RunningCanary is a canary that a deployment is stepping in an
// environment now, as its steps record it.
type RunningCanary struct {
	Deployment int64  `json:"deployment"`
	Service    string `json:"service"`
	Release    string `json:"release"`
	Step       int    `json:"step"`
	Steps      int    `json:"steps"`
	Weight     int    `json:"weight"`
	// Manual: the step waits for `gantry promote --step`.
	Manual bool `json:"manual,omitempty"`
	PID    int  `json:"pid"`
}

// findCanary returns the canary running in env (the last step recorded of
// a service of an unfinished deployment is a canary step), nil when none.
func findCanary(ctx context.Context, st *store.Store, project, env string) (*RunningCanary, error) {
	us, err := st.Unfinished(ctx, project, env)
	if err != nil {
		return nil, err
	}
	var found *RunningCanary
	for _, u := range us {
		steps, err := st.Steps(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		last := map[string]store.Step{}
		var order []string
		for _, s := range steps {
			if s.Service == "" {
				continue
			}
			if _, ok := last[s.Service]; !ok {
				order = append(order, s.Service)
			}
			last[s.Service] = s
		}
		for _, svc := range order {
			s := last[svc]
			if s.Phase != phaseCanary {
				continue
			}
			c := &RunningCanary{Deployment: u.ID, Service: svc, Release: u.Release, PID: u.PID, Manual: strings.Contains(s.Detail, "manual:")}
			if _, err := fmt.Sscanf(s.Detail, "%d%% (step %d/%d)", &c.Weight, &c.Step, &c.Steps); err == nil {
				found = c
			}
		}
	}
	return found, nil
}

// SignalCanary asks the canary running in env (in another gantry process)
// to advance past its manual step (store.CanaryStep) or to abort
// (store.CanaryAbort), and waits up to wait for it to be taken.
func SignalCanary(ctx context.Context, st *store.Store, project, env, action, actor string, wait time.Duration) (*CanarySignal, error) {
	rc, err := findCanary(ctx, st, project, env)
	if err != nil {
		return nil, err
	}
	if rc == nil {
		return nil, inputError("no canary is running in %s; a canary runs while `gantry deploy %s` steps a routed service with a canary: block in (gantry status %s shows what serves)", env, env, env)
	}
	found := &CanarySignal{Deployment: rc.Deployment, Env: env, Service: rc.Service, Release: rc.Release, Step: rc.Step, Steps: rc.Steps, Weight: rc.Weight,
		Action: action, Actor: canaryActor(actor), PID: rc.PID}
	name := stepName(found.Step, found.Steps, found.Weight)
	if action == store.CanaryStep && !rc.Manual {
		return nil, inputError("the canary of %s in %s is at %s, a step with a pause that ends by itself; --step advances only a step without pause (--abort stops the canary)", found.Service, env, name)
	}
	sig := &store.CanarySignal{DeploymentID: found.Deployment, Service: found.Service, Step: found.Step, Action: action, Actor: found.Actor}
	if err := st.SignalCanary(ctx, sig); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		taken, ignored, err := st.CanarySignalTaken(ctx, sig.ID)
		if err != nil {
			return found, err
		}
		if taken && ignored != "" {
			return found, fmt.Errorf("%w: the canary of %s in %s did not act on it: %s (gantry status %s shows where it is)", ErrCanaryNotTaken, found.Service, env, ignored, env)
		}
		if found.Taken = taken; taken {
			return found, nil
		}
		if time.Now().After(deadline) {
			return found, notTaken(ctx, st, project, env, found)
		}
		select {
		case <-ctx.Done():
			return found, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ErrCanaryNotTaken marks a signal no canary will take: its gantry is gone,
// or the canary ended first.
var ErrCanaryNotTaken = errors.New("the canary did not take the request")

// notTaken says why a canary did not take a signal within the wait: its
// gantry is gone (nobody holds the environment), or the canary ended (its
// deployment finished); nil when that gantry still runs and will take it.
func notTaken(ctx context.Context, st *store.Store, project, env string, c *CanarySignal) error {
	if lock, err := st.TryAcquire(ctx, project, env, store.PurposeCanaryCheck); err == nil && lock != nil {
		lock.Release()
		return fmt.Errorf("%w: the gantry that ran the canary of %s in %s (pid %d) is gone; the next gantry command on %s recovers the environment (aborts the canary, rolls deployment %d back): run gantry status %s",
			ErrCanaryNotTaken, c.Service, env, c.PID, env, c.Deployment, env)
	}
	if d, err := st.Get(ctx, c.Deployment); err == nil {
		switch d.State {
		case store.Pending, store.Deploying, store.Verifying:
		default:
			return fmt.Errorf("%w: the canary of %s in %s ended first: deployment %d is %s (gantry history %s)", ErrCanaryNotTaken, c.Service, env, c.Deployment, d.State, env)
		}
	}
	return nil
}

// canaryActor names who signals a canary, for the record.
func canaryActor(actor string) string {
	if actor == "" {
		return fmt.Sprintf("pid %d", os.Getpid())
	}
	return actor
}
