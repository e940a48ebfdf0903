package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const alertSchema = `
CREATE TABLE IF NOT EXISTS alerts (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	fingerprint   TEXT NOT NULL,
	name          TEXT NOT NULL,
	severity      TEXT NOT NULL,
	project       TEXT NOT NULL DEFAULT '',
	env           TEXT NOT NULL DEFAULT '',
	service       TEXT NOT NULL DEFAULT '',
	release       TEXT NOT NULL DEFAULT '',
	deployment_id INTEGER NOT NULL DEFAULT 0,
	summary       TEXT NOT NULL DEFAULT '',
	description   TEXT NOT NULL DEFAULT '',
	starts_at     TEXT NOT NULL,
	ends_at       TEXT,
	last_sent_at  TEXT,
	escalated_at  TEXT,
	acked_by      TEXT NOT NULL DEFAULT '',
	acked_at      TEXT
);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts(fingerprint, id);
CREATE TABLE IF NOT EXISTS alert_deliveries (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	alert_id  INTEGER NOT NULL REFERENCES alerts(id),
	receiver  TEXT NOT NULL,
	kind      TEXT NOT NULL,
	attempt   INTEGER NOT NULL,
	ok        INTEGER NOT NULL,
	error     TEXT NOT NULL DEFAULT '',
	at        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_deliveries_alert ON alert_deliveries(alert_id, id);
`

// Alert is a condition gantry tells people about: firing from StartsAt
// until EndsAt is set (resolved). Fingerprint identifies the condition;
// an alert that fires again after it resolved is a new alert.
type Alert struct {
	ID           int64      `json:"id"`
	Fingerprint  string     `json:"fingerprint"`
	Name         string     `json:"name"`
	Severity     string     `json:"severity"`
	Project      string     `json:"project,omitempty"`
	Env          string     `json:"env,omitempty"`
	Service      string     `json:"service,omitempty"`
	Release      string     `json:"release,omitempty"`
	DeploymentID int64      `json:"deployment,omitempty"`
	Summary      string     `json:"summary"`
	Description  string     `json:"description,omitempty"`
	StartsAt     time.Time  `json:"starts_at"`
	EndsAt       *time.Time `json:"ends_at,omitempty"`
	LastSentAt   *time.Time `json:"last_sent_at,omitempty"`
	EscalatedAt  *time.Time `json:"escalated_at,omitempty"`
	AckedBy      string     `json:"acked_by,omitempty"`
	AckedAt      *time.Time `json:"acked_at,omitempty"`
}

// Firing reports whether the alert has not resolved.
func (a *Alert) Firing() bool { return a.EndsAt == nil }

// Delivery is one attempt to send an alert to a receiver.
type Delivery struct {
	AlertID  int64     `json:"alert"`
	Receiver string    `json:"receiver"`
	Kind     string    `json:"kind"`
	Attempt  int       `json:"attempt"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
}

const alertCols = `id, fingerprint, name, severity, project, env, service, release, deployment_id, summary, description, starts_at, ends_at, last_sent_at, escalated_at, acked_by, acked_at`

func scanAlert(row interface{ Scan(...any) error }) (*Alert, error) {
	var a Alert
	var starts string
	var ends, sent, esc, acked sql.NullString
	if err := row.Scan(&a.ID, &a.Fingerprint, &a.Name, &a.Severity, &a.Project, &a.Env, &a.Service, &a.Release, &a.DeploymentID,
		&a.Summary, &a.Description, &starts, &ends, &sent, &esc, &a.AckedBy, &acked); err != nil {
		return nil, err
	}
	a.StartsAt = parseTime(starts)
	opt := func(s sql.NullString) *time.Time {
		if !s.Valid {
			return nil
		}
		t := parseTime(s.String)
		return &t
	}
	a.EndsAt, a.LastSentAt, a.EscalatedAt, a.AckedAt = opt(ends), opt(sent), opt(esc), opt(acked)
	return &a, nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// FireAlert records a firing alert, unless one with its fingerprint is
// firing already: then that one is returned and created is false.
func (s *Store) FireAlert(ctx context.Context, a *Alert) (stored *Alert, created bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE fingerprint=? AND ends_at IS NULL ORDER BY id DESC LIMIT 1`, a.Fingerprint))
		if err == nil {
			stored = cur
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if a.StartsAt.IsZero() {
			a.StartsAt = time.Now()
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO alerts (fingerprint, name, severity, project, env, service, release, deployment_id, summary, description, starts_at)
			VALUES (?,?,?,?,?,?,?,?,?,?,?)`, a.Fingerprint, a.Name, a.Severity, a.Project, a.Env, a.Service, a.Release, a.DeploymentID, a.Summary, a.Description, ts(a.StartsAt))
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		c := *a
		c.ID = id
		stored, created = &c, true
		return nil
	})
	return stored, created, err
}

// ResolveAlert marks a firing alert resolved at t; it returns the alert,
// or nil when none with that fingerprint fires.
func (s *Store) ResolveAlert(ctx context.Context, fingerprint string, t time.Time) (*Alert, error) {
	var out *Alert
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		a, err := scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE fingerprint=? AND ends_at IS NULL ORDER BY id DESC LIMIT 1`, fingerprint))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE alerts SET ends_at=? WHERE id=?`, ts(t), a.ID); err != nil {
			return err
		}
		a.EndsAt = &t
		out = a
		return nil
	})
	return out, err
}

// Alerts lists alerts, newest first: the firing ones, or all when all.
func (s *Store) Alerts(ctx context.Context, all bool, limit int) ([]*Alert, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	q := `SELECT ` + alertCols + ` FROM alerts WHERE ends_at IS NULL ORDER BY id DESC LIMIT ?`
	if all {
		q = `SELECT ` + alertCols + ` FROM alerts ORDER BY id DESC LIMIT ?`
	}
	rows, err := s.db.QueryContext(ctx, q, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// GetAlert returns one alert.
func (s *Store) GetAlert(ctx context.Context, id int64) (*Alert, error) {
	a, err := scanAlert(s.db.QueryRowContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	return a, err
}

// AckAlert records that someone acknowledged an alert: it is not escalated.
func (s *Store) AckAlert(ctx context.Context, id int64, by string, t time.Time) (*Alert, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE alerts SET acked_by=?, acked_at=? WHERE id=? AND acked_at IS NULL`, by, ts(t), id)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.GetAlert(ctx, id); err != nil {
			return nil, err
		}
	}
	return s.GetAlert(ctx, id)
}

// MarkAlertSent records when an alert was last sent, and escalated when
// the sending was its escalation.
func (s *Store) MarkAlertSent(ctx context.Context, id int64, t time.Time, escalated bool) error {
	q := `UPDATE alerts SET last_sent_at=? WHERE id=?`
	if escalated {
		q = `UPDATE alerts SET escalated_at=? WHERE id=?`
	}
	_, err := s.db.ExecContext(ctx, q, ts(t), id)
	return err
}

// AddDelivery records one delivery attempt. Its error must already be
// free of secrets (package notify redacts them).
func (s *Store) AddDelivery(ctx context.Context, d Delivery) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO alert_deliveries (alert_id, receiver, kind, attempt, ok, error, at) VALUES (?,?,?,?,?,?,?)`,
		d.AlertID, d.Receiver, d.Kind, d.Attempt, d.OK, d.Error, ts(d.At))
	return err
}

// Deliveries lists an alert's delivery attempts in order.
func (s *Store) Deliveries(ctx context.Context, alertID int64) ([]Delivery, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT alert_id, receiver, kind, attempt, ok, error, at FROM alert_deliveries WHERE alert_id=? ORDER BY id`, alertID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var at string
		if err := rows.Scan(&d.AlertID, &d.Receiver, &d.Kind, &d.Attempt, &d.OK, &d.Error, &at); err != nil {
			return nil, err
		}
		d.At = parseTime(at)
		out = append(out, d)
	}
	return out, rows.Err()
}
