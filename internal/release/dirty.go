package release

import (
	"fmt"
	"sort"

	"github.com/go-git/go-git/v5"
)

// Changed lists the tracked files whose content differs from HEAD, staged
// or not: what `git describe --dirty` counts. Untracked files do not count,
// so build output and gantry's own state directory never make a tree dirty.
func (r *Repo) Changed() ([]string, error) {
	w, err := r.git.Worktree()
	if err != nil {
		return nil, fmt.Errorf("the work tree of %s: %w", r.root, err)
	}
	st, err := w.StatusWithOptions(git.StatusOptions{Strategy: git.Preload})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", r.root, err)
	}
	var out []string
	for path, s := range st {
		if s.Staging == git.Untracked && s.Worktree == git.Untracked {
			continue
		}
		if s.Staging != git.Unmodified || s.Worktree != git.Unmodified {
			out = append(out, path)
		}
	}
	sort.Strings(out)
	return out, nil
}
