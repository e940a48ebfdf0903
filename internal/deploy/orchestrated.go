package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/failpoint"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// On a runtime that rolls services out itself (runtime.Orchestrator,
// Docker Swarm), the engine does not create containers: it hands every
// service's spec to the runtime, follows each rollout, and adds what the
// runtime lacks. When any service fails, every service of the release goes
// back to the previous release's stored spec together, not only the one
// that failed (Swarm rolls back one service at a time, to its one
// PreviousSpec).

// orchestrated says whether the runtime rolls services out itself.
func (e *Engine) orchestrated() bool {
	_, ok := e.rt.(runtime.Orchestrator)
	return ok
}

// translate finishes a plan for an orchestrator: the compose configs the
// services use, with their content, and each service's own spec.
func (e *Engine) translate(ctx context.Context, o runtime.Orchestrator, m *config.Model, p *runtime.Plan) error {
	for _, name := range p.Order {
		for _, ref := range p.Services[name].Config.Configs {
			if _, done := p.Configs[ref.Source]; done {
				continue
			}
			def, ok := m.Compose.Configs[ref.Source]
			if !ok {
				return inputError("service %s uses config %q, which is not declared under the top-level configs:", name, ref.Source)
			}
			cf := runtime.ConfigFile{Name: def.Name}
			switch {
			case bool(def.External):
				cf.External = true
				if cf.Name == "" {
					cf.Name = ref.Source
				}
			case def.File != "":
				b, err := os.ReadFile(def.File)
				if err != nil {
					return inputError("config %s: %v; create the file or fix configs.%s.file in the compose file", ref.Source, err, ref.Source)
				}
				cf.Content = string(b)
			case def.Environment != "":
				v, ok := m.Compose.Environment[def.Environment]
				if !ok {
					return inputError("config %s: environment variable %s is not set; export it or put it in .env", ref.Source, def.Environment)
				}
				cf.Content = v
			default:
				cf.Content = def.Content
			}
			if p.Configs == nil {
				p.Configs = map[string]runtime.ConfigFile{}
			}
			p.Configs[ref.Source] = cf
		}
	}
	ro := runtime.Rollout{Monitor: m.Env.Health.MinHealthy.D(), Order: string(m.Env.Strategy)}
	if err := o.Translate(ctx, p, ro); err != nil {
		if errors.Is(err, runtime.ErrUnsupported) {
			return fmt.Errorf("%w: %w", ErrInput, err)
		}
		return err
	}
	return nil
}

// runOrchestrated applies a plan as deployment d on an orchestrator, once
// run recorded it deploying: its services tier by tier (a tier's services
// together), each through the runtime's own rollout, and commits the
// release or rolls every service back to prev's plan.
func (e *Engine) runOrchestrated(ctx context.Context, ask *rollbackAsk, o runtime.Orchestrator, d *store.Deployment, plan *runtime.Plan, prev *store.Deployment, pol Policy, res *Result, start time.Time) (*Result, error) {
	var prevPlan *runtime.Plan
	if prev != nil {
		row, err := e.store.Get(ctx, prev.PlanID)
		if err != nil {
			return nil, err
		}
		if prevPlan, err = DecodePlan(row.Plan, prev.PlanID); err != nil {
			return nil, err
		}
		e.loadSecrets(prevPlan)
	}
	fail := func(f *Failure, cause error) (*Result, error) {
		res.Failure, cause = ask.failure(f, cause)
		return e.rollbackRelease(ctx, o, d, plan, prevPlan, prev, res, start, pol, cause)
	}
	if err := e.requireProxy(ctx, plan); err != nil {
		return fail(&Failure{Check: checkProxy, Reason: err.Error()}, err)
	}
	if err := e.step(ctx, d.ID, "", "prepare", "networks, secrets, configs"); err != nil {
		return fail(&Failure{Check: "record", Reason: err.Error()}, err)
	}
	if err := o.Prepare(ctx, plan); err != nil {
		return fail(&Failure{Check: "prepare", Reason: err.Error()}, err)
	}
	// The analysis measures while Swarm rolls the services out; its
	// failure stops following them (applyCtx) and rolls the release back.
	ver, err := e.startVerify(ctx, d, prev, pol)
	if err != nil {
		return fail(&Failure{Check: checkAnalysis, Reason: err.Error()}, err)
	}
	applyCtx, stopVerify := untilFailed(ask.ctx, ver)
	defer stopVerify()
	for _, tier := range Tiers(plan) {
		type outcome struct {
			sr  ServiceResult
			f   *Failure
			err error
		}
		outs := make([]outcome, len(tier))
		first := runTier(applyCtx, tier, func(ctx context.Context, i int, name string) bool {
			out := &outs[i]
			if svc := plan.Services[name]; svc.Job && d.Kind == "rollback" {
				// A rollback does not run an old migration again.
				out.sr = ServiceResult{Name: name, Image: svc.ImageRef, ImageID: svc.ImageID, Strategy: "job", Healthy: true,
					Check: "job", Reason: "not run again: it ran when release " + plan.Release + " was deployed"}
				e.report.Service(name, "skipped", "a rollback does not run a job again")
				return true
			}
			out.sr, out.f, out.err = e.rollService(ctx, o, d.ID, plan, name, pol, "roll")
			return out.f == nil && out.err == nil
		})
		for _, out := range outs {
			res.Services = append(res.Services, out.sr)
		}
		if f := verifyFailure(ver); f != nil {
			res.Analysis = ver.Report()
			return fail(f, nil)
		}
		if first >= 0 {
			out := outs[first]
			if out.f == nil {
				out.f = &Failure{Service: tier[first], Check: "apply", Reason: out.err.Error()}
			}
			return fail(out.f, out.err)
		}
	}
	if err := e.transition(ctx, d.ID, store.Verifying, ""); err != nil {
		return fail(&Failure{Check: "record", Reason: err.Error()}, err)
	}
	// Services that converged early may have lost tasks while later tiers
	// rolled out.
	states, err := o.Services(ctx, plan.Project, plan.Env)
	if err != nil {
		return fail(&Failure{Check: "verify", Reason: err.Error()}, err)
	}
	for _, name := range plan.Order {
		if plan.Services[name].Job {
			continue
		}
		st := findState(states, name)
		switch {
		case st == nil:
			return fail(&Failure{Service: name, Check: "verify", Reason: "the service is gone from the swarm"}, nil)
		case st.PlanID != plan.ID || st.Running < st.Desired:
			return fail(&Failure{Service: name, Check: "verify", Reason: fmt.Sprintf("%d/%d tasks running, release %s, update %s", st.Running, st.Desired, st.Release, st.UpdateState)}, nil)
		}
	}
	if f := verifyFailure(ver); f != nil {
		res.Analysis = ver.Report()
		return fail(f, nil)
	}
	e.routeTasksOnce(ctx, o, plan)
	if err := e.store.Succeed(ctx, d, "all services converged"); err != nil {
		return fail(&Failure{Check: "record", Reason: err.Error()}, err)
	}
	failpoint.Hit("state:succeeded")
	res.State = store.Succeeded
	res.DurationSeconds = time.Since(start).Seconds()
	e.setResult(ctx, d.ID, res)
	// Committed and serving, but watched: a failing analysis still rolls
	// every service back to prev's stored spec.
	if res, done, err := e.watchCommitted(ctx, ask, ver, d, res, start, prevPlan != nil, func() (*Result, error) {
		return e.rollbackRelease(ctx, o, d, plan, prevPlan, prev, res, start, pol, nil)
	}); done {
		return res, err
	}
	e.report.Note(fmt.Sprintf("release %s is serving in %s (%.1fs)", d.Release, d.Env, res.DurationSeconds))
	// Services the release no longer has go; a rollback brings them back
	// from the stored plan of the release that had them.
	for _, st := range states {
		if _, ok := plan.Services[st.Name]; ok {
			continue
		}
		e.step(ctx, d.ID, st.Name, "remove", "not in release "+plan.Release)
		if err := o.RemoveService(ctx, plan.Project, plan.Env, st.Name); err != nil {
			e.log.Warn("removing a service the release no longer has failed", "service", st.Name, "err", err)
		}
	}
	e.pruneOrchestrated(ctx, o, d, pol.Keep)
	return res, nil
}

// keptPlans are the plans an environment keeps what they need for: the
// newest keep+1 distinct plans that succeeded there, the serving one and
// keep_releases before it (containers, stopped, on a Docker host; secrets
// and configs on a swarm).
func (e *Engine) keptPlans(ctx context.Context, project, env string, keep int) (map[int64]bool, error) {
	succeeded, err := e.store.Succeeded(ctx, project, env)
	if err != nil {
		return nil, err
	}
	kept := map[int64]bool{}
	for _, d := range succeeded {
		if len(kept) > keep {
			break
		}
		kept[d.PlanID] = true
	}
	return kept, nil
}

// unusedBy says which releases did not use what was pruned.
func unusedBy(release string, keep int) string {
	switch keep {
	case 0:
		return release + " does not use"
	case 1:
		return "neither " + release + " nor the release before it uses"
	}
	return fmt.Sprintf("neither %s nor the %d releases before it use", release, keep)
}

// pruneOrchestrated removes, once deployment d committed, the secrets and
// configs on the runtime that neither d's release nor the keep releases
// that succeeded before it refers to. Those older releases can still be
// rolled back to while the sources of their secrets hold the values they
// had (gantry makes them again); otherwise the rollback is refused before
// anything changes. A failure is logged: the release is serving.
func (e *Engine) pruneOrchestrated(ctx context.Context, o runtime.Orchestrator, d *store.Deployment, keep int) {
	ids, err := e.keptPlans(ctx, d.Project, d.Env, keep)
	if err != nil {
		e.log.Warn("pruning old secrets and configs: listing the kept releases failed", "err", err)
		return
	}
	ids[d.PlanID] = true
	plans := make([]*runtime.Plan, 0, len(ids))
	for id := range ids {
		row, err := e.store.Get(ctx, id)
		if err == nil {
			var p *runtime.Plan
			if p, err = DecodePlan(row.Plan, id); err == nil {
				plans = append(plans, p)
				continue
			}
		}
		e.log.Warn("pruning old secrets and configs: reading a kept release's plan failed; nothing pruned", "plan", id, "err", err)
		return
	}
	removed, err := o.Prune(ctx, d.Project, d.Env, plans)
	if len(removed) > 0 {
		e.step(ctx, d.ID, "", "prune", strings.Join(removed, ", "))
		e.report.Note(fmt.Sprintf("pruned what %s (keep_releases: %d): %s", unusedBy(d.Release, keep), keep, strings.Join(removed, ", ")))
	}
	if err != nil {
		e.log.Warn("pruning old secrets and configs failed", "err", err)
	}
}

func findState(states []runtime.ServiceState, name string) *runtime.ServiceState {
	for i := range states {
		if states[i].Name == name {
			return &states[i]
		}
	}
	return nil
}

// rollService rolls one service of plan out and waits, at most the health
// window, for the runtime's verdict.
func (e *Engine) rollService(ctx context.Context, o runtime.Orchestrator, id int64, plan *runtime.Plan, name string, pol Policy, phase string) (ServiceResult, *Failure, error) {
	svc := plan.Services[name]
	sr := ServiceResult{Name: name, Image: svc.ImageRef, ImageID: svc.ImageID, Strategy: "swarm"}
	if svc.Job {
		sr.Strategy = "job"
	}
	if err := e.ostep(ctx, id, name, phase, svc.ImageID); err != nil {
		return sr, nil, err
	}
	window := pol.Window
	if window <= 0 {
		window = config.DefaultWindow
	}
	rctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	start := time.Now()
	rr, err := o.Roll(rctx, plan, name, runtime.RollOptions{Restore: phase == "rollback",
		Progress: func(p, detail string) { e.report.Service(name, p, detail) }})
	sr.GateSeconds = time.Since(start).Seconds()
	if err != nil {
		e.report.Service(name, "failed", err.Error())
		return sr, nil, err
	}
	sr.Healthy, sr.Check, sr.Reason = rr.Healthy, rr.Check, rr.Reason
	if err := e.ostep(context.WithoutCancel(ctx), id, name, "verdict", fmt.Sprintf("healthy=%t %s: %s", rr.Healthy, rr.Check, rr.Reason)); err != nil {
		return sr, nil, err
	}
	if !rr.Healthy {
		e.report.Service(name, "failed", rr.Reason)
		return sr, &Failure{Service: name, Check: rr.Check, Reason: rr.Reason, Logs: rr.Logs}, nil
	}
	e.report.Service(name, "healthy", rr.Reason)
	return sr, nil, nil
}

// rollbackRelease returns every service of a failed deployment to the
// previous release's stored spec, all at once, and removes the services
// the previous release did not have; with no previous release, it removes
// the deployment's services. It runs to the end even when ctx was
// cancelled: a release half rolled back is worse than the wait.
func (e *Engine) rollbackRelease(ctx context.Context, o runtime.Orchestrator, d *store.Deployment, plan, prevPlan *runtime.Plan, prev *store.Deployment, res *Result, start time.Time, pol Policy, cause error) (*Result, error) {
	if ctx.Err() != nil && res.Failure != nil && res.Failure.Check != "cancelled" {
		res.Failure.Reason = "interrupted: " + res.Failure.Reason
	}
	limit := 2 * pol.Window
	if limit < 5*time.Minute {
		limit = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	// A deployment that was committed (its analysis failed in the watch
	// window) gives the environment back to prev in the record too.
	committed := res.State == store.Succeeded
	reason := res.Failure.String()
	e.report.Note(reason)
	rbStart := time.Now()
	errs := e.convergeRelease(ctx, o, d.ID, plan, prevPlan, pol)
	if len(errs) == 0 {
		e.routeTasksOnce(ctx, o, prevPlan)
	}
	res.RollbackSeconds = time.Since(rbStart).Seconds()
	res.DurationSeconds = time.Since(start).Seconds()
	to, sentinel := store.RolledBack, ErrRolledBack
	switch {
	case len(errs) > 0:
		to, sentinel = store.Failed, ErrFailed
		reason += "; rollback incomplete: " + errors.Join(errs...).Error()
	case prevPlan == nil:
		to, sentinel = store.Failed, ErrFailed
		reason += "; nothing to roll back to (first release of this environment), its services were removed"
	default:
		var names []string
		for _, n := range prevPlan.Order {
			if !prevPlan.Services[n].Job {
				names = append(names, n)
			}
		}
		reason += fmt.Sprintf("; every service (%s) rolled back to %s together", strings.Join(names, ", "), prevPlan.Release)
	}
	res.Reason, res.State = reason, to
	record := func() error { return e.transition(ctx, d.ID, to, reason) }
	if committed && prev != nil {
		record = func() error { return e.store.Revert(ctx, d, prev.ID, reason) }
	}
	if err := record(); err != nil {
		return res, errors.Join(err, cause)
	}
	e.setResult(ctx, d.ID, res)
	if to == store.RolledBack {
		e.report.Note(fmt.Sprintf("rolled back: %s is serving in %s again (%.1fs)", prevPlan.Release, d.Env, res.RollbackSeconds))
	}
	err := fmt.Errorf("%w: %s", sentinel, reason)
	if cause != nil {
		err = fmt.Errorf("%w: %s (%w)", sentinel, reason, cause)
	}
	return res, err
}

// convergeRelease brings every service to target's plan at once (jobs
// stay as they ran: an old migration is not run again) and removes the
// services of from that target lacks; a nil target removes from's
// services. It returns what failed.
func (e *Engine) convergeRelease(ctx context.Context, o runtime.Orchestrator, id int64, from, target *runtime.Plan, pol Policy) []error {
	var mu sync.Mutex
	var errs []error
	add := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	if target != nil {
		if err := o.Prepare(ctx, target); err != nil {
			return []error{err}
		}
		for _, name := range target.Order {
			if target.Services[name].Job {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.report.Service(name, "restoring previous", target.Release)
				sr, f, err := e.rollService(ctx, o, id, target, name, pol, "rollback")
				switch {
				case err != nil:
					add(fmt.Errorf("service %s: %w", name, err))
				case f != nil:
					add(fmt.Errorf("service %s did not come back: %s", name, f.Reason))
				default:
					e.report.Service(name, "restored", sr.Reason)
				}
			}()
		}
	}
	var gone []string
	if from != nil {
		for _, name := range from.Order {
			if target == nil || target.Services[name] == nil {
				gone = append(gone, name)
			}
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		e.ostep(ctx, id, name, "remove", "not in the release rolled back to")
		if err := o.RemoveService(ctx, from.Project, from.Env, name); err != nil {
			add(err)
		}
	}
	wg.Wait()
	return errs
}

// convergeOrchestrated brings an environment back to the serving plan
// after an interrupted deployment: every service rolled to its stored
// spec, services the plan lacks removed.
func (e *Engine) convergeOrchestrated(ctx context.Context, o runtime.Orchestrator, plan *runtime.Plan) error {
	states, err := o.Services(ctx, plan.Project, plan.Env)
	if err != nil {
		return err
	}
	from := &runtime.Plan{Project: plan.Project, Env: plan.Env, Services: map[string]*runtime.Service{}}
	for _, st := range states {
		from.Order = append(from.Order, st.Name)
		from.Services[st.Name] = &runtime.Service{Name: st.Name}
	}
	pol := Policy{Window: config.DefaultWindow}
	// Steps belong to the interrupted deployment, which the recovery
	// records as a whole; none are written here.
	return errors.Join(e.convergeRelease(ctx, o, 0, from, plan, pol)...)
}

// ostep records a step of deployment id, when there is one.
func (e *Engine) ostep(ctx context.Context, id int64, service, phase, detail string) error {
	if id == 0 {
		return nil
	}
	return e.step(ctx, id, service, phase, detail)
}

// observeOrchestrated reports an orchestrator's services, with the serving
// release's plan: the release each runs, replicas running and desired, per
// node.
func (e *Engine) observeOrchestrated(ctx context.Context, o runtime.Orchestrator, st *Status, plan *runtime.Plan) (*Status, error) {
	states, err := o.Services(ctx, st.Project, st.Env)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	add := func(name string, svc *runtime.Service, s *runtime.ServiceState) {
		ss := ServiceStatus{Name: name, State: "missing", Health: "unknown"}
		if svc != nil {
			ss.Image, ss.ImageID, ss.Digest, ss.Job = svc.ImageRef, svc.ImageID, svc.Digest, svc.Job
		}
		if s != nil {
			ss.Release, ss.Container, ss.Update, ss.Nodes = s.Release, s.ID, s.UpdateState, s.Nodes
			if svc == nil {
				ss.Image = s.Image
			}
			ss.Replicas = &Replicas{Running: s.Running, Desired: s.Desired}
			ss.Health = fmt.Sprintf("running %d/%d", s.Running, s.Desired)
			switch {
			case s.UpdateState == "updating" || s.UpdateState == "rollback_started":
				ss.State = s.UpdateState
			case s.UpdateState == "paused" || s.UpdateState == "rollback_paused":
				ss.State = s.UpdateState
			case s.Running >= s.Desired && s.Desired > 0:
				ss.State = "running"
			case svc != nil && svc.Job:
				ss.State, ss.Health = "job", "ran (see gantry history)"
			default:
				ss.State = "degraded"
			}
		}
		st.Services = append(st.Services, ss)
		seen[name] = true
	}
	if plan != nil {
		for _, name := range plan.Order {
			add(name, plan.Services[name], findState(states, name))
		}
	}
	for i := range states {
		if !seen[states[i].Name] {
			add(states[i].Name, nil, &states[i])
		}
	}
	return st, nil
}
