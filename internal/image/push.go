package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Target is one stored image to push: Digest to Repository, then Tags.
type Target struct {
	Service    string   `json:"service"`
	Digest     string   `json:"digest"`
	Repository string   `json:"repository"`
	Tags       []string `json:"tags"`
}

// PushOptions say how to reach the registry and which tags never move.
type PushOptions struct {
	// Immutable reports whether a tag must never be moved to another
	// digest (version tags). Nil: every tag moves.
	Immutable func(tag string) bool
	// Username and Password, when given, are used for the registry;
	// otherwise the Docker config and its credential helpers, then
	// GITHUB_TOKEN for ghcr.io.
	Username, Password string
	// Jobs is how many blobs are uploaded at once (default 4).
	Jobs int
	// Progress, when not nil, hears about every blob, manifest and tag.
	Progress func(PushEvent)
	// Transport is the HTTP transport to use (default: go-containerregistry's).
	Transport http.RoundTripper
}

// Phases of a push, as PushEvent.Phase says them.
const (
	PhaseCheck    = "check"    // immutable tags are read from the registry
	PhaseBlob     = "blob"     // a blob was uploaded, found or mounted
	PhaseManifest = "manifest" // a manifest was put by digest
	PhaseTag      = "tag"      // a tag was set (or already right)
	PhaseDone     = "done"
)

// PushEvent is one step of a push.
type PushEvent struct {
	Service    string `json:"service,omitempty"`
	Repository string `json:"repository"`
	Phase      string `json:"phase"`
	Message    string `json:"message"`
}

// PushResult is what a push did for one target.
type PushResult struct {
	Service    string   `json:"service,omitempty"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags"`
	// Blobs (layers and configs) uploaded, found in the repository
	// already, and mounted from another repository of the same registry.
	BlobsUploaded int `json:"blobs_uploaded"`
	BlobsSkipped  int `json:"blobs_skipped"`
	BlobsMounted  int `json:"blobs_mounted"`
	// BytesUploaded counts blob bytes sent; manifests are not counted.
	BytesUploaded int64 `json:"bytes_uploaded"`
}

// Ref is repository@digest.
func (r PushResult) Ref() string { return r.Repository + "@" + r.Digest }

// ImmutableTagError: a push would move a tag that never moves.
type ImmutableTagError struct {
	Repository string
	Tag        string
	// Have is the digest the tag points to in the registry, Want the one
	// the push would have moved it to.
	Have, Want string
}

func (e *ImmutableTagError) Error() string {
	return fmt.Sprintf("tag %s:%s is immutable and already points to %s, not %s; nothing was tagged. "+
		"A published version is never overwritten: release a new version instead (commit a fix or feature and run gantry release), "+
		"or push under a tag that is not immutable (registry.immutable_tags in gantry.yaml)",
		e.Repository, e.Tag, e.Have, e.Want)
}

// Push sends stored images to their repositories. Every immutable tag of
// every target is checked first: when one points to another digest
// already, Push returns an *ImmutableTagError and tags nothing. Then, per
// target, blobs go up in parallel (skipped when the repository has them,
// mounted when another repository of the registry does), and the manifest
// last, under each tag.
func (s *Store) Push(ctx context.Context, targets []Target, opts PushOptions) ([]PushResult, error) {
	type job struct {
		t    Target
		repo name.Repository
		img  taggable
	}
	var jobs []job
	for _, t := range targets {
		repo, err := parseRepo(t.Repository)
		if err != nil {
			return nil, err
		}
		if err := checkTags(repo, t.Tags); err != nil {
			return nil, err
		}
		img, err := s.taggable(t.Digest)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", t.Service, err)
		}
		jobs = append(jobs, job{t, repo, img})
	}
	for _, j := range jobs {
		if err := checkImmutable(ctx, j.repo, j.t.Digest, j.t.Tags, j.t.Service, opts); err != nil {
			return nil, err
		}
	}
	k := s.readKnown()
	var results []PushResult
	for _, j := range jobs {
		img := mountable(j.img, j.repo, k)
		res, blobs, err := pushOne(ctx, j.repo, img, j.t.Tags, j.t.Service, opts)
		if err != nil {
			return results, err
		}
		if err := s.remember(j.repo.Name(), blobs); err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// Copy copies an image or index (src, best by digest:
// 127.0.0.1:5000/shop/web@sha256:...) to dstRepo and tags it there, with
// the same immutability rule as Push. Within one registry every blob is
// mounted: only manifests are sent.
func Copy(ctx context.Context, src string, dstRepo string, tags []string, opts PushOptions) (PushResult, error) {
	ref, err := parseRef(src)
	if err != nil {
		return PushResult{}, err
	}
	dst, err := parseRepo(dstRepo)
	if err != nil {
		return PushResult{}, err
	}
	if err := checkTags(dst, tags); err != nil {
		return PushResult{}, err
	}
	reg := ref.Context().RegistryStr()
	ropts, err := remoteOptions(ctx, reg, opts)
	if err != nil {
		return PushResult{}, err
	}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		if isNotFound(err) {
			return PushResult{}, inputErr("copy: %s not found in the registry", src)
		}
		return PushResult{}, registryErrOpts(reg, err, opts)
	}
	var t taggable
	if desc.MediaType.IsIndex() {
		t, err = desc.ImageIndex()
	} else {
		t, err = desc.Image()
	}
	if err != nil {
		return PushResult{}, registryErrOpts(reg, err, opts)
	}
	if err := checkImmutable(ctx, dst, desc.Digest.String(), tags, "", opts); err != nil {
		return PushResult{}, err
	}
	res, _, err := pushOne(ctx, dst, t, tags, "", opts)
	return res, err
}

func checkTags(repo name.Repository, tags []string) error {
	for _, tag := range tags {
		if _, err := name.NewTag(repo.Name()+":"+tag, name.WeakValidation); err != nil || tag == "" {
			return inputErr("tag %q: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// checkImmutable refuses to move an immutable tag that exists in the
// registry with another digest.
func checkImmutable(ctx context.Context, repo name.Repository, want string, tags []string, service string, opts PushOptions) error {
	if opts.Immutable == nil {
		return nil
	}
	reg := repo.RegistryStr()
	ropts, err := remoteOptions(ctx, reg, opts)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		if !opts.Immutable(tag) {
			continue
		}
		emit(opts, PushEvent{Service: service, Repository: repo.Name(), Phase: PhaseCheck, Message: "immutable tag " + tag})
		d, err := remote.Head(repo.Tag(tag), ropts...)
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return registryErrOpts(reg, err, opts)
		}
		if d.Digest.String() != want {
			return &ImmutableTagError{Repository: repo.Name(), Tag: tag, Have: d.Digest.String(), Want: want}
		}
	}
	return nil
}

func emit(opts PushOptions, e PushEvent) {
	if opts.Progress != nil {
		opts.Progress(e)
	}
}

// pushOne pushes t by digest, then its tags, and returns the blobs the
// repository now holds.
func pushOne(ctx context.Context, repo name.Repository, t taggable, tags []string, service string, opts PushOptions) (PushResult, []v1.Hash, error) {
	reg := repo.RegistryStr()
	d, err := t.Digest()
	if err != nil {
		return PushResult{}, nil, err
	}
	res := PushResult{Service: service, Repository: repo.Name(), Digest: d.String(), Tags: append([]string{}, tags...)}
	base := opts.Transport
	if base == nil {
		base = remote.DefaultTransport
	}
	ct := &counter{base: base, repo: repo.RepositoryStr(), service: service, name: repo.Name(), opts: opts}
	o := opts
	o.Transport = ct
	ropts, err := remoteOptions(ctx, reg, o)
	if err != nil {
		return PushResult{}, nil, err
	}
	p, err := remote.NewPusher(ropts...)
	if err != nil {
		return PushResult{}, nil, err
	}
	// The first tag carries the push: blobs (and an index's manifests by
	// digest) go up first, the manifest by that tag last, so the tag moves
	// only once everything it needs is there; the registry keeps the
	// manifest by digest too. Each further tag is one more manifest PUT.
	// Without tags, the manifest goes up by digest.
	if len(tags) == 0 {
		if err := p.Push(ctx, repo.Digest(d.String()), t); err != nil {
			return PushResult{}, nil, fmt.Errorf("push %s@%s: %w", repo.Name(), d, registryErrOpts(reg, err, opts))
		}
	}
	for _, tag := range tags {
		if err := p.Push(ctx, repo.Tag(tag), t); err != nil {
			return PushResult{}, nil, fmt.Errorf("push %s:%s (%s): %w", repo.Name(), tag, d, registryErrOpts(reg, err, opts))
		}
		emit(opts, PushEvent{Service: service, Repository: repo.Name(), Phase: PhaseTag, Message: tag + " -> " + d.String()})
	}
	blobs, err := blobsOf(t)
	if err != nil {
		return PushResult{}, nil, err
	}
	ct.mu.Lock()
	res.BlobsUploaded, res.BlobsMounted, res.BytesUploaded = ct.uploaded, ct.mounted, ct.bytes
	ct.mu.Unlock()
	// A blob neither uploaded nor mounted was there already: found by a
	// HEAD, or not even asked about because its manifest was there.
	res.BlobsSkipped = max(0, len(blobs)-res.BlobsUploaded-res.BlobsMounted)
	emit(opts, PushEvent{Service: service, Repository: repo.Name(), Phase: PhaseDone, Message: fmt.Sprintf(
		"%s@%s: %d blobs uploaded (%s), %d already there, %d mounted", repo.Name(), d, res.BlobsUploaded, humanBytes(res.BytesUploaded), res.BlobsSkipped, res.BlobsMounted)})
	return res, blobs, nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// blobsOf lists the distinct layers and configs of an image or index.
func blobsOf(t taggable) ([]v1.Hash, error) {
	seen := map[v1.Hash]bool{}
	var hs []v1.Hash
	add := func(h v1.Hash) {
		if !seen[h] {
			seen[h] = true
			hs = append(hs, h)
		}
	}
	err := walk(t, func(m taggable) error {
		img, ok := m.(v1.Image)
		if !ok {
			return nil
		}
		man, err := img.Manifest()
		if err != nil {
			return err
		}
		add(man.Config.Digest)
		for _, l := range man.Layers {
			add(l.Digest)
		}
		return nil
	})
	return hs, err
}

// mountable wraps a stored image so that go-containerregistry mounts each
// blob that another repository of the same registry got from an earlier
// push, instead of uploading it again.
func mountable(t taggable, repo name.Repository, k known) taggable {
	from := func(h v1.Hash) name.Reference {
		for _, r := range k.Blobs[h.String()] {
			nr, err := name.NewRepository(r, nameOpts(r)...)
			if err == nil && nr.RegistryStr() == repo.RegistryStr() && nr.RepositoryStr() != repo.RepositoryStr() {
				return nr.Digest(h.String())
			}
		}
		return nil
	}
	switch t := t.(type) {
	case v1.ImageIndex:
		return &mountIndex{idx: t, from: from}
	case v1.Image:
		return &mountImage{Image: t, from: from}
	}
	return t
}

// mountIndex embeds the index under another name: a field called
// ImageIndex would clash with the method it overrides.
type mountIndex struct {
	idx
	from func(v1.Hash) name.Reference
}

type idx = v1.ImageIndex

func (m *mountIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := m.idx.Image(h)
	if err != nil {
		return nil, err
	}
	return &mountImage{Image: img, from: m.from}, nil
}

func (m *mountIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	ii, err := m.idx.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &mountIndex{idx: ii, from: m.from}, nil
}

type mountImage struct {
	v1.Image
	from func(v1.Hash) name.Reference
}

func (m *mountImage) wrap(l v1.Layer) v1.Layer {
	h, err := l.Digest()
	if err != nil {
		return l
	}
	if ref := m.from(h); ref != nil {
		return &remote.MountableLayer{Layer: l, Reference: ref}
	}
	return l
}

func (m *mountImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = m.wrap(l)
	}
	return out, nil
}

func (m *mountImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}

func (m *mountImage) ConfigLayer() (v1.Layer, error) {
	l, err := partial.ConfigLayer(m.Image)
	if err != nil {
		return nil, err
	}
	return m.wrap(l), nil
}

// counter is the bottom HTTP transport of a push: it sees every request to
// the registry and counts what happened to each blob.
type counter struct {
	base    http.RoundTripper
	repo    string // repository path in the registry (shop/web)
	name    string // full name, for events
	service string
	opts    PushOptions

	mu                sync.Mutex
	uploaded, mounted int
	bytes             int64
}

// countReader counts a request body whose length is not known up front
// (a streamed layer). Bodies of known length are not wrapped: the HTTP
// transport sends an *os.File with sendfile only when it sees the file
// itself, and a wrapper would copy every byte through user space.
type countReader struct {
	r io.ReadCloser
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) Close() error { return c.r.Close() }

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	var sent func() int64
	if (req.Method == http.MethodPatch || req.Method == http.MethodPut) && req.Body != nil && req.Body != http.NoBody {
		if n := req.ContentLength; n > 0 {
			sent = func() int64 { return n }
		} else {
			r2 := req.Clone(req.Context())
			body := &countReader{r: req.Body}
			r2.Body = body
			req = r2
			sent = func() int64 { return body.n }
		}
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	c.observe(req, resp, sent)
	return resp, nil
}

// observe counts what a request did; sent, when not nil, tells how many
// body bytes went out.
func (c *counter) observe(req *http.Request, resp *http.Response, sent func() int64) {
	path := req.URL.Path
	prefix := "/v2/" + c.repo + "/"
	if !strings.HasPrefix(path, prefix) {
		return
	}
	rest := strings.TrimPrefix(path, prefix)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	ev := PushEvent{Service: c.service, Repository: c.name, Phase: PhaseBlob}
	c.mu.Lock()
	switch {
	case req.Method == http.MethodHead && strings.HasPrefix(rest, "blobs/") && resp.StatusCode == http.StatusOK:
		ev.Message = "exists " + strings.TrimPrefix(rest, "blobs/")
	case req.Method == http.MethodPost && rest == "blobs/uploads/" && req.URL.Query().Get("mount") != "" && resp.StatusCode == http.StatusCreated:
		c.mounted++
		ev.Message = "mounted " + req.URL.Query().Get("mount") + " from " + req.URL.Query().Get("from")
	case strings.HasPrefix(rest, "blobs/uploads/") && (req.Method == http.MethodPatch || req.Method == http.MethodPut) && ok:
		if sent != nil {
			c.bytes += sent()
		}
		if req.Method == http.MethodPut {
			c.uploaded++
			ev.Message = "uploaded " + req.URL.Query().Get("digest")
		}
	case req.Method == http.MethodPut && strings.HasPrefix(rest, "manifests/") && ok:
		ref := strings.TrimPrefix(rest, "manifests/")
		if strings.Contains(ref, ":") {
			ev.Phase, ev.Message = PhaseManifest, "manifest "+ref
		}
	}
	c.mu.Unlock()
	if ev.Message != "" {
		emit(c.opts, ev)
	}
}
