package registry

import (
	"bytes"
	"context"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// monolithicUpload serves POST /v2/<name>/blobs/uploads/?digest=<digest>
// with the blob as the body: the spec's single-request upload, which
// distribution lacks. gantry opens an upload session with distribution and
// closes it with the body, as a client doing POST then PUT would.
func (r *Registry) monolithicUpload(w http.ResponseWriter, req *http.Request) {
	open := req.Clone(req.Context())
	open.URL = &url.URL{Path: req.URL.Path}
	open.Body = http.NoBody
	open.ContentLength = 0
	open.Header.Del("Content-Type")
	rec := &recorder{header: http.Header{}}
	r.handler.ServeHTTP(rec, open)
	if rec.status != http.StatusAccepted {
		rec.replay(w)
		return
	}
	loc, err := url.Parse(rec.header.Get("Location"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "upload location: "+err.Error(), nil)
		return
	}
	q := loc.Query()
	q.Set("digest", req.URL.Query().Get("digest"))
	put := req.Clone(req.Context())
	put.Method = http.MethodPut
	put.URL = &url.URL{Path: loc.Path, RawQuery: q.Encode()}
	put.Body = req.Body
	r.dispatch(w, put)
}

// recorder keeps an internal response in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) replay(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	w.WriteHeader(r.status)
	w.Write(r.body.Bytes())
}

// mountAnywhere serves a mount without a source repository: the spec lets a
// registry mount the blob from any repository the client may read, and in
// gantry's registry a user who may push may read every repository. A blob
// the registry does not hold gets a new upload session, as distribution
// answers any mount it cannot do.
func (r *Registry) mountAnywhere(w http.ResponseWriter, req *http.Request, repo, mount string) {
	ctx := req.Context()
	d, err := digest.Parse(mount)
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest "+mount, nil)
		return
	}
	canonical := d
	if d.Algorithm() != digest.Canonical {
		canonical = r.findAlias(ctx, d)
	}
	if canonical != "" {
		if _, err := r.ns.BlobStatter().Stat(ctx, canonical); err != nil {
			canonical = ""
		}
	}
	if canonical == "" {
		q := req.URL.Query()
		q.Del("mount")
		req.URL.RawQuery = q.Encode()
		r.handler.ServeHTTP(w, req)
		return
	}
	if err := r.drv.PutContent(ctx, layerLink(repo, canonical), []byte(canonical.String())); err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "mount: "+err.Error(), nil)
		return
	}
	if d != canonical {
		if err := r.drv.PutContent(ctx, layerLink(repo, d), []byte(canonical.String())); err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "mount: "+err.Error(), nil)
			return
		}
	}
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// findAlias looks for a repository that holds the alias d, and returns the
// canonical digest it points to ("" if none does). It walks the
// repositories' directories: distribution's catalog lists only repositories
// with manifests, and a blob can be pushed before any manifest.
func (r *Registry) findAlias(ctx context.Context, d digest.Digest) digest.Digest {
	var found digest.Digest
	base := filepath.Join(r.distRoot(), filepath.FromSlash(repoPrefix))
	filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() || found != "" {
			return nil
		}
		switch e.Name() {
		case "_manifests", "_uploads":
			return filepath.SkipDir
		case "_layers":
			repo, err := filepath.Rel(base, filepath.Dir(p))
			if err == nil {
				if c, err := r.readLink(ctx, layerLink(filepath.ToSlash(repo), d)); err == nil && c != "" {
					found = c
					return filepath.SkipAll
				}
			}
			return filepath.SkipDir
		}
		return nil
	})
	return found
}
