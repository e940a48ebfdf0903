package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Gates a release passes through before it is pushed and deployed.
const (
	GateLint = "lint"
	GateScan = "scan"
)

// gateSchema holds every gate run of a release (gantry release runs them;
// gantry scan runs the scan again): the newest run of each gate is the
// release's verdict for it.
const gateSchema = `
CREATE TABLE IF NOT EXISTS gate_runs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	release_id INTEGER NOT NULL,
	project    TEXT NOT NULL,
	version    TEXT NOT NULL,
	gate       TEXT NOT NULL,
	passed     INTEGER NOT NULL,
	summary    TEXT NOT NULL DEFAULT '',
	report     TEXT NOT NULL DEFAULT '{}',
	actor      TEXT NOT NULL DEFAULT '',
	at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gate_runs_release ON gate_runs(release_id, gate, id);
CREATE INDEX IF NOT EXISTS gate_runs_project ON gate_runs(project, id);
`

// GateRun is one run of a gate on a release.
type GateRun struct {
	ID        int64  `json:"id"`
	ReleaseID int64  `json:"release_id"`
	Project   string `json:"project"`
	Version   string `json:"version"`
	Gate      string `json:"gate"`
	Passed    bool   `json:"passed"`
	// Summary says the verdict in one line.
	Summary string `json:"summary"`
	// Report is the gate's full verdict (findings), as the gate wrote it.
	Report json.RawMessage `json:"report,omitempty"`
	Actor  string          `json:"actor,omitempty"`
	At     time.Time       `json:"at"`
}

// RecordGate stores a gate run of the release r.
func (s *Store) RecordGate(ctx context.Context, r *Release, g *GateRun) error {
	if g.Gate != GateLint && g.Gate != GateScan {
		return fmt.Errorf("gate %q: want %s or %s", g.Gate, GateLint, GateScan)
	}
	g.ReleaseID, g.Project, g.Version = r.ID, r.Project, r.Version
	if g.At.IsZero() {
		g.At = time.Now().UTC()
	}
	if len(g.Report) == 0 {
		g.Report = json.RawMessage("{}")
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO gate_runs (release_id, project, version, gate, passed, summary, report, actor, at) VALUES (?,?,?,?,?,?,?,?,?)`,
		g.ReleaseID, g.Project, g.Version, g.Gate, g.Passed, g.Summary, string(g.Report), g.Actor, g.At.Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("record the %s gate of release %s: %w", g.Gate, r.Version, err)
	}
	g.ID, err = res.LastInsertId()
	return err
}

const gateCols = `id, release_id, project, version, gate, passed, summary, actor, at`

// Gates returns the newest run of each gate of the release with id
// releaseID, with its report.
func (s *Store) Gates(ctx context.Context, releaseID int64) (map[string]*GateRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+gateCols+`, report FROM gate_runs
		WHERE id IN (SELECT MAX(id) FROM gate_runs WHERE release_id=? GROUP BY gate)`, releaseID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]*GateRun{}
	for rows.Next() {
		var report string
		g, err := scanGate(rows, &report)
		if err != nil {
			return nil, err
		}
		g.Report = json.RawMessage(report)
		out[g.Gate] = g
	}
	return out, rows.Err()
}

// gatesOf fills in the newest gate runs (without their reports) of the
// releases.
func (s *Store) gatesOf(ctx context.Context, rs []*Release) error {
	if len(rs) == 0 {
		return nil
	}
	byID := map[int64]*Release{}
	ids := make([]any, 0, len(rs))
	for _, r := range rs {
		byID[r.ID] = r
		ids = append(ids, r.ID)
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
	rows, err := s.db.QueryContext(ctx, `SELECT `+gateCols+` FROM gate_runs
		WHERE id IN (SELECT MAX(id) FROM gate_runs WHERE release_id IN (`+marks+`) GROUP BY release_id, gate)`, ids...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		g, err := scanGate(rows)
		if err != nil {
			return err
		}
		r := byID[g.ReleaseID]
		if r.Gates == nil {
			r.Gates = map[string]*GateRun{}
		}
		r.Gates[g.Gate] = g
	}
	return rows.Err()
}

func scanGate(row interface{ Scan(...any) error }, more ...any) (*GateRun, error) {
	var g GateRun
	var at string
	if err := row.Scan(append([]any{&g.ID, &g.ReleaseID, &g.Project, &g.Version, &g.Gate, &g.Passed, &g.Summary, &g.Actor, &at}, more...)...); err != nil {
		return nil, err
	}
	g.At = parseTime(at)
	return &g, nil
}

// deleteGates forgets the gate runs of a release that is being made again.
func deleteGates(ctx context.Context, tx *sql.Tx, releaseID int64) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM gate_runs WHERE release_id=?`, releaseID)
	return err
}
