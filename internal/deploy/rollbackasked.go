package deploy

// `gantry rollback` while a deploy holds the environment. A deploy holds
// its environment's lock through its canary and its watch window (the
// minutes after the switch while its analysis watches), and the previous
// release's containers run through both, so that a rollback then is a
// switch back. Rather than refuse as busy, the rollback asks that deploy
// to roll back (store.SignalRollback: a canary aborts, as by `gantry
// promote --abort`; a watch window is cut short, as by a failing verdict),
// then follows the deployment to its end. A deploy that
// ends before it looks, or whose gantry is gone, leaves the lock free: the
// rollback then takes it and runs as usual.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
// asked (a deploy still before its switch, another rollback).
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
	if !canary && d.State != store.Succeeded {
		// Still before its switch: the new release serves nothing yet.
		return nil, nil, locked
	}
	where := "in its watch window"
	if canary {
		where = "in its canary"
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
// gone), it withdraws sig and returns the lock, now this caller's.
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
			// Nobody will take it: withdrawn, so that no later look acts on it.
			if _, err := e.store.TakeCanarySignal(ctx, sig.DeploymentID, sig.Service, func(store.CanarySignal) string {
				return "withdrawn: the deployment ended before it looked, and gantry rollback ran by itself"
			}); err != nil {
				lock.Release()
				return nil, err
			}
			return lock, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the deploy holding %s did not take the rollback request within %s; it is recorded and taken when that deploy next looks (gantry status %s shows where it is)", env, askTakeWait, env)
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

// lockedBy returns the error's LockedError, nil when it is none.
func lockedBy(err error) *store.LockedError {
	var locked *store.LockedError
	if errors.As(err, &locked) {
		return locked
	}
	return nil
}
