package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// LastChange identifies the newest change to an environment's record: the
// id of its newest deployment and when that deployment last changed. A
// watcher compares it to decide whether what it read is still current;
// it reads two columns of one row, not the deployment.
func (s *Store) LastChange(ctx context.Context, project, env string) (int64, time.Time, error) {
	var id int64
	var updated string
	stmt, err := s.prepared(ctx, `SELECT id, updated_at FROM deployments WHERE project=? AND env=? ORDER BY id DESC LIMIT 1`)
	if err != nil {
		return 0, time.Time{}, err
	}
	err = stmt.QueryRowContext(ctx, project, env).Scan(&id, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	return id, parseTime(updated), err
}

// prepared returns a prepared statement for q, made once per store: for the
// queries a server runs on every request, where parsing the SQL each time
// cost as much as running it.
func (s *Store) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if old, loaded := s.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return old.(*sql.Stmt), nil
	}
	return st, nil
}

// deploymentColsNoPlan reads a deployment without its plan, which holds
// every service's configuration and is what listings never show.
var deploymentColsNoPlan = strings.Replace(deploymentCols, "plan, result", "'{}', result", 1)

// HistoryBrief lists an environment's deployments, newest first, as
// History does but without their plans (Plan is "{}"): a listing of 20
// deployments of 100 services otherwise reads megabytes.
func (s *Store) HistoryBrief(ctx context.Context, project, env string, limit int) ([]*Deployment, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	stmt, err := s.prepared(ctx, `SELECT `+deploymentColsNoPlan+` FROM deployments WHERE project=? AND env=? ORDER BY id DESC LIMIT ?`)
	if err != nil {
		return nil, err
	}
	return scanDeployments(stmt.QueryContext(ctx, project, env, limit))
}

// HistoryVersion identifies the state of an environment's newest limit
// deployments (all with limit 0) and of which one serves: it changes when
// one of them is created or changes (every change sets updated_at) and when
// another deployment serves. gantry server keeps the encoded history for
// it. One query of two indexes, no deployment row read.
func (s *Store) HistoryVersion(ctx context.Context, project, env string, limit int) (string, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	stmt, err := s.prepared(ctx, `SELECT
		COALESCE((SELECT deployment_id FROM serving WHERE project=?1 AND env=?2), 0) || '/' ||
		COALESCE((SELECT group_concat(id || '@' || updated_at, ',') FROM
			(SELECT id, updated_at FROM deployments WHERE project=?1 AND env=?2 ORDER BY id DESC LIMIT ?3)), '')`)
	if err != nil {
		return "", err
	}
	var v string
	err = stmt.QueryRowContext(ctx, project, env, limit).Scan(&v)
	return v, err
}

// LastOutcome is the newest deployment of release in env that ended
// (succeeded, failed or rolled back; a cancelled one never ran), without
// its plan; nil when the release never ended a deployment there. It says
// whether a release succeeded where an environment's requires: asks.
func (s *Store) LastOutcome(ctx context.Context, project, env, release string) (*Deployment, error) {
	stmt, err := s.prepared(ctx, `SELECT `+deploymentColsNoPlan+` FROM deployments
		WHERE project=? AND env=? AND release=? AND state IN (?,?,?) ORDER BY id DESC LIMIT 1`)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, project, env, release, Succeeded, Failed, RolledBack)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Err()
	}
	return scanDeployment(rows)
}

// ServingID is the id of the deployment serving in env, 0 when none.
func (s *Store) ServingID(ctx context.Context, project, env string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT deployment_id FROM serving WHERE project=? AND env=?`, project, env).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, err
}
