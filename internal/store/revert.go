package store

import (
	"context"
	"database/sql"
)

// Revert rolls back a deployment that had succeeded (its analysis failed
// in the watch window after the switch) and gives its environment back to
// deployment prevID, in one transaction: the record never shows the
// reverted release as serving.
func (s *Store) Revert(ctx context.Context, d *Deployment, prevID int64, reason string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := transition(ctx, tx, d.ID, RolledBack, reason); err != nil {
			return err
		}
		return setServing(ctx, tx, d.Project, d.Env, prevID)
	})
}
