package store

import (
	"context"
	"database/sql"
	"errors"
)

// What a person asks of a canary waiting in a deployment.
const (
	// CanaryStep advances a canary waiting at a manual step.
	CanaryStep = "step"
	// CanaryAbort sends all traffic back to the stable release and fails
	// the deployment.
	CanaryAbort = "abort"
	// SignalRollback is `gantry rollback` while a deploy holds the
	// environment: given with no service, it asks the deployment to roll
	// back now (its health gates end as if they failed, its watch window
	// as if its analysis did); given to a canary's service, it aborts the
	// canary as CanaryAbort does.
	SignalRollback = "rollback"
)

// canarySchema holds what `gantry promote --step|--abort` asks of a canary
// that another gantry process runs, and what `gantry rollback` asks of a
// deployment under way: that process polls for a signal of its deployment
// and marks it taken when it acts on it.
const canarySchema = `
CREATE TABLE IF NOT EXISTS canary_signals (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL,
	service       TEXT NOT NULL,
	step          INTEGER NOT NULL,
	action        TEXT NOT NULL,
	actor         TEXT NOT NULL DEFAULT '',
	at            TEXT NOT NULL,
	taken_at      TEXT
);
CREATE INDEX IF NOT EXISTS canary_signals_deployment ON canary_signals(deployment_id, id);
CREATE TABLE IF NOT EXISTS canary_signals_ignored (
	signal_id INTEGER PRIMARY KEY REFERENCES canary_signals(id),
	why       TEXT NOT NULL
);
`

// CanarySignal is one request to a running canary: advance its step, or
// abort it.
type CanarySignal struct {
	ID           int64  `json:"id"`
	DeploymentID int64  `json:"deployment"`
	Service      string `json:"service"`
	// Step is the step the signal was given at; a step signal for an
	// earlier step than the one waiting is stale and ignored.
	Step   int    `json:"step"`
	Action string `json:"action"`
	Actor  string `json:"actor,omitempty"`
	At     string `json:"at"`
	// Ignored says why the canary took the signal without acting on it
	// (a step signal given at a step the canary has left); empty when it
	// acted on it.
	Ignored string `json:"ignored,omitempty"`
}

// SignalCanary records a signal for deployment sig.DeploymentID.
func (s *Store) SignalCanary(ctx context.Context, sig *CanarySignal) error {
	sig.At = now()
	res, err := s.db.ExecContext(ctx, `INSERT INTO canary_signals (deployment_id, service, step, action, actor, at) VALUES (?,?,?,?,?,?)`,
		sig.DeploymentID, sig.Service, sig.Step, sig.Action, sig.Actor, sig.At)
	if err != nil {
		return err
	}
	sig.ID, err = res.LastInsertId()
	return err
}

// TakeCanarySignal returns the oldest signal of a deployment's service
// not taken yet, and marks it taken; nil when there is none. ignore, when
// set, says why the canary will not act on it ("" to act): that is
// recorded with the mark, in one transaction, so that the asker never
// reads "taken" without it. It is polled twice a second while a canary
// runs: a read, and a write only when there is a signal to take (SQLite's
// write lock is the whole database's).
func (s *Store) TakeCanarySignal(ctx context.Context, deployment int64, service string, ignore func(CanarySignal) string) (*CanarySignal, error) {
	c := CanarySignal{DeploymentID: deployment, Service: service}
	err := s.db.QueryRowContext(ctx, `SELECT id, step, action, actor, at FROM canary_signals
		WHERE deployment_id=? AND service=? AND taken_at IS NULL ORDER BY id LIMIT 1`, deployment, service).
		Scan(&c.ID, &c.Step, &c.Action, &c.Actor, &c.At)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ignore != nil {
		c.Ignored = ignore(c)
	}
	// Not marked: taken by another reader meanwhile.
	if marked, err := s.markTaken(ctx, c.ID, c.Ignored); err != nil || !marked {
		return nil, err
	}
	return &c, nil
}

// WithdrawSignal marks signal id taken without acting on it, for why, if
// no one has taken it yet; it says whether it did (false: the process it
// was for took it first, and acts on it).
func (s *Store) WithdrawSignal(ctx context.Context, id int64, why string) (bool, error) {
	return s.markTaken(ctx, id, why)
}

// markTaken marks signal id taken, if it was not yet, with why it is not
// acted on when why is set, in one transaction; it says whether it did.
func (s *Store) markTaken(ctx context.Context, id int64, why string) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE canary_signals SET taken_at=? WHERE id=? AND taken_at IS NULL`, now(), id)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	if why != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO canary_signals_ignored (signal_id, why) VALUES (?,?)`, id, why); err != nil {
			return false, err
		}
	}
	return true, tx.Commit()
}

// CanarySignalTaken says whether the process running the canary has
// taken signal id, and why it did not act on it when it did not.
func (s *Store) CanarySignalTaken(ctx context.Context, id int64) (taken bool, ignored string, err error) {
	var at, why sql.NullString
	err = s.db.QueryRowContext(ctx, `SELECT c.taken_at, i.why FROM canary_signals c
		LEFT JOIN canary_signals_ignored i ON i.signal_id = c.id WHERE c.id=?`, id).Scan(&at, &why)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", ErrNotFound
	}
	if err != nil {
		return false, "", err
	}
	return at.Valid, why.String, nil
}
