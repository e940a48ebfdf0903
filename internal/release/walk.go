package release

import (
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// Commit is one commit since the last release.
type Commit struct {
	Hash    plumbing.Hash
	Message Message
	Bump    Bump
	// Merge: the commit has more than one parent.
	Merge bool
}

// walked is what one walk of history from HEAD finds.
type walked struct {
	// last is the index in Repo.tags of the newest stable version tag
	// reachable from HEAD; -1 when there is none.
	last int
	// commits are the commits reachable from HEAD and not from last (git
	// log last..HEAD), newest first.
	commits []Commit
	// ignored are tags on those commits (and HEAD) that look like versions
	// but are not.
	ignored []int
}

// Walk flags.
const (
	fDone uint8 = 1 << iota
	fOld        // reachable from a release: not part of this one
)

type node struct {
	hash    plumbing.Hash
	when    int64 // committer time, Unix seconds
	seq     int32 // queue order among equal times, as git's prio_queue
	flags   uint8
	parents []plumbing.Hash // a slice of the walk's arena
	message string          // kept for commits that may be part of the release
}

// walker is the state of one walk: nodes in a slice, found by hash, queued
// by index in a heap ordered newest first, as git log orders them.
type walker struct {
	r     *Repo
	nodes []node
	index map[plumbing.Hash]int32
	queue []int32
	arena []plumbing.Hash
	fresh int // queued nodes that are not old: the walk goes on while > 0
	stack []int32
}

// walk reads history from HEAD once, newest commit first, and stops as soon
// as every commit still queued is an ancestor of a release: the limit that
// `git log vX..HEAD` uses. A commit carrying a stable version tag is a
// release; its ancestors are marked old as they are reached, so that the
// commits of a branch merged after the release are counted and the ones
// before it are not. Each commit is read once, and only the commits that
// may belong to the release keep their message.
//
// With skipHead, tags on HEAD do not count: the walk finds what HEAD's own
// release contains.
func (r *Repo) walk(skipHead bool) (*walked, error) {
	w := &walker{r: r, index: make(map[plumbing.Hash]int32, 1024), nodes: make([]node, 0, 1024), arena: make([]plumbing.Hash, 0, 1024)}
	res := &walked{last: -1}
	if _, err := w.enqueue(r.headHash, false); err != nil {
		return nil, err
	}
	var order []int32
	for w.fresh > 0 {
		i := w.pop()
		n := &w.nodes[i]
		if n.flags&fOld == 0 {
			w.fresh--
		}
		n.flags |= fDone
		if n.flags&fOld == 0 {
			if t := r.releaseTag(n.hash); t >= 0 && !(skipHead && n.hash == r.headHash) {
				if res.last < 0 || r.tags[t].version.GreaterThan(r.tags[res.last].version) {
					res.last = t
				}
				w.markOld(i)
			} else {
				order = append(order, i)
			}
		}
		old := w.nodes[i].flags&fOld != 0
		if old {
			w.nodes[i].message = ""
		}
		for _, p := range w.nodes[i].parents {
			if _, err := w.enqueue(p, old); err != nil {
				if old && errors.Is(err, ErrShallow) {
					// History before a release may be cut off.
					continue
				}
				return nil, err
			}
		}
	}

	res.commits = make([]Commit, 0, len(order))
	for _, i := range order {
		n := &w.nodes[i]
		if n.flags&fOld != 0 {
			continue
		}
		for _, t := range r.byCommit[n.hash] {
			if r.tags[t].version == nil {
				res.ignored = append(res.ignored, int(t))
			}
		}
		m := ParseMessage(n.message)
		res.commits = append(res.commits, Commit{Hash: n.hash, Message: m, Bump: bumpOf(m, r.types), Merge: len(n.parents) > 1})
	}
	if len(res.commits) == 0 {
		for _, t := range r.byCommit[r.headHash] {
			if r.tags[t].version == nil {
				res.ignored = append(res.ignored, int(t))
			}
		}
	}
	return res, nil
}

// enqueue reads commit h and queues it, once; old marks it (and, when it
// was already walked, its ancestors) as before a release.
func (w *walker) enqueue(h plumbing.Hash, old bool) (int32, error) {
	if i, ok := w.index[h]; ok {
		if old {
			w.markOld(i)
		}
		return i, nil
	}
	t, data, err := w.r.objects.read(h)
	if err != nil {
		return -1, w.r.missing(h, err)
	}
	if t != plumbing.CommitObject {
		return -1, fmt.Errorf("object %s is a %s, not a commit", h, t)
	}
	c, arena, err := parseCommit(data, w.arena)
	if err != nil {
		return -1, fmt.Errorf("commit %s: %w", h, err)
	}
	w.arena = arena
	i := int32(len(w.nodes))
	n := node{hash: h, when: c.when, seq: i, parents: c.parents}
	if old {
		n.flags = fOld
	} else {
		n.message = string(c.message)
		w.fresh++
	}
	w.nodes = append(w.nodes, n)
	w.index[h] = i
	w.push(i)
	return i, nil
}

// markOld marks node i old and, for nodes already walked, their ancestors.
func (w *walker) markOld(i int32) {
	w.stack = append(w.stack[:0], i)
	for len(w.stack) > 0 {
		i := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		n := &w.nodes[i]
		if n.flags&fOld != 0 {
			continue
		}
		n.flags |= fOld
		if n.flags&fDone == 0 {
			// Still queued: one fresh node less.
			w.fresh--
			continue
		}
		for _, p := range n.parents {
			if j, ok := w.index[p]; ok {
				w.stack = append(w.stack, j)
			}
		}
	}
}

func (w *walker) less(a, b int32) bool {
	na, nb := &w.nodes[a], &w.nodes[b]
	if na.when != nb.when {
		return na.when > nb.when
	}
	return na.seq < nb.seq
}

func (w *walker) push(i int32) {
	w.queue = append(w.queue, i)
	for j := len(w.queue) - 1; j > 0; {
		parent := (j - 1) / 2
		if !w.less(w.queue[j], w.queue[parent]) {
			break
		}
		w.queue[j], w.queue[parent] = w.queue[parent], w.queue[j]
		j = parent
	}
}

func (w *walker) pop() int32 {
	q := w.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q = q[:last]
	for j := 0; ; {
		l, r, m := 2*j+1, 2*j+2, j
		if l < len(q) && w.less(q[l], q[m]) {
			m = l
		}
		if r < len(q) && w.less(q[r], q[m]) {
			m = r
		}
		if m == j {
			break
		}
		q[j], q[m] = q[m], q[j]
		j = m
	}
	w.queue = q
	return top
}

// releaseTag is the index of the highest stable version tag on commit h, or -1.
func (r *Repo) releaseTag(h plumbing.Hash) int {
	best := -1
	for _, t := range r.byCommit[h] {
		v := r.tags[t].version
		if v == nil || v.Prerelease() != "" {
			continue
		}
		if best < 0 || v.GreaterThan(r.tags[best].version) {
			best = int(t)
		}
	}
	return best
}

// missing explains a commit that cannot be read: in a shallow clone the
// history stops before the last release.
func (r *Repo) missing(h plumbing.Hash, err error) error {
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		if shallow, _ := r.git.Storer.Shallow(); len(shallow) > 0 {
			return errorf(ErrShallow, "this clone is shallow: its history stops at %s before any version tag, so gantry cannot tell what changed since the last release; fetch the whole history and the tags (`git fetch --unshallow --tags`, or `fetch-depth: 0` in actions/checkout)", short(h))
		}
		return fmt.Errorf("commit %s is missing from the repository (is it corrupt? try `git fsck`): %w", h, err)
	}
	return fmt.Errorf("read commit %s: %w", h, err)
}

func short(h plumbing.Hash) string { return h.String()[:7] }
