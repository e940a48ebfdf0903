package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/store"
)

// watchedDeploy records 1.0.0 and then 2.0.0 succeeded in shop/staging,
// and has this process hold the environment for 2.0.0 as the deploy in
// its watch window would; it returns 2.0.0's deployment, 1.0.0's, the
// holder's lock and what a rollback finds holding the environment.
func watchedDeploy(t *testing.T, st *store.Store) (d, prev *store.Deployment, holder *store.Lock, locked *store.LockedError) {
	t.Helper()
	ctx := context.Background()
	succeed := func(d *store.Deployment) {
		if err := st.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		st.Transition(ctx, d.ID, store.Deploying, "")
		st.Transition(ctx, d.ID, store.Verifying, "")
		if err := st.Succeed(ctx, d, "all services healthy"); err != nil {
			t.Fatal(err)
		}
	}
	prev = &store.Deployment{Project: "shop", Env: "staging", Release: "1.0.0", Kind: "deploy", PID: 7}
	succeed(prev)
	d = &store.Deployment{Project: "shop", Env: "staging", Release: "2.0.0", Kind: "deploy", PID: 7, PreviousID: prev.ID}
	succeed(d)
	holder, err := st.Acquire(ctx, "shop", "staging", "deploy 2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Release() })
	if err := holder.SetDeployment(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	_, err = st.Acquire(ctx, "shop", "staging", "rollback")
	if !errors.As(err, &locked) {
		t.Fatalf("the environment should be busy: %v", err)
	}
	return d, prev, holder, locked
}

// openStore opens a store in a temporary directory, closed at cleanup.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestAskHolder: a rollback asks the deploy in its watch window to roll
// back, and returns its result once it has; a --to other than the release
// before is refused with nothing recorded.
func TestAskHolder(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	d, prev, _, locked := watchedDeploy(t, st)
	e := New(nil, st, t.TempDir(), WithActor("alice"))

	if _, lock, err := e.askHolder(ctx, "shop", "staging", "0.9.0", locked); lock != nil || !errors.Is(err, ErrInput) ||
		!strings.Contains(err.Error(), "a rollback now returns to 1.0.0, the release before it") {
		t.Errorf("--to another release: %v", err)
	}
	if sig, _ := st.TakeCanarySignal(ctx, d.ID, "", nil); sig != nil {
		t.Errorf("a refused rollback recorded a request: %+v", sig)
	}

	// The deploy, as its watch does: takes the request, then rolls back.
	go func() {
		for {
			sig, err := st.TakeCanarySignal(ctx, d.ID, "", nil)
			if err != nil || sig != nil {
				if sig == nil || sig.Action != store.SignalRollback || !strings.HasPrefix(sig.Actor, "alice (pid ") {
					t.Errorf("the request the deploy took: %+v, %v", sig, err)
				}
				st.SetResult(ctx, d.ID, &Result{Deployment: d.ID, Release: "2.0.0", Previous: "1.0.0", Kind: "deploy", State: store.RolledBack,
					Failure: &Failure{Check: checkRollback, Reason: sig.Actor + " asked for it"}})
				st.Revert(ctx, d, prev.ID, "rolled back on request")
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	res, lock, err := e.askHolder(ctx, "shop", "staging", "", locked)
	if err != nil || lock != nil {
		t.Fatalf("asking the holder: %v (lock %v)", err, lock)
	}
	if res.State != store.RolledBack || res.Deployment != d.ID || res.Previous != "1.0.0" || res.Failure == nil || res.Failure.Check != checkRollback {
		t.Errorf("result: %+v", res)
	}
}

// TestAskHolderTakenAsItEnded: the deploy takes the request, rolls back
// and frees the environment at once; the rollback reports that deployment
// and does not roll back one release further itself.
func TestAskHolderTakenAsItEnded(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	d, prev, holder, locked := watchedDeploy(t, st)
	e := New(nil, st, t.TempDir())
	go func() {
		for {
			if sig, err := st.TakeCanarySignal(ctx, d.ID, "", nil); err != nil || sig != nil {
				st.Revert(ctx, d, prev.ID, "rolled back on request")
				holder.Release()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	res, lock, err := e.askHolder(ctx, "shop", "staging", "", locked)
	if lock != nil {
		lock.Release()
		t.Fatal("the rollback took the environment to roll back itself, after the deploy had")
	}
	if err != nil || res.State != store.RolledBack || res.Deployment != d.ID {
		t.Errorf("result: %+v, %v", res, err)
	}
}

// TestAskHolderWithdrawn: the deploy ends (its window over) before it
// looks for the request: the rollback withdraws it, takes the lock and
// runs by itself; no later look of any deploy acts on it.
func TestAskHolderWithdrawn(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	d, _, holder, locked := watchedDeploy(t, st)
	e := New(nil, st, t.TempDir())
	go func() {
		time.Sleep(300 * time.Millisecond)
		holder.Release()
	}()
	res, lock, err := e.askHolder(ctx, "shop", "staging", "", locked)
	if err != nil || res != nil || lock == nil {
		t.Fatalf("with the holder gone: %+v, %v, lock %v; want the lock", res, err, lock)
	}
	lock.Release()
	if sig, _ := st.TakeCanarySignal(ctx, d.ID, "", nil); sig != nil {
		t.Errorf("the withdrawn request is still there to take: %+v", sig)
	}
}

// TestAskHolderNot: a holder that cannot be asked leaves the rollback
// refused as busy (another rollback); a first release, deploying or in its
// window, has nothing to roll back to.
func TestAskHolderNot(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	e := New(nil, st, t.TempDir())
	hold := func(d *store.Deployment) (*store.Lock, *store.LockedError) {
		t.Helper()
		if err := st.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		st.Transition(ctx, d.ID, store.Deploying, "")
		holder, err := st.Acquire(ctx, "shop", "staging", d.Kind+" "+d.Release)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { holder.Release() })
		holder.SetDeployment(ctx, d.ID)
		_, err = st.Acquire(ctx, "shop", "staging", "rollback")
		var locked *store.LockedError
		if !errors.As(err, &locked) {
			t.Fatal(err)
		}
		return holder, locked
	}
	holder, locked := hold(&store.Deployment{Project: "shop", Env: "staging", Release: "1.0.0", Kind: "deploy", PID: 7})
	if _, lock, err := e.askHolder(ctx, "shop", "staging", "", locked); lock != nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "nothing earlier to roll back to") {
		t.Errorf("a first release being deployed: %v", err)
	}
	st.Transition(ctx, locked.Holder.DeploymentID, store.Failed, "stopped")
	holder.Release()
	_, locked = hold(&store.Deployment{Project: "shop", Env: "staging", Release: "0.9.0", Kind: "rollback", PID: 7, PreviousID: 1})
	if _, lock, err := e.askHolder(ctx, "shop", "staging", "", locked); lock != nil || err != locked {
		t.Errorf("another rollback: %v, want busy", err)
	}
}
