package store

import (
	"context"
	"strings"
	"time"
)

// The queries below feed gantry server's metrics, which it derives from the
// record rather than from the deployments it runs itself: a deploy run by
// the CLI, by another server or before a restart counts the same.

// DeploymentsSince lists a project's deployments (without their plans) with
// an id above afterID or among ids, in id order.
func (s *Store) DeploymentsSince(ctx context.Context, project string, afterID int64, ids []int64) ([]*Deployment, error) {
	q := `SELECT ` + deploymentColsNoPlan + ` FROM deployments WHERE project=? AND (id > ?`
	args := []any{project, afterID}
	if len(ids) > 0 {
		q += ` OR id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",") + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	return scanDeployments(s.db.QueryContext(ctx, q+`) ORDER BY id`, args...))
}

// GateTiming is how long one service's health gate took in a deployment:
// from its container's start step to its verdict step.
type GateTiming struct {
	Deployment int64
	Service    string
	Seconds    float64
}

// GateTimings lists the health gates of the given deployments.
func (s *Store) GateTimings(ctx context.Context, ids []int64) ([]GateTiming, error) {
	var out []GateTiming
	// SQLite limits a statement's parameters; a first read after a start
	// may cover every deployment ever recorded.
	for len(ids) > 0 {
		n := min(len(ids), 500)
		chunk := ids[:n]
		ids = ids[n:]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.db.QueryContext(ctx, `SELECT deployment_id, service, phase, at FROM steps
			WHERE phase IN ('start', 'verdict') AND deployment_id IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`) ORDER BY id`, args...)
		if err != nil {
			return nil, err
		}
		type key struct {
			id  int64
			svc string
		}
		started := map[key]time.Time{}
		for rows.Next() {
			var id int64
			var svc, phase, at string
			if err := rows.Scan(&id, &svc, &phase, &at); err != nil {
				rows.Close()
				return nil, err
			}
			k := key{id, svc}
			switch phase {
			case "start":
				started[k] = parseTime(at)
			case "verdict":
				if t, ok := started[k]; ok {
					out = append(out, GateTiming{Deployment: id, Service: svc, Seconds: parseTime(at).Sub(t).Seconds()})
					delete(started, k)
				}
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Pending counts a project's deployments in a state, by environment.
func (s *Store) Pending(ctx context.Context, project string, state State) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT env, COUNT(*) FROM deployments WHERE project=? AND state=? GROUP BY env`, project, state)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var env string
		var n int
		if err := rows.Scan(&env, &n); err != nil {
			return nil, err
		}
		out[env] = n
	}
	return out, rows.Err()
}
