package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// Heartbeat is how often a lock holder proves it is alive; a lock whose
// holder missed StaleAfter worth of heartbeats can be taken over.
const (
	Heartbeat  = 2 * time.Second
	StaleAfter = 30 * time.Second
)

// Holder describes who holds an environment's lock.
type Holder struct {
	PID          int       `json:"pid"`
	Host         string    `json:"host"`
	Purpose      string    `json:"purpose"`
	DeploymentID int64     `json:"deployment_id,omitempty"`
	AcquiredAt   time.Time `json:"acquired_at"`
	HeartbeatAt  time.Time `json:"heartbeat_at"`
}

// LockedError says that another live gantry works on the environment.
type LockedError struct {
	Env    string
	Holder Holder
}

func (e *LockedError) Error() string {
	what := e.Holder.Purpose
	if e.Holder.DeploymentID != 0 {
		what = fmt.Sprintf("%s (deployment %d)", what, e.Holder.DeploymentID)
	}
	return fmt.Sprintf("environment %s is busy: gantry pid %d on %s is running %s since %s; wait for it to finish (see `gantry status %s`), or stop that process: a killed gantry's lock is taken over and its work rolled back by the next command",
		e.Env, e.Holder.PID, e.Holder.Host, what, e.Holder.AcquiredAt.Local().Format(time.TimeOnly), e.Env)
}

// Lock is a held environment lock.
type Lock struct {
	s       *Store
	project string
	env     string
	purpose string
	token   string
	stop    chan struct{}
	done    chan struct{}
	lost    chan struct{}
	once    sync.Once
	// Stale is the holder whose abandoned lock this one replaced, if any:
	// its work must be recovered before anything else.
	Stale *Holder
}

// TryAcquire is Acquire for work that another time will do as well: when
// a live process holds the lock it returns a nil lock and no error.
func (s *Store) TryAcquire(ctx context.Context, project, env, purpose string) (*Lock, error) {
	l, err := s.acquire(ctx, project, env, purpose)
	var locked *LockedError
	if errors.As(err, &locked) {
		return nil, nil
	}
	return l, err
}

// The lock's purposes for a moment's work, which a deploy waits for
// rather than being refused as busy by a process its user may not even
// have run: the proxy's route sync re-pointing a route; a command such as
// `gantry status` or `gantry history` looking for interrupted work to
// recover (which finds none, nearly always); a check whether a canary's
// gantry is still there.
const (
	PurposeRouteSync   = "route-sync"
	PurposeRecover     = "recover"
	PurposeCanaryCheck = "canary-signal"
)

// brief says whether a holder works for a moment only: its purpose says
// so, and it named no deployment it works on (a recovery that found an
// interrupted deployment does, and may take minutes).
func brief(h Holder) bool {
	switch h.Purpose {
	case PurposeRouteSync, PurposeRecover, PurposeCanaryCheck:
		return h.DeploymentID == 0
	}
	return false
}

// briefWait is how long Acquire waits for a brief holder.
const briefWait = 10 * time.Second

// Acquire takes the deploy lock of an environment. A lock held by a process
// that is gone (same host, pid not alive) or that stopped its heartbeat is
// taken over, and reported in Lock.Stale. A lock held by a live process is
// a LockedError, at once, except while the holder's purpose is brief (a
// route sync, a recovery check, a canary check): that ends within a
// moment, and Acquire waits for it (up to briefWait).
func (s *Store) Acquire(ctx context.Context, project, env, purpose string) (*Lock, error) {
	deadline := time.Now().Add(briefWait)
	for {
		l, err := s.acquire(ctx, project, env, purpose)
		var locked *LockedError
		if !errors.As(err, &locked) || !brief(locked.Holder) || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Store) acquire(ctx context.Context, project, env, purpose string) (*Lock, error) {
	host, _ := os.Hostname()
	b := make([]byte, 16)
	rand.Read(b)
	l := &Lock{s: s, project: project, env: env, purpose: purpose, token: hex.EncodeToString(b), stop: make(chan struct{}), done: make(chan struct{}), lost: make(chan struct{})}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var h Holder
	var acq, hb string
	err = tx.QueryRowContext(ctx, `SELECT pid, host, purpose, deployment_id, acquired_at, heartbeat_at FROM locks WHERE project=? AND env=?`, project, env).
		Scan(&h.PID, &h.Host, &h.Purpose, &h.DeploymentID, &acq, &hb)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, err
	default:
		h.AcquiredAt, h.HeartbeatAt = parseTime(acq), parseTime(hb)
		if alive(h, host) {
			return nil, &LockedError{Env: env, Holder: h}
		}
		l.Stale = &h
	}
	t := now()
	if _, err := tx.ExecContext(ctx, `INSERT INTO locks (project, env, token, pid, host, purpose, acquired_at, heartbeat_at) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT(project, env) DO UPDATE SET token=excluded.token, pid=excluded.pid, host=excluded.host, purpose=excluded.purpose,
		deployment_id=0, acquired_at=excluded.acquired_at, heartbeat_at=excluded.heartbeat_at`,
		project, env, l.token, os.Getpid(), host, purpose, t, t); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	go l.beat()
	return l, nil
}

func alive(h Holder, thisHost string) bool {
	if time.Since(h.HeartbeatAt) > StaleAfter {
		return false
	}
	if h.Host == thisHost {
		if h.PID == os.Getpid() {
			return true
		}
		err := syscall.Kill(h.PID, 0)
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	return true
}

func (l *Lock) beat() {
	defer close(l.done)
	t := time.NewTicker(Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			res, err := l.s.db.Exec(`UPDATE locks SET heartbeat_at=? WHERE project=? AND env=? AND token=?`, now(), l.project, l.env, l.token)
			if err != nil {
				continue // a busy database; the next beat retries
			}
			if n, err := res.RowsAffected(); err == nil && n == 0 {
				// Another gantry took the lock over (this one was paused
				// past StaleAfter): stop working on the environment.
				close(l.lost)
				return
			}
		}
	}
}

// Purpose is what the lock was taken for.
func (l *Lock) Purpose() string { return l.purpose }

// SetDeployment notes which deployment the holder works on.
func (l *Lock) SetDeployment(ctx context.Context, id int64) error {
	_, err := l.s.db.ExecContext(ctx, `UPDATE locks SET deployment_id=? WHERE project=? AND env=? AND token=?`, id, l.project, l.env, l.token)
	return err
}

// Lost is closed when another gantry took the lock over: the holder must
// stop acting on the environment.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Release gives the lock up. Releasing twice is harmless.
func (l *Lock) Release() error {
	var err error
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		_, err = l.s.db.Exec(`DELETE FROM locks WHERE project=? AND env=? AND token=?`, l.project, l.env, l.token)
	})
	return err
}
