package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// The audit log's tables. Events carry their own ids (the head's plus one,
// assigned inside the appending transaction) so that a gap shows; the chain
// row holds the head (a deleted last event shows) and the checkpoint that
// retention leaves when it cuts old events.
const auditSchema = `
CREATE TABLE IF NOT EXISTS audit_events (
	id          INTEGER PRIMARY KEY,
	at          TEXT NOT NULL,
	actor       TEXT NOT NULL,
	role        TEXT NOT NULL,
	action      TEXT NOT NULL,
	object      TEXT NOT NULL,
	outcome     TEXT NOT NULL,
	request_id  TEXT NOT NULL,
	client      TEXT NOT NULL,
	detail      TEXT NOT NULL,
	prev_hash   TEXT NOT NULL,
	hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_at ON audit_events(at);
CREATE INDEX IF NOT EXISTS audit_events_actor ON audit_events(actor, id);
CREATE TABLE IF NOT EXISTS audit_chain (
	one             INTEGER PRIMARY KEY CHECK (one = 1),
	head_id         INTEGER NOT NULL DEFAULT 0,
	head_hash       TEXT NOT NULL DEFAULT '',
	checkpoint_id   INTEGER NOT NULL DEFAULT 0,
	checkpoint_hash TEXT NOT NULL DEFAULT '',
	checkpoint_at   TEXT NOT NULL DEFAULT '',
	pruned          INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO audit_chain (one) VALUES (1);
`

// AuditRow is one stored audit event, as the audit package encodes it:
// At is a fixed-width UTC time (so that it sorts as text) and Detail JSON.
type AuditRow struct {
	ID        int64
	At        string
	Actor     string
	Role      string
	Action    string
	Object    string
	Outcome   string
	RequestID string
	Client    string
	Detail    string
	PrevHash  string
	Hash      string
}

// AuditChain is the state of the chain: its head, and the checkpoint left by
// the last prune (the id and hash of the last event cut, and how many events
// were cut in all).
type AuditChain struct {
	HeadID         int64
	HeadHash       string
	CheckpointID   int64
	CheckpointHash string
	CheckpointAt   string
	Pruned         int64
}

// AuditQuery selects audit events; empty fields do not filter. Action
// matches exactly or as a prefix before a dot ("token" matches
// "token.create"). Since and Until compare with AuditRow.At.
type AuditQuery struct {
	Actor, Action, Object, Outcome string
	Since, Until                   string
	// BeforeID pages backwards: only events with a smaller id.
	BeforeID int64
	Limit    int
}

const auditCols = `id, at, actor, role, action, object, outcome, request_id, client, detail, prev_hash, hash`

// AppendAudit adds an event at the head of the chain. build receives the
// new event's id and the previous event's hash and returns the row to store
// (with its hash); it runs inside the writing transaction, so concurrent
// appenders, in this process or another, each see the true head.
func (s *Store) AppendAudit(ctx context.Context, build func(id int64, prevHash string) (AuditRow, error)) (AuditRow, error) {
	var row AuditRow
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var c AuditChain
		if err := tx.QueryRowContext(ctx, `SELECT head_id, head_hash FROM audit_chain WHERE one=1`).Scan(&c.HeadID, &c.HeadHash); err != nil {
			return err
		}
		var err error
		if row, err = build(c.HeadID+1, c.HeadHash); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit_events (`+auditCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
			row.ID, row.At, row.Actor, row.Role, row.Action, row.Object, row.Outcome, row.RequestID, row.Client, row.Detail, row.PrevHash, row.Hash); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE audit_chain SET head_id=?, head_hash=? WHERE one=1`, row.ID, row.Hash)
		return err
	})
	return row, err
}

// AppendAuditBatch adds n events in one transaction, each built as in
// AppendAudit: for imports and for filling a store for a benchmark, where
// a transaction per event would take hours.
func (s *Store) AppendAuditBatch(ctx context.Context, n int, build func(id int64, prevHash string) (AuditRow, error)) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var c AuditChain
		if err := tx.QueryRowContext(ctx, `SELECT head_id, head_hash FROM audit_chain WHERE one=1`).Scan(&c.HeadID, &c.HeadHash); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (`+auditCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		id, prev := c.HeadID, c.HeadHash
		for range n {
			row, err := build(id+1, prev)
			if err != nil {
				return err
			}
			if _, err := stmt.ExecContext(ctx, row.ID, row.At, row.Actor, row.Role, row.Action, row.Object, row.Outcome, row.RequestID, row.Client, row.Detail, row.PrevHash, row.Hash); err != nil {
				return err
			}
			id, prev = row.ID, row.Hash
		}
		_, err = tx.ExecContext(ctx, `UPDATE audit_chain SET head_id=?, head_hash=? WHERE one=1`, id, prev)
		return err
	})
}

// AuditEvents lists events matching q, newest first.
func (s *Store) AuditEvents(ctx context.Context, q AuditQuery) ([]AuditRow, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if q.Actor != "" {
		add("actor=?", q.Actor)
	}
	if q.Action != "" {
		add("(action=? OR action LIKE ? ESCAPE '\\')", q.Action, likeEscape(q.Action)+".%")
	}
	if q.Object != "" {
		add("object=?", q.Object)
	}
	if q.Outcome != "" {
		add("outcome=?", q.Outcome)
	}
	if q.Since != "" {
		add("at>=?", q.Since)
	}
	if q.Until != "" {
		add("at<?", q.Until)
	}
	if q.BeforeID > 0 {
		add("id<?", q.BeforeID)
	}
	sqlq := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	sqlq += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	stmt, err := s.prepared(ctx, sqlq)
	if err != nil {
		return nil, err
	}
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditRow
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

func scanAudit(row interface{ Scan(...any) error }) (AuditRow, error) {
	var r AuditRow
	err := row.Scan(&r.ID, &r.At, &r.Actor, &r.Role, &r.Action, &r.Object, &r.Outcome, &r.RequestID, &r.Client, &r.Detail, &r.PrevHash, &r.Hash)
	return r, err
}

// ScanAudit calls fn for every event with at >= since (all when since is
// empty), oldest first, reading in one snapshot so that the chain it sees is
// consistent even while others append. It stops at fn's first error.
func (s *Store) ScanAudit(ctx context.Context, since string, fn func(AuditRow) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return scanAuditTx(ctx, tx, since, fn)
}

func scanAuditTx(ctx context.Context, tx *sql.Tx, since string, fn func(AuditRow) error) error {
	q, args := `SELECT `+auditCols+` FROM audit_events ORDER BY id`, []any{}
	if since != "" {
		q, args = `SELECT `+auditCols+` FROM audit_events WHERE id >= COALESCE((SELECT MIN(id) FROM audit_events WHERE at>=?), 1<<62) ORDER BY id`, []any{since}
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// VerifyAudit reads the chain's state and every event in one snapshot.
func (s *Store) VerifyAudit(ctx context.Context, fn func(AuditChain, func(func(AuditRow) error) error) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	c, err := auditChain(ctx, tx)
	if err != nil {
		return err
	}
	return fn(c, func(each func(AuditRow) error) error { return scanAuditTx(ctx, tx, "", each) })
}

// AuditChain returns the chain's head and checkpoint.
func (s *Store) AuditChain(ctx context.Context) (AuditChain, error) {
	// Prepared once: gantry server reads the head for every audit list
	// request (the version of its cached pages), and parsing the SQL cost
	// more than running it.
	stmt, err := s.prepared(ctx, auditChainQuery)
	if err != nil {
		return AuditChain{}, err
	}
	return scanAuditChain(stmt.QueryRowContext(ctx))
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

const auditChainQuery = `SELECT head_id, head_hash, checkpoint_id, checkpoint_hash, checkpoint_at, pruned FROM audit_chain WHERE one=1`

func auditChain(ctx context.Context, q querier) (AuditChain, error) {
	return scanAuditChain(q.QueryRowContext(ctx, auditChainQuery))
}

func scanAuditChain(row *sql.Row) (AuditChain, error) {
	var c AuditChain
	err := row.Scan(&c.HeadID, &c.HeadHash, &c.CheckpointID, &c.CheckpointHash, &c.CheckpointAt, &c.Pruned)
	return c, err
}

// PruneAudit deletes the events older than before (an AuditRow.At value) and
// records the last one deleted as the checkpoint the remaining chain starts
// from. It returns how many events it cut and the new chain state.
func (s *Store) PruneAudit(ctx context.Context, before string) (int64, AuditChain, error) {
	var cut int64
	var c AuditChain
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM audit_events WHERE at<?`, before).Scan(&last); err != nil {
			return err
		}
		var err error
		if !last.Valid {
			c, err = auditChain(ctx, tx)
			return err
		}
		var hash, at string
		if err := tx.QueryRowContext(ctx, `SELECT hash, at FROM audit_events WHERE id=?`, last.Int64).Scan(&hash, &at); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE id<=?`, last.Int64)
		if err != nil {
			return err
		}
		cut, _ = res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `UPDATE audit_chain SET checkpoint_id=?, checkpoint_hash=?, checkpoint_at=?, pruned=pruned+? WHERE one=1`,
			last.Int64, hash, at, cut); err != nil {
			return err
		}
		c, err = auditChain(ctx, tx)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = errors.New("audit chain state missing")
	}
	return cut, c, err
}

// Ping reads from the database: readiness checks use it.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	return s.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_chain`).Scan(&n)
}
