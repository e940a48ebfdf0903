package registry

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// distribution v3.1.2 has no referrers API. gantry records, when a manifest
// with a subject is pushed, the referrer's descriptor in a file named for it
// under ROOT/referrers/<repo>/<subject alg>/<subject hex>/, and answers
// GET /v2/<repo>/referrers/<digest> from those files. A referrer whose
// manifest has since been deleted is left out (and its file removed).

// descriptor is an OCI content descriptor as the referrers index lists it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

func referrerDescriptor(m manifestFields, d digest.Digest, size int64, contentType string) descriptor {
	desc := descriptor{MediaType: m.MediaType, Digest: d, Size: size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	if desc.MediaType == "" {
		desc.MediaType = contentType
	}
	// The spec: an image manifest without artifactType is listed with its
	// config's media type.
	if desc.ArtifactType == "" && m.Config != nil {
		desc.ArtifactType = m.Config.MediaType
	}
	return desc
}

type referrerStore struct{ dir string }

func (s referrerStore) subjectDir(repo string, subject digest.Digest) string {
	return filepath.Join(s.dir, filepath.FromSlash(repo), subject.Algorithm().String(), subject.Encoded())
}

func (s referrerStore) add(repo string, subject digest.Digest, desc descriptor) error {
	if subject.Validate() != nil {
		return errors.New("invalid subject digest " + subject.String())
	}
	dir := s.subjectDir(repo, subject)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, desc.Digest.Algorithm().String()+"-"+desc.Digest.Encoded()+".json"))
}

// list returns subject's referrers in repo for which exists holds, removing
// the records of the others.
func (s referrerStore) list(repo string, subject digest.Digest, exists func(digest.Digest) bool) ([]descriptor, error) {
	dir := s.subjectDir(repo, subject)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []descriptor
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var d descriptor
		if json.Unmarshal(b, &d) != nil || d.Digest.Validate() != nil {
			continue
		}
		if !exists(d.Digest) {
			os.Remove(p)
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// serveReferrers answers GET /v2/<repo>/referrers/<digest>[?artifactType=].
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, repo, ref string) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the referrers API is read-only", nil)
		return
	}
	subject, err := digest.Parse(ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest "+ref, nil)
		return
	}
	ctx := req.Context()
	refs, err := r.referrers.list(repo, subject, func(d digest.Digest) bool {
		return r.manifestExists(ctx, repo, d)
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
		return
	}
	if at := req.URL.Query().Get("artifactType"); at != "" {
		kept := refs[:0]
		for _, d := range refs {
			if d.ArtifactType == at {
				kept = append(kept, d)
			}
		}
		refs = kept
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if refs == nil {
		refs = []descriptor{}
	}
	b, _ := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, "application/vnd.oci.image.index.v1+json", refs})
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		w.Write(b)
	}
}
