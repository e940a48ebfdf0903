package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxManifestSize bounds a manifest body the wrapper reads; distribution's
// own limit is the same.
const maxManifestSize = 4 << 20

// ImmutableError is the refusal of a manifest PUT that would move an
// immutable tag.
type ImmutableError struct {
	Repository string
	Tag        string
	Current    digest.Digest
	Pushed     digest.Digest
}

func (e *ImmutableError) Error() string {
	return fmt.Sprintf("tag %s is immutable: it holds %s ; release a new version", e.Tag, e.Current)
}

// isImmutable reports whether tag matches one of the immutable patterns.
func (r *Registry) isImmutable(tag string) bool {
	for _, re := range r.immutable {
		if re.MatchString(tag) {
			return true
		}
	}
	return false
}

// tagLocks serializes manifest PUTs to the same immutable tag, so that two
// concurrent pushes cannot both find the tag free.
type tagLocks struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (l *tagLocks) lock(key string) func() {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*sync.Mutex{}
	}
	m, ok := l.locks[key]
	if !ok {
		m = &sync.Mutex{}
		l.locks[key] = m
	}
	l.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// checkImmutable refuses (409) a manifest PUT that would move an immutable
// tag to another digest; the caller holds the tag's lock. It reports whether
// the PUT may go on.
func (r *Registry) checkImmutable(w http.ResponseWriter, req *http.Request, repo, tag string, pushed digest.Digest) bool {
	current, err := r.tagDigest(req.Context(), repo, tag)
	if err != nil {
		r.log.Error("registry: reading tag", "repository", repo, "tag", tag, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "reading tag "+tag+": "+err.Error(), nil)
		return false
	}
	if current == "" || current == pushed {
		return true
	}
	e := &ImmutableError{Repository: repo, Tag: tag, Current: current, Pushed: pushed}
	r.log.Warn("registry: refused to move an immutable tag", "repository", repo, "tag", tag, "holds", current, "pushed", pushed, "remote", req.RemoteAddr)
	writeError(w, http.StatusConflict, "DENIED", e.Error(), map[string]string{
		"repository": repo, "tag": tag, "current": current.String(), "pushed": pushed.String(),
		"hint": "a published version never moves; push this content under a new version",
	})
	return false
}

// tagDigest is the digest tag points to in repo, or "" if none.
func (r *Registry) tagDigest(ctx context.Context, repo, tag string) (digest.Digest, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return "", nil // distribution answers NAME_INVALID itself
	}
	rp, err := r.ns.Repository(ctx, named)
	if err != nil {
		return "", nil
	}
	desc, err := rp.Tags(ctx).Get(ctx, tag)
	var unknown distribution.ErrTagUnknown
	if errors.As(err, &unknown) {
		return "", nil
	}
	if err != nil {
		var repoUnknown distribution.ErrRepositoryUnknown
		if errors.As(err, &repoUnknown) {
			return "", nil
		}
		return "", err
	}
	return desc.Digest, nil
}

// deletable refuses (409) a DELETE that would free an immutable tag: the
// tag itself, or a manifest an immutable tag holds (distribution removes
// the tags of a manifest it deletes). Otherwise the tag could be pushed
// again with other content, which immutability exists to prevent. It
// reports whether the DELETE may go on.
func (r *Registry) deletable(w http.ResponseWriter, req *http.Request, repo, ref string) bool {
	ctx := req.Context()
	var held []string
	d, err := digest.Parse(ref)
	if err != nil {
		if !r.isImmutable(ref) {
			return true
		}
		current, err := r.tagDigest(ctx, repo, ref)
		if err != nil || current == "" {
			return true // distribution answers: unknown tag, or its error
		}
		held, d = []string{ref}, current
	} else {
		if d.Algorithm() != digest.Canonical {
			c, err := r.readLink(ctx, revisionLink(repo, d))
			if err != nil || c == "" {
				return true
			}
			d = c
		}
		tags, err := r.tagsOf(ctx, repo, d)
		if err != nil {
			return true
		}
		for _, t := range tags {
			if r.isImmutable(t) {
				held = append(held, t)
			}
		}
	}
	if len(held) == 0 {
		return true
	}
	r.log.Warn("registry: refused to delete an immutable tag", "repository", repo, "ref", ref, "tags", held, "remote", req.RemoteAddr)
	writeError(w, http.StatusConflict, "DENIED",
		fmt.Sprintf("tag %s is immutable: it holds %s and cannot be deleted", strings.Join(held, ", "), d),
		map[string]any{"repository": repo, "tags": held, "current": d.String(),
			"hint": "a published version stays; release a new version instead"})
	return false
}

// tagsOf lists repo's tags that point to d.
func (r *Registry) tagsOf(ctx context.Context, repo string, d digest.Digest) ([]string, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	rp, err := r.ns.Repository(ctx, named)
	if err != nil {
		return nil, err
	}
	return rp.Tags(ctx).Lookup(ctx, v1.Descriptor{Digest: d})
}
