package store

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func acquire(t *testing.T, s *Store, env string) *Lock {
	t.Helper()
	l, err := s.Acquire(context.Background(), "shop", env, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// plantLock writes a lock row as another gantry would have left it.
func plantLock(t *testing.T, s *Store, env string, pid int, host string, heartbeat time.Time, deployment int64) {
	t.Helper()
	at := heartbeat.UTC().Format(time.RFC3339Nano)
	_, err := s.db.Exec(`INSERT INTO locks (project, env, token, deployment_id, pid, host, purpose, acquired_at, heartbeat_at)
		VALUES ('shop', ?, 'planted', ?, ?, ?, 'deploy', ?, ?)`, env, deployment, pid, host, at, at)
	if err != nil {
		t.Fatal(err)
	}
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLockHeld(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	ctx := context.Background()

	l := acquire(t, a, "staging")
	if l.Stale != nil {
		t.Errorf("fresh lock has Stale = %+v", l.Stale)
	}
	if err := l.SetDeployment(ctx, 7); err != nil {
		t.Fatal(err)
	}

	// Another handle in this process: same pid, so the holder is alive.
	_, err := b.Acquire(ctx, "shop", "staging", "rollback")
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("second Acquire = %v (%T); want *LockedError", err, err)
	}
	if le.Env != "staging" || le.Holder.PID != os.Getpid() || le.Holder.Host != hostname(t) ||
		le.Holder.Purpose != "deploy" || le.Holder.DeploymentID != 7 || le.Holder.AcquiredAt.IsZero() {
		t.Errorf("LockedError = %+v", le)
	}
	msg := err.Error()
	for _, sub := range []string{"environment staging is busy", "pid " + strconv.Itoa(os.Getpid()), "deploy (deployment 7)", "gantry status staging"} {
		if !strings.Contains(msg, sub) {
			t.Errorf("LockedError message %q; want it to contain %q", msg, sub)
		}
	}

	// Locks are per environment and per project.
	other := acquire(t, b, "production")
	if _, err := b.Acquire(ctx, "blog", "staging", "deploy"); err != nil {
		t.Errorf("another project's staging is locked too: %v", err)
	}

	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	again := acquire(t, b, "staging")
	if again.Stale != nil {
		t.Errorf("lock after Release has Stale = %+v", again.Stale)
	}
	for _, x := range []*Lock{again, other} {
		if err := x.Release(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLockReleaseKeepsNewHolder checks that releasing a lock that was taken
// over does not free the new holder's lock.
func TestLockReleaseKeepsNewHolder(t *testing.T) {
	s := open(t, t.TempDir())
	old := acquire(t, s, "staging")
	// Make the old holder look abandoned, then take over.
	if _, err := s.db.Exec(`UPDATE locks SET heartbeat_at=?`, time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)); err != nil {
		t.Fatal(err)
	}
	taken := acquire(t, s, "staging")
	if taken.Stale == nil {
		t.Fatal("takeover without Stale")
	}
	if err := old.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(context.Background(), "shop", "staging", "deploy"); !errors.As(err, new(*LockedError)) {
		t.Fatalf("Acquire after the old holder's Release = %v; want the new holder's lock to stand", err)
	}
	if err := taken.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestLockTakeover(t *testing.T) {
	host := "elsewhere"
	for _, tc := range []struct {
		name      string
		pid       func(t *testing.T) int
		host      func(t *testing.T) string
		heartbeat time.Duration // age
		takeover  bool
	}{
		{"dead pid on this host", deadPID, hostname, 0, true},
		{"stale heartbeat, live pid", func(*testing.T) int { return os.Getpid() }, hostname, StaleAfter + time.Second, true},
		{"stale heartbeat, other host", deadPID, func(*testing.T) string { return host }, time.Hour, true},
		{"fresh heartbeat, other host", deadPID, func(*testing.T) string { return host }, time.Second, false},
		{"fresh heartbeat, parent process alive", func(*testing.T) int { return os.Getppid() }, hostname, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, t.TempDir())
			pid, h := tc.pid(t), tc.host(t)
			hb := time.Now().Add(-tc.heartbeat)
			plantLock(t, s, "staging", pid, h, hb, 12)

			l, err := s.Acquire(context.Background(), "shop", "staging", "deploy")
			if !tc.takeover {
				var le *LockedError
				if !errors.As(err, &le) || le.Holder.PID != pid || le.Holder.Host != h {
					t.Fatalf("Acquire = %v; want *LockedError naming pid %d on %s", err, pid, h)
				}
				return
			}
			if err != nil {
				t.Fatalf("Acquire = %v; want the abandoned lock taken over", err)
			}
			t.Cleanup(func() { l.Release() })
			if l.Stale == nil {
				t.Fatal("Lock.Stale not set after a takeover")
			}
			if l.Stale.PID != pid || l.Stale.Host != h || l.Stale.DeploymentID != 12 || l.Stale.Purpose != "deploy" {
				t.Errorf("Stale = %+v; want the planted holder", l.Stale)
			}
			if d := l.Stale.HeartbeatAt.Sub(hb); d > time.Microsecond || d < -time.Microsecond {
				t.Errorf("Stale.HeartbeatAt = %v, want %v", l.Stale.HeartbeatAt, hb)
			}
			// The lock is now ours: a third party is refused, naming us.
			_, err = s.Acquire(context.Background(), "shop", "staging", "deploy")
			var le *LockedError
			if !errors.As(err, &le) || le.Holder.PID != os.Getpid() || le.Holder.DeploymentID != 0 {
				t.Errorf("Acquire after takeover = %v; want *LockedError naming this process", err)
			}
		})
	}
}

// TestLockRace checks that of many handles acquiring at once exactly one
// gets the lock.
func TestLockRace(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	stores := make([]*Store, n)
	for i := range stores {
		stores[i] = open(t, dir)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []*Lock
	var lost int
	for _, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.Acquire(context.Background(), "shop", "staging", "deploy")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, l)
			case errors.As(err, new(*LockedError)):
				lost++
			default:
				t.Errorf("Acquire: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 || lost != n-1 {
		t.Fatalf("%d acquired and %d were refused; want 1 and %d", len(won), lost, n-1)
	}
	if err := won[0].Release(); err != nil {
		t.Fatal(err)
	}
}

func TestLockLostWhenTakenOver(t *testing.T) {
	s := open(t, t.TempDir())
	l := acquire(t, s, "staging")
	defer l.Release()
	// Another gantry took the lock over while this one was paused.
	if _, err := s.db.Exec(`UPDATE locks SET token='other' WHERE env='staging'`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(3 * Heartbeat):
		t.Fatal("the holder was not told that it lost the lock")
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatalf("a second release: %v", err)
	}
	var token string
	s.db.QueryRow(`SELECT token FROM locks WHERE env='staging'`).Scan(&token)
	if token != "other" {
		t.Fatalf("releasing a lost lock removed the new holder's lock (token %q)", token)
	}
}

// TestLockWaitsForBriefHolders: a deploy that finds the environment held
// for a moment's work (the proxy's route sync; `gantry status` or
// `history` looking for work to recover, which made a deploy started
// beside a status loop fail as busy; a canary check) waits for it rather
// than failing as busy; a TryAcquire never waits.
func TestLockWaitsForBriefHolders(t *testing.T) {
	for _, purpose := range []string{PurposeRouteSync, PurposeRecover, PurposeCanaryCheck} {
		t.Run(purpose, func(t *testing.T) { waitsFor(t, purpose) })
	}
}

func waitsFor(t *testing.T, purpose string) {
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	ctx := context.Background()
	held, err := a.TryAcquire(ctx, "shop", "staging", purpose)
	if err != nil || held == nil {
		t.Fatalf("%s lock: %v %v", purpose, held, err)
	}
	if l, err := b.TryAcquire(ctx, "shop", "staging", PurposeRecover); l != nil || err != nil {
		t.Fatalf("TryAcquire while held: %v %v, want nil, nil", l, err)
	}
	time.AfterFunc(300*time.Millisecond, func() { held.Release() })
	start := time.Now()
	l, err := b.Acquire(ctx, "shop", "staging", "deploy")
	if err != nil {
		t.Fatalf("a deploy after a %s: %v", purpose, err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("took the lock after %s, before the %s released it", waited, purpose)
	}
	defer l.Release()
	// A deploy holding it is no brief holder: refused at once.
	start = time.Now()
	if _, err := a.Acquire(ctx, "shop", "staging", "deploy"); err == nil || time.Since(start) > time.Second {
		t.Errorf("Acquire while a deploy holds the lock: %v after %s, want busy at once", err, time.Since(start))
	}
}

// TestLockRefusesARealRecovery: a recovery that found an interrupted
// deployment (and named it on the lock) may take minutes: a deploy is
// refused as busy at once, naming it, instead of waiting.
func TestLockRefusesARealRecovery(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	ctx := context.Background()
	held, err := a.TryAcquire(ctx, "shop", "staging", PurposeRecover)
	if err != nil || held == nil {
		t.Fatalf("recover lock: %v %v", held, err)
	}
	defer held.Release()
	if err := held.SetDeployment(ctx, 42); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.Acquire(ctx, "shop", "staging", "deploy")
	var locked *LockedError
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), "recover (deployment 42)") || time.Since(start) > time.Second {
		t.Errorf("Acquire while a recovery works on deployment 42: %v after %s, want busy at once, naming it", err, time.Since(start))
	}
}
