package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// approvalSchema holds promotions waiting for approval and the decisions
// on them. A request belongs to a deployment in state awaiting_approval;
// one person decides once on it (UNIQUE (deployment_id, actor)).
const approvalSchema = `
CREATE TABLE IF NOT EXISTS approval_requests (
	deployment_id  INTEGER PRIMARY KEY REFERENCES deployments(id),
	project        TEXT NOT NULL,
	env            TEXT NOT NULL,
	from_env       TEXT NOT NULL,
	source_id      INTEGER NOT NULL,
	requested_by   TEXT NOT NULL,
	requester_role TEXT NOT NULL,
	required       INTEGER NOT NULL,
	approvers      TEXT NOT NULL DEFAULT '[]',
	expires_at     TEXT NOT NULL,
	approved_at    TEXT,
	starter_pid    INTEGER NOT NULL DEFAULT 0,
	starter_host   TEXT NOT NULL DEFAULT '',
	started_at     TEXT,
	created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approval_requests_env ON approval_requests(project, env);
CREATE TABLE IF NOT EXISTS approvals (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL REFERENCES approval_requests(deployment_id),
	actor         TEXT NOT NULL,
	role          TEXT NOT NULL,
	decision      TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
	comment       TEXT NOT NULL DEFAULT '',
	at            TEXT NOT NULL,
	UNIQUE (deployment_id, actor)
);
`

// Decision is what an approver decided.
type Decision string

// The decisions on a request.
const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// Errors of the approval record; match them with errors.Is.
var (
	// ErrExpired: the request waited past its expiry; it is cancelled.
	ErrExpired = errors.New("approval request expired")
	// ErrDecided: this person decided on the request already.
	ErrDecided = errors.New("already decided")
	// ErrNotAwaiting: the deployment does not wait for a decision (it
	// runs, ran, or was cancelled).
	ErrNotAwaiting = errors.New("not awaiting approval")
)

// ApprovalRequest is a promotion held until enough people approve it.
type ApprovalRequest struct {
	// DeploymentID is the held deployment (state awaiting_approval).
	DeploymentID int64  `json:"deployment"`
	Project      string `json:"project"`
	Env          string `json:"env"`
	// From is the environment the release succeeded in; SourceID the
	// deployment there whose image digests the held one runs.
	From          string `json:"from"`
	SourceID      int64  `json:"source_deployment"`
	RequestedBy   string `json:"requested_by"`
	RequesterRole string `json:"requester_role"`
	// Required approvals, from people matching Approvers (role:admin,
	// alice; empty means any admin or editor), as the environment's
	// policy said when the request was made.
	Required   int        `json:"required"`
	Approvers  []string   `json:"approvers"`
	ExpiresAt  time.Time  `json:"expires_at"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	// StartedAt is when an approval was given the start of the
	// deployment; StarterPID and StarterHost say which process.
	StartedAt   *time.Time `json:"started_at,omitempty"`
	StarterPID  int        `json:"-"`
	StarterHost string     `json:"-"`
	CreatedAt   time.Time  `json:"created_at"`
	Decisions   []Approval `json:"decisions"`
}

// Approval is one person's decision on a request.
type Approval struct {
	DeploymentID int64     `json:"deployment"`
	Actor        string    `json:"actor"`
	Role         string    `json:"role"`
	Decision     Decision  `json:"decision"`
	Comment      string    `json:"comment,omitempty"`
	At           time.Time `json:"at"`
}

// Approvals counts the approve decisions.
func (r *ApprovalRequest) Approvals() int {
	n := 0
	for _, a := range r.Decisions {
		if a.Decision == Approve {
			n++
		}
	}
	return n
}

// DecisionBy returns the decision of actor, if any.
func (r *ApprovalRequest) DecisionBy(actor string) *Approval {
	for i, a := range r.Decisions {
		if a.Actor == actor {
			return &r.Decisions[i]
		}
	}
	return nil
}

// Expired says whether the request expired unapproved by now.
func (r *ApprovalRequest) Expired(now time.Time) bool {
	return r.ApprovedAt == nil && !now.Before(r.ExpiresAt)
}

// CreateAwaiting records d, a planned deployment, in state
// awaiting_approval together with its approval request, in one
// transaction: a crash leaves both or neither.
func (s *Store) CreateAwaiting(ctx context.Context, d *Deployment, r *ApprovalRequest) error {
	approvers, err := json.Marshal(r.Approvers)
	if err != nil {
		return err
	}
	if r.Approvers == nil {
		approvers = []byte("[]")
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertDeployment(ctx, tx, d); err != nil {
			return err
		}
		why := fmt.Sprintf("promotion from %s requested by %s: waiting for %d approval(s)", r.From, r.RequestedBy, r.Required)
		if err := transition(ctx, tx, d.ID, AwaitingApproval, why); err != nil {
			return err
		}
		t := now()
		r.DeploymentID, r.Project, r.Env = d.ID, d.Project, d.Env
		r.CreatedAt = parseTime(t)
		_, err := tx.ExecContext(ctx, `INSERT INTO approval_requests
			(deployment_id, project, env, from_env, source_id, requested_by, requester_role, required, approvers, expires_at, created_at)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
			d.ID, d.Project, d.Env, r.From, r.SourceID, r.RequestedBy, r.RequesterRole, r.Required, string(approvers),
			r.ExpiresAt.UTC().Format(time.RFC3339Nano), t)
		if err == nil {
			d.State, d.Reason = AwaitingApproval, why
		}
		return err
	})
}

const requestCols = `deployment_id, project, env, from_env, source_id, requested_by, requester_role, required, approvers, expires_at, approved_at, starter_pid, starter_host, started_at, created_at`

// rowsQuerier is a *sql.DB or a *sql.Tx.
type rowsQuerier interface {
	querier
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func scanRequest(row interface{ Scan(...any) error }) (*ApprovalRequest, error) {
	var r ApprovalRequest
	var approvers, expires, created string
	var approved, started sql.NullString
	if err := row.Scan(&r.DeploymentID, &r.Project, &r.Env, &r.From, &r.SourceID, &r.RequestedBy, &r.RequesterRole, &r.Required,
		&approvers, &expires, &approved, &r.StarterPID, &r.StarterHost, &started, &created); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(approvers), &r.Approvers); err != nil {
		return nil, fmt.Errorf("approval request %d: approvers: %w", r.DeploymentID, err)
	}
	r.ExpiresAt, r.CreatedAt = parseTime(expires), parseTime(created)
	if approved.Valid {
		t := parseTime(approved.String)
		r.ApprovedAt = &t
	}
	if started.Valid {
		t := parseTime(started.String)
		r.StartedAt = &t
	}
	return &r, nil
}

// request loads a request with its decisions.
func request(ctx context.Context, q rowsQuerier, id int64) (*ApprovalRequest, error) {
	r, err := scanRequest(q.QueryRowContext(ctx, `SELECT `+requestCols+` FROM approval_requests WHERE deployment_id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("deployment %d is not a promotion: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT actor, role, decision, comment, at FROM approvals WHERE deployment_id=? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	r.Decisions = []Approval{}
	for rows.Next() {
		a := Approval{DeploymentID: id}
		var at string
		if err := rows.Scan(&a.Actor, &a.Role, &a.Decision, &a.Comment, &at); err != nil {
			return nil, err
		}
		a.At = parseTime(at)
		r.Decisions = append(r.Decisions, a)
	}
	return r, rows.Err()
}

// ApprovalRequest returns the request of a held deployment, with every
// decision on it.
func (s *Store) ApprovalRequest(ctx context.Context, id int64) (*ApprovalRequest, error) {
	return request(ctx, s.db, id)
}

// ApprovalRequests lists the requests of project (of env, when not
// empty), newest first; with waiting, only those whose deployment still
// awaits approval.
func (s *Store) ApprovalRequests(ctx context.Context, project, env string, waiting bool) ([]*ApprovalRequest, error) {
	q := `SELECT r.deployment_id FROM approval_requests r JOIN deployments d ON d.id = r.deployment_id WHERE r.project=?`
	args := []any{project}
	if env != "" {
		q += ` AND r.env=?`
		args = append(args, env)
	}
	if waiting {
		q += ` AND d.state=?`
		args = append(args, AwaitingApproval)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY r.deployment_id DESC`, args...)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]*ApprovalRequest, 0, len(ids))
	for _, id := range ids {
		r, err := request(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Decided is the outcome of Decide.
type Decided struct {
	Request    *ApprovalRequest
	Deployment *Deployment
	// Recorded: the decision was written (false when the caller only
	// resumed a start that an earlier approval was given).
	Recorded bool
	// Start: the caller, and no one else, must now run the deployment:
	// this decision completed the approvals, or the process given the
	// start earlier is gone before the deployment began.
	Start bool
}

// StartTimeout is how long a process given the start of an approved
// deployment has to begin it before another approval may take it over.
const StartTimeout = time.Minute

// Decide records a decision on a held deployment in one transaction with
// everything it depends on, so that approvers deciding at the same moment
// are taken one after the other: each decision is recorded, and exactly one
// of them is given the start of the deployment.
//
// check is the caller's policy (who may decide), called inside the
// transaction with the request and its decisions as they are then; its
// error refuses the decision and changes nothing. A request that expired
// unapproved is cancelled (that is committed) and ErrExpired returned. A
// reject cancels the deployment with the reason.
func (s *Store) Decide(ctx context.Context, a Approval, now time.Time, check func(*ApprovalRequest, *Deployment) error) (*Decided, error) {
	host, _ := os.Hostname()
	var out Decided
	var expired error
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		d, err := scanDeployment(tx.QueryRowContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE id=?`, a.DeploymentID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("deployment %d: %w", a.DeploymentID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		r, err := request(ctx, tx, d.ID)
		if err != nil {
			return err
		}
		out.Request, out.Deployment = r, d
		if d.State == AwaitingApproval && r.Expired(now) {
			why, err := expire(ctx, tx, d, r)
			if err != nil {
				return err
			}
			expired = fmt.Errorf("deployment %d: %w: %s", d.ID, ErrExpired, why)
			return nil
		}
		open := d.State == AwaitingApproval && r.ApprovedAt == nil
		// An approval may still be added while an approved deployment
		// runs: approvers racing each other all get recorded.
		if !open && (a.Decision == Reject || d.State.Terminal()) {
			return fmt.Errorf("deployment %d is %s: %w", d.ID, describe(d, r), ErrNotAwaiting)
		}
		if err := check(r, d); err != nil {
			return err
		}
		mine := r.DecisionBy(a.Actor)
		switch {
		case mine == nil:
		case a.Decision == Approve && mine.Decision == Approve && r.ApprovedAt != nil && d.State == AwaitingApproval:
			// Resuming: the approvals are complete but the deployment
			// never began (see below).
		default:
			return fmt.Errorf("deployment %d: %s %sd it already at %s: %w", d.ID, a.Actor, mine.Decision, mine.At.Local().Format(time.DateTime), ErrDecided)
		}
		t := now.UTC()
		if mine == nil {
			a.At = t
			if _, err := tx.ExecContext(ctx, `INSERT INTO approvals (deployment_id, actor, role, decision, comment, at) VALUES (?,?,?,?,?,?)`,
				d.ID, a.Actor, a.Role, a.Decision, a.Comment, t.Format(time.RFC3339Nano)); err != nil {
				if strings.Contains(err.Error(), "UNIQUE") {
					return fmt.Errorf("deployment %d: %s decided already: %w", d.ID, a.Actor, ErrDecided)
				}
				return err
			}
			r.Decisions = append(r.Decisions, a)
			out.Recorded = true
		}
		if a.Decision == Reject {
			why := fmt.Sprintf("rejected by %s: %s", a.Actor, a.Comment)
			if a.Actor == r.RequestedBy {
				why = fmt.Sprintf("withdrawn by %s: %s", a.Actor, a.Comment)
			}
			if err := transition(ctx, tx, d.ID, Cancelled, why); err != nil {
				return err
			}
			d.State, d.Reason = Cancelled, why
			return nil
		}
		if r.ApprovedAt == nil && r.Approvals() >= r.Required {
			r.ApprovedAt = &t
			if _, err := tx.ExecContext(ctx, `UPDATE approval_requests SET approved_at=? WHERE deployment_id=?`, t.Format(time.RFC3339Nano), d.ID); err != nil {
				return err
			}
			out.Start = true
		} else if r.ApprovedAt != nil && d.State == AwaitingApproval && !starterAlive(r, host, now) {
			// Approved, but the process given the start stopped (killed,
			// or it failed to reach the host) before the deployment began.
			out.Start = true
		}
		if out.Start {
			r.StartedAt, r.StarterPID, r.StarterHost = &t, os.Getpid(), host
			_, err := tx.ExecContext(ctx, `UPDATE approval_requests SET started_at=?, starter_pid=?, starter_host=? WHERE deployment_id=?`,
				t.Format(time.RFC3339Nano), r.StarterPID, host, d.ID)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, expired
}

// starterAlive says whether the process given the start of an approved
// deployment may still begin it.
func starterAlive(r *ApprovalRequest, host string, now time.Time) bool {
	if r.StartedAt == nil || now.Sub(*r.StartedAt) > StartTimeout {
		return false
	}
	return alive(Holder{PID: r.StarterPID, Host: r.StarterHost, HeartbeatAt: time.Now()}, host)
}

func describe(d *Deployment, r *ApprovalRequest) string {
	switch {
	case d.State == AwaitingApproval && r.ApprovedAt != nil:
		return "approved and about to start"
	case d.State == Cancelled:
		return "cancelled (" + d.Reason + ")"
	}
	return "approved and " + string(d.State)
}

// expire cancels a held deployment whose request expired unapproved.
func expire(ctx context.Context, tx *sql.Tx, d *Deployment, r *ApprovalRequest) (string, error) {
	why := fmt.Sprintf("approval request expired at %s with %d of %d approval(s)", r.ExpiresAt.UTC().Format(time.RFC3339), r.Approvals(), r.Required)
	if err := transition(ctx, tx, d.ID, Cancelled, why); err != nil {
		return "", err
	}
	d.State, d.Reason = Cancelled, why
	return why, nil
}

// ExpireApprovals cancels the deployments of project (in env, when not
// empty) whose approval request expired unapproved, with the reason, and
// returns their IDs.
func (s *Store) ExpireApprovals(ctx context.Context, project, env string, now time.Time) ([]int64, error) {
	rs, err := s.ApprovalRequests(ctx, project, env, true)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, r := range rs {
		if !r.Expired(now) {
			continue
		}
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			// Read again inside the transaction: an approval may have
			// come in since the list was made.
			d, err := scanDeployment(tx.QueryRowContext(ctx, `SELECT `+deploymentCols+` FROM deployments WHERE id=?`, r.DeploymentID))
			if err != nil {
				return err
			}
			r, err := request(ctx, tx, r.DeploymentID)
			if err != nil || d.State != AwaitingApproval || !r.Expired(now) {
				return err
			}
			if _, err := expire(ctx, tx, d, r); err != nil {
				return err
			}
			ids = append(ids, d.ID)
			return nil
		})
		if err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// checkApproved refuses to start a held deployment whose approvals are not
// complete: the one rule no caller can skip.
func checkApproved(ctx context.Context, tx *sql.Tx, id int64) error {
	var approved sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT approved_at FROM approval_requests WHERE deployment_id=?`, id).Scan(&approved)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !approved.Valid) {
		return fmt.Errorf("deployment %d awaits approval: %w", id, ErrNotAwaiting)
	}
	return err
}

// BeginApproved records, before an approved deployment begins, which
// deployment serves before it and which process runs it.
func (s *Store) BeginApproved(ctx context.Context, id, previousID int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE deployments SET previous_id=?, pid=?, updated_at=? WHERE id=? AND state=?`,
		previousID, os.Getpid(), now(), id, AwaitingApproval)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("deployment %d: %w (it began already, or was cancelled)", id, ErrNotAwaiting)
	}
	return nil
}
