package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Release states. A release is written as pushing before the first byte
// goes to a registry, so a push that crashes leaves a record that says so;
// the next `gantry release` of the same version takes it over.
const (
	ReleasePushing  = "pushing"
	ReleaseReleased = "released"
	ReleaseFailed   = "failed"
)

// Release is a version of the project: a commit and the digest of every
// service's image, exactly as pushed.
type Release struct {
	ID         int64                   `json:"id"`
	Project    string                  `json:"project"`
	Version    string                  `json:"version"`
	Commit     string                  `json:"commit"`
	State      string                  `json:"state"`
	Reason     string                  `json:"reason,omitempty"`
	Tags       []string                `json:"tags"`
	Images     map[string]ReleaseImage `json:"images"`
	Actor      string                  `json:"actor,omitempty"`
	CreatedAt  time.Time               `json:"created_at"`
	FinishedAt *time.Time              `json:"finished_at,omitempty"`
	// Gates are the newest run of each gate (lint, scan) of the release;
	// their reports only when one release is read (GetRelease).
	Gates map[string]*GateRun `json:"gates,omitempty"`
}

// ReleaseImage is one service's image in a release.
type ReleaseImage struct {
	Repository string `json:"repository"`
	// Digest is the manifest's or, for several platforms, the index's.
	Digest string `json:"digest"`
	// Platforms maps each platform to its manifest digest.
	Platforms map[string]string `json:"platforms,omitempty"`
	Size      int64             `json:"size,omitempty"`
	Method    string            `json:"method,omitempty"`
	BuiltAt   time.Time         `json:"built_at"`
}

// Ref is the image's pinned reference, repository@digest.
func (i ReleaseImage) Ref() string { return i.Repository + "@" + i.Digest }

// ErrReleased is returned when a version is already released.
var ErrReleased = errors.New("already released")

const releaseCols = `id, project, version, git_commit, state, reason, tags, images, actor, created_at, finished_at`

// BeginRelease records r as pushing. A version already released is refused
// with ErrReleased; one that never finished (pushing or failed) is taken
// over, so a release can be retried after a crash or a failed push.
func (s *Store) BeginRelease(ctx context.Context, r *Release) error {
	tags, err := json.Marshal(r.Tags)
	if err != nil {
		return err
	}
	images, err := json.Marshal(r.Images)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		old, err := scanRelease(tx.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE project=? AND version=?`, r.Project, r.Version))
		switch {
		case err == nil && old.State == ReleaseReleased:
			return fmt.Errorf("release %s of %s: %w (commit %.12s, %s)", r.Version, r.Project, ErrReleased, old.Commit, old.CreatedAt.Format(time.RFC3339))
		case err == nil:
			if _, err := tx.ExecContext(ctx, `DELETE FROM releases WHERE id=?`, old.ID); err != nil {
				return err
			}
			if err := deleteGates(ctx, tx, old.ID); err != nil {
				return err
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		r.State = ReleasePushing
		r.CreatedAt = time.Now().UTC()
		res, err := tx.ExecContext(ctx, `INSERT INTO releases (project, version, git_commit, state, tags, images, actor, created_at) VALUES (?,?,?,?,?,?,?,?)`,
			r.Project, r.Version, r.Commit, r.State, string(tags), string(images), r.Actor, r.CreatedAt.Format(time.RFC3339Nano))
		if err != nil {
			return err
		}
		r.ID, err = res.LastInsertId()
		return err
	})
}

// FinishRelease records the outcome of a release: its images as pushed and
// the state released, or the state failed and why.
func (s *Store) FinishRelease(ctx context.Context, r *Release, state, reason string) error {
	if state != ReleaseReleased && state != ReleaseFailed {
		return fmt.Errorf("release state %q: want %s or %s", state, ReleaseReleased, ReleaseFailed)
	}
	images, err := json.Marshal(r.Images)
	if err != nil {
		return err
	}
	t := time.Now().UTC()
	res, err := s.db.ExecContext(ctx, `UPDATE releases SET state=?, reason=?, images=?, finished_at=? WHERE id=? AND state=?`,
		state, reason, string(images), t.Format(time.RFC3339Nano), r.ID, ReleasePushing)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("release %s: %w (no release %d being pushed)", r.Version, ErrNotFound, r.ID)
	}
	r.State, r.Reason, r.FinishedAt = state, reason, &t
	return nil
}

// GetRelease returns the release of project named version.
func (s *Store) GetRelease(ctx context.Context, project, version string) (*Release, error) {
	r, err := scanRelease(s.db.QueryRowContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE project=? AND version=?`, project, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("release %s of %s: %w", version, project, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	gates, err := s.Gates(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	if len(gates) > 0 {
		r.Gates = gates
	}
	return r, nil
}

// Releases lists the project's releases, newest first; limit <= 0 means all.
func (s *Store) Releases(ctx context.Context, project string, limit int) ([]*Release, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseCols+` FROM releases WHERE project=? ORDER BY id DESC LIMIT ?`, project, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	return out, s.gatesOf(ctx, out)
}

func scanRelease(row interface{ Scan(...any) error }) (*Release, error) {
	var r Release
	var tags, images, created string
	var finished sql.NullString
	if err := row.Scan(&r.ID, &r.Project, &r.Version, &r.Commit, &r.State, &r.Reason, &tags, &images, &r.Actor, &created, &finished); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(tags), &r.Tags); err != nil {
		return nil, fmt.Errorf("release %d: tags: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(images), &r.Images); err != nil {
		return nil, fmt.Errorf("release %d: images: %w", r.ID, err)
	}
	r.CreatedAt = parseTime(created)
	if finished.Valid {
		t := parseTime(finished.String)
		r.FinishedAt = &t
	}
	return &r, nil
}
