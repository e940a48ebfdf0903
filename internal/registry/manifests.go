package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
)

// manifestFields are the parts of a pushed manifest the wrapper acts on.
type manifestFields struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Subject *struct {
		Digest digest.Digest `json:"digest"`
	} `json:"subject"`
	Annotations map[string]string `json:"annotations"`
}

// putManifest serves a manifest PUT: it guards immutable tags, stores a
// manifest pushed by a sha512 digest under its canonical digest with an
// alias, and records a manifest with a subject for the referrers API,
// answering with the OCI-Subject header.
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "reading the manifest: "+err.Error(), nil)
		return
	}
	if len(body) > maxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("manifest larger than %d bytes", maxManifestSize), nil)
		return
	}
	canonical := digest.FromBytes(body)
	pushed := canonical // the digest the client names the manifest by
	alias, byAlias := nonCanonical(ref)
	if byAlias {
		if !alias.Algorithm().Available() {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "unsupported digest algorithm "+alias.Algorithm().String(), nil)
			return
		}
		if alias.Algorithm().FromBytes(body) != alias {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content", map[string]string{"digest": alias.String()})
			return
		}
		pushed = alias
		req.URL.Path = strings.TrimSuffix(req.URL.Path, ref) + canonical.String()
		req.URL.RawPath = ""
	}
	if !isDigest(ref) && r.isImmutable(ref) {
		unlock := r.tagLocks.lock(repo + ":" + ref)
		defer unlock()
		if !r.checkImmutable(w, req, repo, ref, canonical) {
			return
		}
	}
	var m manifestFields
	json.Unmarshal(body, &m) // distribution judges the manifest; this only looks
	ctx := req.Context()
	hw := &hookWriter{ResponseWriter: w, before: func(status int, h http.Header) {
		if status != http.StatusCreated {
			return
		}
		if byAlias {
			if err := r.drv.PutContent(ctx, revisionLink(repo, alias), []byte(canonical.String())); err != nil {
				r.log.Error("registry: recording a manifest's sha512 digest", "repository", repo, "digest", alias, "err", err)
				h.Set("Warning", `199 gantry "alias not recorded"`)
			}
			h.Set("Docker-Content-Digest", alias.String())
			if loc := h.Get("Location"); loc != "" {
				h.Set("Location", strings.Replace(loc, canonical.String(), alias.String(), 1))
			}
		}
		if m.Subject != nil && m.Subject.Digest != "" {
			if err := r.referrers.add(repo, m.Subject.Digest, referrerDescriptor(m, pushed, int64(len(body)), req.Header.Get("Content-Type"))); err != nil {
				r.log.Error("registry: recording a referrer", "repository", repo, "subject", m.Subject.Digest, "digest", pushed, "err", err)
				return
			}
			h.Set("OCI-Subject", m.Subject.Digest.String())
		}
	}}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	r.handler.ServeHTTP(hw, req)
}
