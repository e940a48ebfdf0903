package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// API tokens. Only a hash of each token's secret is stored; names are
// unique among tokens not revoked, so a name can be reused once revoked.
const tokenSchema = `
CREATE TABLE IF NOT EXISTS tokens (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL,
	envs         TEXT NOT NULL DEFAULT '[]',
	hash         TEXT NOT NULL,
	created_by   TEXT NOT NULL DEFAULT '',
	created_at   TEXT NOT NULL,
	expires_at   TEXT,
	revoked_at   TEXT,
	last_used_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
`

// Token is an API token's record (never its secret).
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Envs      []string   `json:"envs,omitempty"`
	Hash      string     `json:"-"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	LastUsed  *time.Time `json:"last_used_at,omitempty"`
}

// ErrTokenExists is returned when an active token already has the name.
var ErrTokenExists = errors.New("a token with this name exists")

const tokenCols = `id, name, role, envs, hash, created_by, created_at, expires_at, revoked_at, last_used_at`

// CreateToken records a new token.
func (s *Store) CreateToken(ctx context.Context, t *Token) error {
	envs, err := json.Marshal(t.Envs)
	if err != nil {
		return err
	}
	if t.Envs == nil {
		envs = []byte("[]")
	}
	t.CreatedAt = time.Now().UTC()
	_, err = s.db.ExecContext(ctx, `INSERT INTO tokens (id, name, role, envs, hash, created_by, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?)`,
		t.ID, t.Name, t.Role, string(envs), t.Hash, t.CreatedBy, t.CreatedAt.Format(time.RFC3339Nano), timeOrNil(t.ExpiresAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return fmt.Errorf("token %q: %w", t.Name, ErrTokenExists)
	}
	return err
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// GetToken returns the token with the id.
func (s *Store) GetToken(ctx context.Context, id string) (*Token, error) {
	stmt, err := s.prepared(ctx, `SELECT `+tokenCols+` FROM tokens WHERE id=?`)
	if err != nil {
		return nil, err
	}
	t, err := scanToken(stmt.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return t, err
}

// Tokens lists every token, revoked ones included, oldest first.
func (s *Store) Tokens(ctx context.Context) ([]*Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes the active token whose name or id is nameOrID and
// returns it. Revoking is final.
func (s *Store) RevokeToken(ctx context.Context, nameOrID string) (*Token, error) {
	var t *Token
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE revoked_at IS NULL AND (id=? OR name=?)`, nameOrID, nameOrID))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("token %q: %w (or already revoked)", nameOrID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		t.RevokedAt = &now
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET revoked_at=? WHERE id=?`, now.Format(time.RFC3339Nano), t.ID)
		return err
	})
	return t, err
}

// TouchToken records that a token was used at t.
func (s *Store) TouchToken(ctx context.Context, id string, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE tokens SET last_used_at=? WHERE id=?`, t.UTC().Format(time.RFC3339Nano), id)
	return err
}

func scanToken(row interface{ Scan(...any) error }) (*Token, error) {
	var t Token
	var envs, created string
	var expires, revoked, used sql.NullString
	if err := row.Scan(&t.ID, &t.Name, &t.Role, &envs, &t.Hash, &t.CreatedBy, &created, &expires, &revoked, &used); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(envs), &t.Envs); err != nil {
		return nil, fmt.Errorf("token %s: envs: %w", t.ID, err)
	}
	t.CreatedAt = parseTime(created)
	for _, p := range []struct {
		s   sql.NullString
		dst **time.Time
	}{{expires, &t.ExpiresAt}, {revoked, &t.RevokedAt}, {used, &t.LastUsed}} {
		if p.s.Valid {
			v := parseTime(p.s.String)
			*p.dst = &v
		}
	}
	return &t, nil
}
