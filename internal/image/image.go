// Package image builds service images and pushes them to registries.
//
// Built images live in a Store, an OCI image layout on disk
// (<state dir>/images), so that a push never rebuilds and never hashes a
// layer again: the layout keeps every blob under its digest. Three build
// methods make an image: "binaries" (daemonless, ko-style: a prebuilt binary
// per platform laid on a base or on scratch, assembled into an OCI image
// index), "engine" (a Dockerfile on the local Docker engine, for its own
// platform) and "buildx" (a Dockerfile for several platforms through
// `docker buildx build`).
//
// Push writes a stored image to a repository with go-containerregistry:
// blobs in parallel, those the registry has skipped, those it has in
// another repository mounted, manifests before tags, and tags that must
// never move (version tags) checked before anything is tagged.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Build methods, as Built.Method says them.
const (
	MethodBinaries = "binaries"
	MethodEngine   = "engine"
	MethodBuildx   = "buildx"
)

// Annotations on the store's index.json entries: what each stored image is.
const (
	annService   = "io.gantry.service"
	annMethod    = "io.gantry.method"
	annPlatforms = "io.gantry.platforms"
	annSize      = "io.gantry.size"
	annBuilt     = "io.gantry.built"
	annManifests = "io.gantry.manifests"
)

// keepBuilds is how many builds of each service the store keeps; older ones
// and the blobs only they use are removed after a build.
const keepBuilds = 5

// Errors to match with errors.Is.
var (
	// ErrInput marks a request that cannot work as given (an unknown
	// service, a platform without a binary, a bad repository name):
	// nothing was built or pushed.
	ErrInput = errors.New("invalid input")
	// ErrNotBuilt: the store has no image for a service or digest.
	ErrNotBuilt = errors.New("not built")
	// ErrBuildxMissing: several platforms from a Dockerfile need docker
	// buildx, and it is not installed.
	ErrBuildxMissing = errors.New("docker buildx is not installed")
	// ErrUnreachable: the registry host does not resolve or does not answer.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnauthorized: the registry refused the credentials (or their absence).
	ErrUnauthorized = errors.New("registry refused the credentials")
)

func inputErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}

// Built is one image in the store.
type Built struct {
	Service string `json:"service"`
	// Digest is the image index's digest (binaries, buildx), or the image
	// manifest's for a single-platform engine build.
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Method    string `json:"method"`
	// Platforms are os/arch[/variant], sorted.
	Platforms []string `json:"platforms"`
	// Manifests maps each platform to its image manifest's digest (for a
	// single-platform image, the image's own digest): what a release
	// records per platform.
	Manifests map[string]string `json:"manifests"`
	// Size is the bytes of every distinct blob and manifest of the image,
	// compressed, as a registry stores them.
	Size  int64     `json:"size"`
	Built time.Time `json:"built"`
}

// Store is an OCI image layout holding built images. Several processes may
// use one store: changes to its index are made under a file lock.
type Store struct {
	dir  string
	path layout.Path
	mu   sync.Mutex
}

// DefaultDir is where a project's images are stored under its state directory.
func DefaultDir(stateDir string) string { return filepath.Join(stateDir, "images") }

// Open opens the store at dir, creating an empty layout when there is none.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	err := s.locked(func() error {
		p, err := layout.FromPath(dir)
		if err != nil {
			if p, err = layout.Write(dir, empty.Index); err != nil {
				return err
			}
		}
		s.path = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// locked runs f holding the store's lock, against other goroutines and
// other gantry processes.
func (s *Store) locked(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lf, err := os.OpenFile(filepath.Join(s.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	return f()
}

// entries are the stored builds, oldest first.
func (s *Store) entries() ([]v1.Descriptor, error) {
	idx, err := s.path.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var ds []v1.Descriptor
	for _, d := range im.Manifests {
		if d.Annotations[annService] != "" {
			ds = append(ds, d)
		}
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Annotations[annBuilt] < ds[j].Annotations[annBuilt] })
	return ds, nil
}

func builtOf(d v1.Descriptor) Built {
	b := Built{
		Service:   d.Annotations[annService],
		Digest:    d.Digest.String(),
		MediaType: string(d.MediaType),
		Method:    d.Annotations[annMethod],
	}
	if p := d.Annotations[annPlatforms]; p != "" {
		b.Platforms = strings.Split(p, ",")
	}
	b.Manifests = map[string]string{}
	for _, pm := range strings.Split(d.Annotations[annManifests], ",") {
		if p, m, ok := strings.Cut(pm, "="); ok {
			b.Manifests[p] = m
		}
	}
	b.Size, _ = strconv.ParseInt(d.Annotations[annSize], 10, 64)
	b.Built, _ = time.Parse(time.RFC3339Nano, d.Annotations[annBuilt])
	return b
}

// Latest is the newest build of a service.
func (s *Store) Latest(service string) (Built, error) {
	bs, err := s.Builds(service)
	if err != nil {
		return Built{}, err
	}
	if len(bs) == 0 {
		return Built{}, fmt.Errorf("%w: no image of service %s in %s; run `gantry build %s` first", ErrNotBuilt, service, s.dir, service)
	}
	return bs[len(bs)-1], nil
}

// Builds lists the stored builds of a service (every service when service
// is empty), oldest first.
func (s *Store) Builds(service string) ([]Built, error) {
	ds, err := s.entries()
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.dir, err)
	}
	var bs []Built
	for _, d := range ds {
		if service == "" || d.Annotations[annService] == service {
			bs = append(bs, builtOf(d))
		}
	}
	return bs, nil
}

// Get is the stored build with this digest.
func (s *Store) Get(digest string) (Built, error) {
	ds, err := s.entries()
	if err != nil {
		return Built{}, fmt.Errorf("image store %s: %w", s.dir, err)
	}
	for i := len(ds) - 1; i >= 0; i-- {
		if ds[i].Digest.String() == digest {
			return builtOf(ds[i]), nil
		}
	}
	return Built{}, fmt.Errorf("%w: no image %s in %s; run `gantry build` first", ErrNotBuilt, digest, s.dir)
}

// taggable is the stored image or index with this digest.
func (s *Store) taggable(digest string) (taggable, error) {
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, inputErr("%q is not an image digest (sha256:...)", digest)
	}
	if _, err := s.Get(digest); err != nil {
		return nil, err
	}
	idx, err := s.path.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Digest != h {
			continue
		}
		if d.MediaType.IsIndex() {
			return idx.ImageIndex(h)
		}
		return idx.Image(h)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotBuilt, digest)
}

// add records a built image in the store's index and prunes old builds of
// the same service.
func (s *Store) add(t taggable, b *Built) error {
	d, err := t.Digest()
	if err != nil {
		return err
	}
	mt, err := t.MediaType()
	if err != nil {
		return err
	}
	b.Digest, b.MediaType = d.String(), string(mt)
	ann := map[string]string{
		annService:   b.Service,
		annMethod:    b.Method,
		annPlatforms: strings.Join(b.Platforms, ","),
		annSize:      strconv.FormatInt(b.Size, 10),
		annBuilt:     b.Built.UTC().Format(time.RFC3339Nano),
	}
	var pms []string
	for _, p := range b.Platforms {
		pms = append(pms, p+"="+b.Manifests[p])
	}
	ann[annManifests] = strings.Join(pms, ",")
	return s.locked(func() error {
		switch t := t.(type) {
		case v1.ImageIndex:
			err = s.path.AppendIndex(t, layout.WithAnnotations(ann))
		case v1.Image:
			err = s.path.AppendImage(t, layout.WithAnnotations(ann))
		}
		if err != nil {
			return err
		}
		return s.prune(b.Service)
	})
}

// prune drops all but the newest keepBuilds builds of a service, and the
// blobs nothing else refers to. Called with the lock held.
func (s *Store) prune(service string) error {
	ds, err := s.entries()
	if err != nil {
		return err
	}
	var mine []v1.Descriptor
	for _, d := range ds {
		if d.Annotations[annService] == service {
			mine = append(mine, d)
		}
	}
	if len(mine) <= keepBuilds {
		return nil
	}
	drop := map[string]bool{}
	for _, d := range mine[:len(mine)-keepBuilds] {
		drop[d.Annotations[annBuilt]+d.Digest.String()] = true
	}
	err = s.path.RemoveDescriptors(func(d v1.Descriptor) bool {
		return d.Annotations[annService] == service && drop[d.Annotations[annBuilt]+d.Digest.String()]
	})
	if err != nil {
		return err
	}
	// GarbageCollect lists the blobs no remaining entry reaches; a digest
	// that a newer build (or another service) shares stays.
	unused, err := s.path.GarbageCollect()
	if err != nil {
		return err
	}
	for _, h := range unused {
		s.path.RemoveBlob(h)
	}
	return nil
}

// known is the store's memory of which repositories hold which blobs, so a
// push to another repository of the same registry mounts instead of
// uploading.
type known struct {
	Blobs map[string][]string `json:"blobs"`
}

func (s *Store) knownPath() string { return filepath.Join(s.dir, "pushed.json") }

func (s *Store) readKnown() known {
	k := known{Blobs: map[string][]string{}}
	if data, err := os.ReadFile(s.knownPath()); err == nil {
		json.Unmarshal(data, &k)
		if k.Blobs == nil {
			k.Blobs = map[string][]string{}
		}
	}
	return k
}

// remember records that repo now holds blobs.
func (s *Store) remember(repo string, blobs []v1.Hash) error {
	return s.locked(func() error {
		k := s.readKnown()
		for _, h := range blobs {
			rs := k.Blobs[h.String()]
			found := false
			for _, r := range rs {
				found = found || r == repo
			}
			if !found {
				// Newest first, and a few repositories are enough to mount from.
				rs = append([]string{repo}, rs...)
				if len(rs) > 8 {
					rs = rs[:8]
				}
				k.Blobs[h.String()] = rs
			}
		}
		data, err := json.MarshalIndent(k, "", "  ")
		if err != nil {
			return err
		}
		tmp := s.knownPath() + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, s.knownPath())
	})
}
