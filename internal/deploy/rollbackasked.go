package deploy

// `gantry rollback` while a deploy holds the environment. A deploy holds
// its environment's lock from its start through its health gates, its
// canary and its watch window (the minutes after the switch while its
// analysis watches); the previous release's containers run through the
// last two, so that a rollback then is a switch back. Rather than refuse
// as busy, the rollback asks that deploy to roll back now
// (store.SignalRollback: its gates end as if they failed, a canary
// aborts as by `gantry promote --abort`, a watch window is cut short as by
// a failing verdict), then follows the deployment to its end. A deploy
// that ends before it looks, or whose gantry is gone, leaves the lock
// free: the rollback then takes it and runs as usual.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/store"
)

// askTakeWait is how long a rollback waits for the deploy that holds the
// environment to take its request; it looks every signalPoll.
const askTakeWait = 10 * time.Second

// askHolder asks the deploy that holds env (locked) to roll back, and
// waits for the deployment to end. It returns the deployment's result,
// or a lock when the holder went away without taking the request (the
// caller rolls back itself), or locked itself when the holder cannot be
// asked (another rollback, a deployment that is ending).
func (e *Engine) askHolder(ctx context.Context, project, env, to string, locked *store.LockedError) (*Result, *store.Lock, error) {
	h := locked.Holder
	if h.DeploymentID == 0 {
		return nil, nil, locked
	}
	d, err := e.store.Get(ctx, h.DeploymentID)
	if err != nil || d.Kind != "deploy" {
		return nil, nil, locked
	}
	rc, err := findCanary(ctx, e.store, project, env)
	if err != nil {
		return nil, nil, err
	}
	canary := rc != nil && rc.Deployment == d.ID
	var where string
	switch {
	case canary:
		where = "in its canary"
	case d.State == store.Deploying, d.State == store.Verifying:
		where = "being deployed"
	case d.State == store.Succeeded:
		where = "in its watch window"
	default:
		return nil, nil, locked
	}
	if d.PreviousID == 0 {
		return nil, nil, inputError("%s has served only release %s (deployment %d, %s); there is nothing earlier to roll back to", env, d.Release, d.ID, where)
	}
	prev, err := e.store.Get(ctx, d.PreviousID)
	if err != nil {
		return nil, nil, err
	}
	if to != "" && to != prev.Release {
		return nil, nil, inputError("deployment %d (release %s) is %s in %s (gantry pid %d): a rollback now returns to %s, the release before it; run gantry rollback %s without --to, or roll back to %s once that deploy has ended (gantry status %s)",
			d.ID, d.Release, where, env, h.PID, prev.Release, env, to, env)
	}
	sig := &store.CanarySignal{DeploymentID: d.ID, Action: store.SignalRollback, Actor: e.signalActor()}
	if canary {
		sig.Service, sig.Step = rc.Service, rc.Step
	}
	if err := e.store.SignalCanary(ctx, sig); err != nil {
		return nil, nil, err
	}
	e.report.Note(fmt.Sprintf("deployment %d (release %s) is %s in %s, run by gantry pid %d: asking it to roll back to %s", d.ID, d.Release, where, env, h.PID, prev.Release))
	lock, err := e.awaitTaken(ctx, project, env, sig)
	if lock != nil || err != nil {
		return nil, lock, err
	}
	if e.created != nil {
		e.created(d)
	}
	return e.awaitEnd(ctx, project, env, d.ID)
}

// signalActor names who asks, for the record.
func (e *Engine) signalActor() string {
	if e.actor == "" {
		return fmt.Sprintf("pid %d", os.Getpid())
	}
	return fmt.Sprintf("%s (pid %d)", e.actor, os.Getpid())
}

// awaitTaken waits for the holder to take sig. When the environment's lock
// comes free first (the deploy ended before it looked, or its gantry is
// gone), it withdraws sig and returns the lock, now this caller's; when
// the deploy took sig just before it ended, it is acting on it, and
// awaitTaken says taken.
func (e *Engine) awaitTaken(ctx context.Context, project, env string, sig *store.CanarySignal) (*store.Lock, error) {
	deadline := time.Now().Add(askTakeWait)
	for {
		taken, ignored, err := e.store.CanarySignalTaken(ctx, sig.ID)
		switch {
		case err != nil:
			return nil, err
		case taken && ignored != "":
			return nil, fmt.Errorf("the deploy holding %s did not act on the rollback: %s (gantry status %s shows where it is)", env, ignored, env)
		case taken:
			return nil, nil
		}
		lock, err := e.store.TryAcquire(ctx, project, env, "rollback")
		if err != nil {
			return nil, err
		}
		if lock != nil {
			// Withdrawn, so that no later look acts on it; taken first, it
			// was acted on, and this rollback must not go one further.
			withdrawn, err := e.store.WithdrawSignal(ctx, sig.ID, "withdrawn: the deployment ended before it looked, and gantry rollback ran by itself")
			if err != nil || !withdrawn {
				lock.Release()
				return nil, err
			}
			return lock, nil
		}
		if time.Now().After(deadline) {
			// The deploy runs on but did not look (a canary that moved on
			// from the step it was asked at): nothing is left pending.
			if withdrawn, err := e.store.WithdrawSignal(ctx, sig.ID, fmt.Sprintf("withdrawn: not taken within %s", askTakeWait)); err != nil || !withdrawn {
				return nil, err
			}
			return nil, fmt.Errorf("the deploy holding %s did not take the rollback request within %s, and it is withdrawn; run gantry rollback %s again (gantry status %s shows where that deploy is)", env, askTakeWait, env, env)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// awaitEnd follows deployment id, which took a rollback request, until it
// has rolled back, and returns its result. A gantry that dies on the way
// leaves the lock free: this caller takes it and recovers the interrupted
// work, and when the release the deploy committed still serves after that
// (killed before it switched back), returns the lock to roll back itself.
func (e *Engine) awaitEnd(ctx context.Context, project, env string, id int64) (*Result, *store.Lock, error) {
	for {
		d, err := e.store.Get(ctx, id)
		if err != nil {
			return nil, nil, err
		}
		if d.State.Terminal() && d.State != store.Succeeded {
			res, err := askedResult(d)
			return res, nil, err
		}
		lock, err := e.store.TryAcquire(ctx, project, env, "rollback")
		if err != nil {
			return nil, nil, err
		}
		if lock != nil {
			if _, err := e.recoverLocked(ctx, project, env, lock); err != nil {
				lock.Release()
				return nil, nil, err
			}
			if d, err = e.store.Get(ctx, id); err != nil || d.State == store.Succeeded {
				return nil, lock, err
			}
			lock.Release()
			res, err := askedResult(d)
			return res, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("stopped waiting: deployment %d is rolling back (gantry status %s): %w", id, env, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// askedResult is the result recorded by a deployment that rolled back when
// asked; an error when it did not get back to the release before it.
func askedResult(d *store.Deployment) (*Result, error) {
	res := &Result{Deployment: d.ID, Project: d.Project, Env: d.Env, Release: d.Release, Kind: d.Kind}
	if len(d.Result) > 0 {
		if err := json.Unmarshal(d.Result, res); err != nil {
			return nil, fmt.Errorf("deployment %d: reading its result: %w", d.ID, err)
		}
	}
	res.State = d.State
	if d.State == store.RolledBack {
		return res, nil
	}
	return res, fmt.Errorf("%w: deployment %d (release %s) is %s: %s", ErrFailed, d.ID, d.Release, d.State, d.Reason)
}

// checkRollback names, in Failure.Check, a rollback that `gantry
// rollback` asked of a deployment.
const checkRollback = "rollback"

// askedFailure is the failure of a deployment that `gantry rollback`
// (sig) asked to roll back, when.
func askedFailure(sig *store.CanarySignal, when string) *Failure {
	return &Failure{Check: checkRollback, Reason: fmt.Sprintf("%s asked for it (gantry rollback) %s", sig.Actor, when)}
}

// rollbackAsked is why a deployment's context ended: `gantry rollback`
// asked for the release to roll back.
type rollbackAsked struct{ sig *store.CanarySignal }

func (r *rollbackAsked) Error() string { return "rollback asked by " + r.sig.Actor }

// rollbackAsk is a deployment looking, from its start through its watch
// window, for `gantry rollback` asking it to roll back
// (store.SignalRollback with no service; a canary takes its own).
type rollbackAsk struct {
	// ctx ends when one does: the gates and the watch window run in it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	halt   chan struct{}
	done   chan struct{}
	once   sync.Once
	taken  *store.CanarySignal
}

// listenForRollback starts looking, every signalPoll, for a rollback asked
// of deployment d.
func (e *Engine) listenForRollback(ctx context.Context, d *store.Deployment) *rollbackAsk {
	a := &rollbackAsk{halt: make(chan struct{}), done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancelCause(ctx)
	go func() {
		defer close(a.done)
		tick := time.NewTicker(signalPoll)
		defer tick.Stop()
		for {
			select {
			case <-a.halt:
				return
			case <-a.ctx.Done():
				return
			case <-tick.C:
			}
			// Taken whole even if stop comes meanwhile: stop then sees it.
			sig, err := e.store.TakeCanarySignal(context.WithoutCancel(a.ctx), d.ID, "", func(sig store.CanarySignal) string {
				if sig.Action != store.SignalRollback {
					return fmt.Sprintf("unknown action %q for a deployment", sig.Action)
				}
				return ""
			})
			if err != nil || sig == nil || sig.Ignored != "" {
				continue
			}
			a.taken = sig
			e.step(context.WithoutCancel(a.ctx), d.ID, "", "rollback-asked", sig.Actor+" asked for a rollback")
			a.cancel(&rollbackAsked{sig: sig})
			return
		}
	}()
	return a
}

// stop ends the looking and returns the rollback asked, if one was: one
// taken as the deployment was about to end is still acted on. Calling it
// again returns the same.
func (a *rollbackAsk) stop() *store.CanarySignal {
	a.once.Do(func() {
		close(a.halt)
		<-a.done
		a.cancel(nil)
	})
	return a.taken
}

// failure is f, or, when a rollback was asked (which ended the gates that
// failed with f), the asked one; cause goes with f only.
func (a *rollbackAsk) failure(f *Failure, cause error) (*Failure, error) {
	var asked *rollbackAsked
	if errors.As(context.Cause(a.ctx), &asked) {
		return askedFailure(asked.sig, "during the deploy, before it was committed"), nil
	}
	return f, cause
}
