// Package store remembers every deployment, its state transitions and the
// steps taken, and holds the per-environment deploy lock. It is SQLite
// through modernc.org/sqlite (pure Go, so gantry stays one static binary),
// embedded in a state directory. Every transition is committed before the
// engine acts on it, so a crash at any point can be resumed or rolled back.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the database file inside the state directory.
const FileName = "gantry.db"

// Store is the deployment record.
type Store struct {
	db *sql.DB
	// stmts caches prepared statements of hot queries (see prepared).
	stmts sync.Map
}

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

const schema = `
CREATE TABLE IF NOT EXISTS deployments (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	project     TEXT NOT NULL,
	env         TEXT NOT NULL,
	release     TEXT NOT NULL,
	kind        TEXT NOT NULL DEFAULT 'deploy',
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	plan_id     INTEGER NOT NULL DEFAULT 0,
	previous_id INTEGER NOT NULL DEFAULT 0,
	plan        TEXT NOT NULL DEFAULT '{}',
	result      TEXT NOT NULL DEFAULT '{}',
	actor       TEXT NOT NULL DEFAULT '',
	pid         INTEGER NOT NULL DEFAULT 0,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	finished_at TEXT
);
CREATE INDEX IF NOT EXISTS deployments_env ON deployments(project, env, id);
-- Covers LastChange and HistoryVersion, which gantry server runs on every
-- status and history request: without it they read each row, walking the
-- overflow pages of its plan and result (tens of kB for 100 services).
CREATE INDEX IF NOT EXISTS deployments_env_changed ON deployments(project, env, id, updated_at);
CREATE TABLE IF NOT EXISTS transitions (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL REFERENCES deployments(id),
	from_state    TEXT NOT NULL,
	to_state      TEXT NOT NULL,
	reason        TEXT NOT NULL DEFAULT '',
	at            TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL REFERENCES deployments(id),
	service       TEXT NOT NULL,
	phase         TEXT NOT NULL,
	detail        TEXT NOT NULL DEFAULT '',
	at            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_deployment ON steps(deployment_id, id);
CREATE TABLE IF NOT EXISTS serving (
	project       TEXT NOT NULL,
	env           TEXT NOT NULL,
	deployment_id INTEGER NOT NULL REFERENCES deployments(id),
	since         TEXT NOT NULL,
	PRIMARY KEY (project, env)
);
CREATE TABLE IF NOT EXISTS releases (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	project     TEXT NOT NULL,
	version     TEXT NOT NULL,
	git_commit  TEXT NOT NULL,
	state       TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	tags        TEXT NOT NULL DEFAULT '[]',
	images      TEXT NOT NULL DEFAULT '{}',
	actor       TEXT NOT NULL DEFAULT '',
	created_at  TEXT NOT NULL,
	finished_at TEXT,
	UNIQUE (project, version)
);
CREATE TABLE IF NOT EXISTS locks (
	project       TEXT NOT NULL,
	env           TEXT NOT NULL,
	token         TEXT NOT NULL,
	deployment_id INTEGER NOT NULL DEFAULT 0,
	pid           INTEGER NOT NULL,
	host          TEXT NOT NULL,
	purpose       TEXT NOT NULL,
	acquired_at   TEXT NOT NULL,
	heartbeat_at  TEXT NOT NULL,
	PRIMARY KEY (project, env)
);
`

// schemas are applied in order when the store opens; each is idempotent
// (CREATE ... IF NOT EXISTS), so opening is also migrating.
var schemas = []string{schema, auditSchema, tokenSchema, approvalSchema, gateSchema, alertSchema, canarySchema}

// Open opens (creating when needed) the store in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("state directory %s: the path may not contain ? or #; choose another --state-dir", dir)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Keep connections for concurrent readers (gantry server): database/sql
	// keeps 2 idle by default, and opening a SQLite connection (the file,
	// the pragmas) costs more than most queries.
	db.SetMaxIdleConns(32)
	// Two gantry commands that start together on a new state directory
	// both set the new file up: the first connection switches it to WAL
	// under an exclusive lock, and SQLite answers the other SQLITE_BUSY at
	// once, without the busy timeout. Tried again, for as long as that
	// timeout.
	deadline := time.Now().Add(openBusyWait)
	for _, ddl := range schemas {
		for {
			_, err := db.Exec(ddl)
			if err == nil {
				break
			}
			if !isBusy(err) || time.Now().After(deadline) {
				db.Close()
				return nil, fmt.Errorf("prepare %s: %w", path, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return &Store{db: db}, nil
}

// openBusyWait is how long Open tries again while another process sets up
// the same new database file: the busy timeout of every connection.
const openBusyWait = 10 * time.Second

// isBusy says whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Deployment is a release going to an environment.
type Deployment struct {
	ID      int64  `json:"id"`
	Project string `json:"project"`
	Env     string `json:"env"`
	Release string `json:"release"`
	// Kind is "deploy" or "rollback".
	Kind   string `json:"kind"`
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// PlanID is the deployment whose plan and containers this one runs: its
	// own ID for a deploy, the target's for a rollback.
	PlanID int64 `json:"plan_id"`
	// PreviousID is the deployment that was serving when this one began.
	PreviousID int64           `json:"previous_id,omitempty"`
	Plan       json.RawMessage `json:"-"`
	Result     json.RawMessage `json:"result,omitempty"`
	Actor      string          `json:"actor,omitempty"`
	PID        int             `json:"-"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Create records a new deployment in state pending. A deploy's PlanID is its
// own ID; pass d.PlanID for a rollback.
func (s *Store) Create(ctx context.Context, d *Deployment) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return insertDeployment(ctx, tx, d) })
}

func insertDeployment(ctx context.Context, tx *sql.Tx, d *Deployment) error {
	if d.Kind == "" {
		d.Kind = "deploy"
	}
	if len(d.Plan) == 0 {
		d.Plan = json.RawMessage("{}")
	}
	t := now()
	res, err := tx.ExecContext(ctx, `INSERT INTO deployments
		(project, env, release, kind, state, plan_id, previous_id, plan, actor, pid, created_at, updated_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		d.Project, d.Env, d.Release, d.Kind, Pending, d.PlanID, d.PreviousID, string(d.Plan), d.Actor, d.PID, t, t)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if d.PlanID == 0 {
		d.PlanID = id
		if _, err := tx.ExecContext(ctx, `UPDATE deployments SET plan_id=? WHERE id=?`, id, id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO transitions (deployment_id, from_state, to_state, reason, at) VALUES (?,?,?,?,?)`,
		id, "", Pending, "created", t); err != nil {
		return err
	}
	d.ID, d.State = id, Pending
	d.CreatedAt, d.UpdatedAt = parseTime(t), parseTime(t)
	return nil
}

// Transition moves a deployment to a new state, if the state machine allows
// it, and records why. It is committed before it returns.
func (s *Store) Transition(ctx context.Context, id int64, to State, reason string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return transition(ctx, tx, id, to, reason) })
}

// Succeed moves a deployment to succeeded and makes it the one serving its
// environment, in one transaction: a crash cannot separate the two.
func (s *Store) Succeed(ctx context.Context, d *Deployment, reason string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := transition(ctx, tx, d.ID, Succeeded, reason); err != nil {
			return err
		}
		return setServing(ctx, tx, d.Project, d.Env, d.ID)
	})
}

func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

func transition(ctx context.Context, tx *sql.Tx, id int64, to State, reason string) error {
	var from State
	if err := tx.QueryRowContext(ctx, `SELECT state FROM deployments WHERE id=?`, id).Scan(&from); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("deployment %d: %w", id, ErrNotFound)
		}
		return err
	}
	if err := CheckTransition(from, to); err != nil {
		return fmt.Errorf("deployment %d: %w", id, err)
	}
	if from == AwaitingApproval && to == Deploying {
		if err := checkApproved(ctx, tx, id); err != nil {
			return err
		}
	}
	t := now()
	var finished any
	if to.Terminal() {
		finished = t
	}
	if _, err := tx.ExecContext(ctx, `UPDATE deployments SET state=?, reason=CASE WHEN ?='' THEN reason ELSE ? END, updated_at=?, finished_at=COALESCE(?, finished_at) WHERE id=?`,
		to, reason, reason, t, finished, id); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO transitions (deployment_id, from_state, to_state, reason, at) VALUES (?,?,?,?,?)`,
		id, from, to, reason, t)
	return err
}

// SetResult stores the outcome details (per-service verdicts and timings).
func (s *Store) SetResult(ctx context.Context, id int64, result any) error {
	b, err := json.Marshal(result)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `UPDATE deployments SET result=?, updated_at=? WHERE id=?`, string(b), now(), id)
	return err
}

const deploymentCols = `id, project, env, release, kind, state, reason, plan_id, previous_id, plan, result, actor, pid, created_at, updated_at, finished_at`

func scanDeployment(row interface{ Scan(...any) error }) (*Deployment, error) {
	var d Deployment
	var plan, result, created, updated string
	var finished sql.NullString
	if err := row.Scan(&d.ID, &d.Project, &d.Env, &d.Release, &d.Kind, &d.State, &d.Reason, &d.PlanID, &d.PreviousID,
		&plan, &result, &d.Actor, &d.PID, &created, &updated, &finished); err != nil {
		return nil, err
	}
	d.Plan, d.Result = json.RawMessage(plan), json.RawMessage(result)
	d.CreatedAt, d.UpdatedAt = parseTime(created), parseTime(updated)
	if finished.Valid {
		t := parseTime(finished.String)
		d.FinishedAt = &t
	}
	return &d, nil
}

// Get returns one deployment.
func (s *Store) Get(ctx context.Context, id int64) (*Deployment, error) {
	d, err := scanDeployment(s.db.QueryRowContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployment %d: %w", id, ErrNotFound)
	}
	return d, err
}

func (s *Store) list(ctx context.Context, q string, args ...any) ([]*Deployment, error) {
	return scanDeployments(s.db.QueryContext(ctx, `SELECT `+deploymentCols+` FROM deployments `+q, args...))
}

// scanDeployments reads every row of a query over deploymentCols, taking
// the query's own error as it comes.
func scanDeployments(rows *sql.Rows, err error) ([]*Deployment, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// History lists an environment's deployments, newest first.
func (s *Store) History(ctx context.Context, project, env string, limit int) ([]*Deployment, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	return s.list(ctx, `WHERE project=? AND env=? ORDER BY id DESC LIMIT ?`, project, env, limit)
}

// Unfinished lists deployments of an environment that never reached a
// terminal state: a gantry that was killed while it worked on them.
func (s *Store) Unfinished(ctx context.Context, project, env string) ([]*Deployment, error) {
	return s.list(ctx, `WHERE project=? AND env=? AND state IN (?,?,?) ORDER BY id`, project, env, Pending, Deploying, Verifying)
}

// FindRelease returns the newest succeeded deploy of release in env.
func (s *Store) FindRelease(ctx context.Context, project, env, release string) (*Deployment, error) {
	l, err := s.list(ctx, `WHERE project=? AND env=? AND release=? AND state=? AND kind='deploy' ORDER BY id DESC LIMIT 1`, project, env, release, Succeeded)
	if err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, fmt.Errorf("release %q in %s: %w", release, env, ErrNotFound)
	}
	return l[0], nil
}

// Succeeded lists the deployments of env that succeeded, newest first,
// rollbacks included: their plans are the ones whose containers are kept.
func (s *Store) Succeeded(ctx context.Context, project, env string) ([]*Deployment, error) {
	return s.list(ctx, `WHERE project=? AND env=? AND state=? ORDER BY id DESC`, project, env, Succeeded)
}

// Serving returns the deployment serving in env, or nil when none has.
func (s *Store) Serving(ctx context.Context, project, env string) (*Deployment, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT deployment_id FROM serving WHERE project=? AND env=?`, project, env).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, id)
}

// SetServing records which deployment serves env.
func (s *Store) SetServing(ctx context.Context, project, env string, id int64) error {
	return s.inTx(ctx, func(tx *sql.Tx) error { return setServing(ctx, tx, project, env, id) })
}

func setServing(ctx context.Context, tx *sql.Tx, project, env string, id int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO serving (project, env, deployment_id, since) VALUES (?,?,?,?)
		ON CONFLICT(project, env) DO UPDATE SET deployment_id=excluded.deployment_id, since=excluded.since`, project, env, id, now())
	return err
}

// ServingSince returns when the serving deployment took over.
func (s *Store) ServingSince(ctx context.Context, project, env string) (time.Time, error) {
	var t string
	err := s.db.QueryRowContext(ctx, `SELECT since FROM serving WHERE project=? AND env=?`, project, env).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return parseTime(t), err
}

// Step is one recorded action of a deployment on a service.
type Step struct {
	Service string    `json:"service"`
	Phase   string    `json:"phase"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// AddStep records that a deployment is about to take, or took, a step.
func (s *Store) AddStep(ctx context.Context, id int64, service, phase, detail string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO steps (deployment_id, service, phase, detail, at) VALUES (?,?,?,?,?)`,
		id, service, phase, detail, now())
	return err
}

// Steps lists a deployment's steps in order.
func (s *Store) Steps(ctx context.Context, id int64) ([]Step, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT service, phase, detail, at FROM steps WHERE deployment_id=? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Step
	for rows.Next() {
		var st Step
		var at string
		if err := rows.Scan(&st.Service, &st.Phase, &st.Detail, &at); err != nil {
			return nil, err
		}
		st.At = parseTime(at)
		out = append(out, st)
	}
	return out, rows.Err()
}

// Transitions lists a deployment's state changes in order.
func (s *Store) Transitions(ctx context.Context, id int64) ([]Transition, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT from_state, to_state, reason, at FROM transitions WHERE deployment_id=? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var t Transition
		var at string
		if err := rows.Scan(&t.From, &t.To, &t.Reason, &at); err != nil {
			return nil, err
		}
		t.At = parseTime(at)
		out = append(out, t)
	}
	return out, rows.Err()
}

// Transition is one recorded state change.
type Transition struct {
	From   State     `json:"from"`
	To     State     `json:"to"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}
