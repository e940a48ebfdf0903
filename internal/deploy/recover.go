package deploy

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gantryhq/gantry/internal/failpoint"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Recover finishes the work of a gantry that was killed while it deployed
// to env: the environment is brought back to the release that served before,
// and the interrupted deployment is recorded as rolled back. When another
// live gantry holds the environment, Recover leaves it alone.
func (e *Engine) Recover(ctx context.Context, project, env string) (_ []int64, err error) {
	defer func() { err = e.redact.Error(err) }()
	lock, err := e.store.TryAcquire(ctx, project, env, store.PurposeRecover)
	if lock == nil || err != nil {
		return nil, err
	}
	defer lock.Release()
	return e.recoverLocked(ctx, project, env, lock)
}

func (e *Engine) recoverLocked(ctx context.Context, project, env string, lock *store.Lock) ([]int64, error) {
	// Deployments held for approval are no unfinished work; those whose
	// request expired are cancelled, with the reason.
	expired, err := e.store.ExpireApprovals(ctx, project, env, time.Now())
	if err != nil {
		return nil, err
	}
	for _, id := range expired {
		e.report.Note(fmt.Sprintf("deployment %d was cancelled: its approval request expired", id))
	}
	unfinished, err := e.store.Unfinished(ctx, project, env)
	if err != nil {
		return nil, err
	}
	if len(unfinished) == 0 {
		e.closeInterruptedWatch(ctx, project, env)
		// Secret files of containers removed behind gantry's back (or by
		// a gantry killed between a container and its secrets) go here.
		e.sweepSecrets(ctx, project, env)
		return nil, nil
	}
	if err := e.rt.Ping(ctx); err != nil {
		return nil, fmt.Errorf("deployment %d in %s was interrupted and needs recovery, but: %w", unfinished[0].ID, env, err)
	}
	// Real work, no moment's check: a deploy that finds the lock so held
	// is refused as busy at once, naming the deployment, rather than
	// waiting for it (store.Acquire). Under a deploy's own lock, the
	// deploy names its deployment itself.
	if lock.Purpose() == store.PurposeRecover {
		if err := lock.SetDeployment(ctx, unfinished[0].ID); err != nil {
			e.log.Warn("naming the deployment being recovered on the lock failed", "err", err)
		}
	}
	// Finish even when the user presses Ctrl-C again: half a recovery is
	// worse than the wait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil {
		return nil, err
	}
	var plan *runtime.Plan
	if serving != nil {
		row, err := e.store.Get(ctx, serving.PlanID)
		if err != nil {
			return nil, err
		}
		if plan, err = DecodePlan(row.Plan, serving.PlanID); err != nil {
			return nil, err
		}
		e.loadSecrets(plan)
	}
	cs, err := e.rt.Containers(ctx, project, env)
	if err != nil {
		return nil, err
	}
	if e.orchestrated() && plan != nil {
		// On a swarm, services are rolled to the serving release below
		// (converge), never removed and made again.
		cs = nil
	}
	// A canary left on a route goes first, while its container still
	// answers: all traffic to the stable release.
	e.recoverCanaries(ctx, unfinished)
	// So does a route an interrupted switch moved to a new container: back
	// to the serving release's, which still runs (blue/green keeps it),
	// before the new one is removed below.
	if plan != nil && !e.orchestrated() {
		if err := e.routeServing(ctx, plan); err != nil {
			e.report.Note(fmt.Sprintf("warning: the proxy's routes of %s were not switched back before the interrupted release's containers go: %v", env, err))
		}
	}
	var ids []int64
	for _, u := range unfinished {
		where := string(u.State)
		if steps, err := e.store.Steps(ctx, u.ID); err == nil && len(steps) > 0 {
			last := steps[len(steps)-1]
			where = fmt.Sprintf("%s (%s %s)", u.State, last.Phase, last.Service)
		}
		e.report.Note(fmt.Sprintf("deployment %d (release %s) was interrupted while %s: gantry pid %d stopped; recovering", u.ID, u.Release, where, u.PID))
		if plan == nil || u.PlanID != plan.ID {
			for _, c := range cs {
				if c.PlanID != u.PlanID {
					continue
				}
				var err error
				if u.Kind == "deploy" {
					err = e.rt.Remove(ctx, c.ID)
				} else {
					err = e.rt.Stop(ctx, c.ID, stopGraceDefault)
				}
				if err != nil {
					return nil, err
				}
			}
		}
		ids = append(ids, u.ID)
	}
	reason := "nothing served before it; its containers were removed"
	if plan != nil {
		if err := e.converge(ctx, plan); err != nil {
			return nil, fmt.Errorf("recovering %s: %w", env, err)
		}
		if err := e.routeServing(ctx, plan); err != nil {
			e.report.Note(fmt.Sprintf("warning: the proxy's routes of %s were not restored: %v", env, err))
		}
		reason = fmt.Sprintf("rolled back to %s", serving.Release)
	}
	e.sweepSecrets(ctx, project, env)
	failpoint.Hit("recover:converged")
	for _, u := range unfinished {
		to := store.RolledBack
		if plan == nil || u.State == store.Pending {
			to = store.Failed
		}
		msg := fmt.Sprintf("interrupted: gantry pid %d stopped while %s; recovered by pid %d: %s", u.PID, u.State, os.Getpid(), reason)
		if err := e.transition(ctx, u.ID, to, msg); err != nil {
			return nil, err
		}
	}
	if plan != nil {
		e.report.Note(fmt.Sprintf("recovered: %s is serving in %s", serving.Release, env))
	}
	return ids, nil
}

const stopGraceDefault = 10 * time.Second

// converge makes a plan's containers the running ones of their services:
// missing ones are created, stopped ones started, any other release's
// running containers stopped. Jobs are left alone.
func (e *Engine) converge(ctx context.Context, plan *runtime.Plan) error {
	if o, ok := e.rt.(runtime.Orchestrator); ok {
		return e.convergeOrchestrated(ctx, o, plan)
	}
	if err := e.rt.Prepare(ctx, plan); err != nil {
		return err
	}
	cs, err := e.rt.Containers(ctx, plan.Project, plan.Env)
	if err != nil {
		return err
	}
	for _, name := range plan.Order {
		svc := plan.Services[name]
		if svc.Job {
			continue
		}
		var own *runtime.Container
		for i, c := range cs {
			if c.Service == name && c.PlanID == plan.ID {
				own = &cs[i]
			}
		}
		// Stop the others first: a stop-first service's port is free only then.
		for _, c := range cs {
			if c.Service == name && c.PlanID != plan.ID && (c.Running() || c.Restarting) {
				if err := e.rt.Stop(ctx, c.ID, stopGrace(svc)); err != nil {
					return err
				}
			}
		}
		if own == nil {
			c, err := e.rt.Create(ctx, plan, name)
			if err != nil {
				return err
			}
			own = &c
		}
		if !own.Running() {
			e.report.Service(name, "restoring", own.Name)
			if err := e.rt.Start(ctx, own.ID); err != nil {
				return err
			}
			if v := e.waitServing(ctx, own.ID, 60*time.Second); !v.Healthy {
				return fmt.Errorf("service %s of release %s did not come back healthy: %s", name, plan.Release, v.Reason)
			}
			e.report.Service(name, "restored", "")
		}
	}
	return nil
}
