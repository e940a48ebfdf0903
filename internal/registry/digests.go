package registry

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// distribution stores every blob and manifest under its sha256 digest (the
// canonical one). It accepts a blob upload verified against a sha512 digest
// and links that digest in the repository as an alias, but it answers with
// the sha256 digest, does not link the alias when it mounts a blob from
// another repository, and refuses a manifest pushed by a sha512 digest. The
// OCI distribution-spec wants the digest the client chose in every answer.
//
// gantry's layer closes that gap with distribution's own on-disk layout: an
// alias is a link file, beside distribution's, from the sha512 digest to the
// canonical sha256 one (repositories/<name>/_layers/sha512/<hex>/link for
// blobs, _manifests/revisions/sha512/<hex>/link for manifests), which
// distribution's own lookups then follow too (an index that refers to a
// child by its sha512 digest validates).

const repoPrefix = "/docker/registry/v2/repositories"

func layerLink(repo string, d digest.Digest) string {
	return path.Join(repoPrefix, repo, "_layers", d.Algorithm().String(), d.Encoded(), "link")
}

func revisionLink(repo string, d digest.Digest) string {
	return path.Join(repoPrefix, repo, "_manifests", "revisions", d.Algorithm().String(), d.Encoded(), "link")
}

// nonCanonical parses s as a digest of another algorithm than sha256.
func nonCanonical(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() == digest.Canonical {
		return "", false
	}
	return d, true
}

// readLink returns the canonical digest an alias link points to, "" if
// there is no such link.
func (r *Registry) readLink(ctx context.Context, p string) (digest.Digest, error) {
	b, err := r.drv.GetContent(ctx, p)
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return "", nil
	}
	return d, nil
}

// withDigestHeaders makes a successful answer name the digest the client
// asked for, in Docker-Content-Digest and in Location.
func withDigestHeaders(w http.ResponseWriter, asked digest.Digest, ok func(int) bool, also func(canonical digest.Digest) error) http.ResponseWriter {
	return &hookWriter{ResponseWriter: w, before: func(status int, h http.Header) {
		if !ok(status) {
			return
		}
		canonical := digest.Digest(h.Get("Docker-Content-Digest"))
		if also != nil {
			if err := also(canonical); err != nil {
				// The content is stored; only the alias is missing. The
				// client will find out on its next request by that digest.
				h.Set("Warning", `199 gantry "alias not recorded: `+err.Error()+`"`)
			}
		}
		h.Set("Docker-Content-Digest", asked.String())
		if loc := h.Get("Location"); loc != "" && canonical != "" {
			h.Set("Location", strings.Replace(loc, canonical.String(), asked.String(), 1))
		}
		if h.Get("Etag") != "" {
			h.Set("Etag", `"`+asked.String()+`"`)
		}
	}}
}

func is2xx(s int) bool { return s >= 200 && s < 300 }

// blobByAlias serves GET, HEAD and DELETE of a blob by a sha512 digest:
// distribution follows the alias link itself and only needs its answer to
// name the digest asked for.
func (r *Registry) blobByAlias(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	r.handler.ServeHTTP(withDigestHeaders(w, d, is2xx, nil), req)
}

// finishUploadAlias serves the PUT that closes an upload verified against a
// sha512 digest: distribution verifies and links it, gantry names it.
func (r *Registry) finishUploadAlias(w http.ResponseWriter, req *http.Request, d digest.Digest) {
	r.handler.ServeHTTP(withDigestHeaders(w, d, func(s int) bool { return s == http.StatusCreated }, nil), req)
}

// mountAlias serves a cross-repository mount of a blob by its sha512 digest.
// distribution would mount the alias without its target; gantry mounts the
// canonical digest the source repository's alias points to, then adds the
// alias to the target repository.
func (r *Registry) mountAlias(w http.ResponseWriter, req *http.Request, repo string, d digest.Digest) {
	ctx := req.Context()
	q := req.URL.Query()
	canonical, err := r.readLink(ctx, layerLink(q.Get("from"), d))
	if err != nil || canonical == "" || canonical.Algorithm() != digest.Canonical {
		// Not in the source repository (or not readable): distribution
		// answers with a new upload, as for any blob it cannot mount.
		q.Del("mount")
		q.Del("from")
		req.URL.RawQuery = q.Encode()
		r.handler.ServeHTTP(w, req)
		return
	}
	q.Set("mount", canonical.String())
	req.URL.RawQuery = q.Encode()
	r.handler.ServeHTTP(withDigestHeaders(w, d, func(s int) bool { return s == http.StatusCreated }, func(digest.Digest) error {
		return r.drv.PutContent(ctx, layerLink(repo, d), []byte(canonical.String()))
	}), req)
}

// manifestByAlias serves GET, HEAD and DELETE of a manifest by a sha512
// digest, through its canonical digest.
func (r *Registry) manifestByAlias(w http.ResponseWriter, req *http.Request, repo string, d digest.Digest) {
	ctx := req.Context()
	canonical, err := r.readLink(ctx, revisionLink(repo, d))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
		return
	}
	if canonical == "" {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", map[string]string{"name": repo, "digest": d.String()})
		return
	}
	var after func(digest.Digest) error
	if req.Method == http.MethodDelete {
		after = func(digest.Digest) error { return r.drv.Delete(ctx, path.Dir(revisionLink(repo, d))) }
	}
	req.URL.Path = strings.TrimSuffix(req.URL.Path, d.String()) + canonical.String()
	req.URL.RawPath = ""
	r.handler.ServeHTTP(withDigestHeaders(w, d, is2xx, after), req)
}

// manifestExists reports whether repo holds the manifest d, by any digest.
func (r *Registry) manifestExists(ctx context.Context, repo string, d digest.Digest) bool {
	if d.Algorithm() != digest.Canonical {
		c, err := r.readLink(ctx, revisionLink(repo, d))
		if err != nil || c == "" {
			return false
		}
		d = c
	}
	c, err := r.readLink(ctx, revisionLink(repo, d))
	return err == nil && c != ""
}
