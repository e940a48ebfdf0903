package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// GCOptions configure a garbage collection.
type GCOptions struct {
	// Root is the registry's root directory.
	Root string
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
}

// GCResult says what a collection found and did.
type GCResult struct {
	Root   string `json:"root"`
	DryRun bool   `json:"dry_run"`
	// Blobs and Bytes count the blobs stored before the collection.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Removed lists the unreferenced blobs: removed, or with DryRun the
	// ones that would be.
	Removed      []digest.Digest `json:"removed"`
	RemovedBytes int64           `json:"removed_bytes"`
	// LayerLinks counts the repository links to those blobs, removed too.
	LayerLinks int `json:"layer_links"`
}

// GC removes the blobs that no manifest references: distribution's mark and
// sweep, made aware of gantry's sha512 aliases (distribution's own
// MarkAndSweep would sweep a layer that manifests refer to only by its
// sha512 digest, since the blob is stored under its sha256 one). Every
// manifest stays: gantry never removes a pushed manifest on its own.
//
// GC refuses to run while a server holds the root: a push in flight has
// uploaded blobs that no manifest references yet.
func GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("%w: the registry needs a root directory", ErrInput)
	}
	if _, err := os.Stat(filepath.Join(opts.Root, "distribution")); err != nil {
		return nil, fmt.Errorf("%w: %s holds no registry (%v); pass the --root the registry serves", ErrInput, opts.Root, err)
	}
	unlock, err := lockRoot(opts.Root, "gc")
	if err != nil {
		return nil, err
	}
	defer unlock()
	routeLogrus(nil)
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: filepath.Join(opts.Root, "distribution"), MaxThreads: 100})
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return nil, err
	}
	res := &GCResult{Root: opts.Root, DryRun: opts.DryRun, Removed: []digest.Digest{}}
	marked := map[digest.Digest]bool{}
	layers := map[string][]digest.Digest{} // each repository's layer links
	err = ns.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		return markRepository(ctx, drv, ns, name, marked, layers)
	})
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		err = nil // no repository yet
	}
	if err != nil {
		return nil, fmt.Errorf("garbage collection, marking: %w", err)
	}
	sizes := map[digest.Digest]int64{}
	err = ns.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		size := int64(0)
		if fi, err := drv.Stat(ctx, blobDataPath(d)); err == nil {
			size = fi.Size()
		}
		res.Blobs++
		res.Bytes += size
		if !marked[d] {
			res.Removed = append(res.Removed, d)
			res.RemovedBytes += size
			sizes[d] = size
		}
		return nil
	})
	if errors.As(err, &nf) {
		err = nil // no blob yet
	}
	if err != nil {
		return nil, fmt.Errorf("garbage collection, listing blobs: %w", err)
	}
	sort.Slice(res.Removed, func(i, j int) bool { return res.Removed[i] < res.Removed[j] })
	vacuum := storage.NewVacuum(ctx, drv)
	for repo, ds := range layers {
		for _, d := range ds {
			if marked[d] {
				continue
			}
			res.LayerLinks++
			if !opts.DryRun {
				if err := vacuum.RemoveLayer(repo, d); err != nil {
					return res, fmt.Errorf("removing layer link %s of %s: %w", d, repo, err)
				}
			}
		}
	}
	if !opts.DryRun {
		for _, d := range res.Removed {
			if err := vacuum.RemoveBlob(d.String()); err != nil {
				return res, fmt.Errorf("removing blob %s: %w", d, err)
			}
		}
	}
	return res, nil
}

// markRepository marks every manifest of the repository and everything they
// reference, under the digests they name and the canonical ones behind them.
func markRepository(ctx context.Context, drv storagedriver.StorageDriver, ns distribution.Namespace, name string, marked map[digest.Digest]bool, layers map[string][]digest.Digest) error {
	named, err := reference.WithName(name)
	if err != nil {
		return fmt.Errorf("repository %q: %w", name, err)
	}
	repo, err := ns.Repository(ctx, named)
	if err != nil {
		return err
	}
	manifests, err := repo.Manifests(ctx)
	if err != nil {
		return err
	}
	resolve := func(d digest.Digest) digest.Digest {
		if d.Algorithm() == digest.Canonical {
			return d
		}
		for _, link := range []string{layerLink(name, d), revisionLink(name, d)} {
			if b, err := drv.GetContent(ctx, link); err == nil {
				if c, err := digest.Parse(string(b)); err == nil {
					return c
				}
			}
		}
		return d
	}
	var mark func(d digest.Digest) error
	mark = func(d digest.Digest) error {
		if marked[d] {
			return nil
		}
		marked[d] = true
		marked[resolve(d)] = true
		ok, err := manifests.Exists(ctx, d)
		if err != nil || !ok {
			return nil // a blob, or a manifest this repository lacks
		}
		m, err := manifests.Get(ctx, d)
		if err != nil {
			return fmt.Errorf("manifest %s in %s: %w", d, name, err)
		}
		for _, ref := range m.References() {
			if err := mark(ref.Digest); err != nil {
				return err
			}
		}
		return nil
	}
	err = manifests.(distribution.ManifestEnumerator).Enumerate(ctx, mark)
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return err
	}
	err = repo.Blobs(ctx).(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
		layers[name] = append(layers[name], d)
		return nil
	})
	if err != nil && !errors.As(err, &nf) {
		return err
	}
	return nil
}

// blobDataPath is where distribution keeps a blob's bytes.
func blobDataPath(d digest.Digest) string {
	return fmt.Sprintf("/docker/registry/v2/blobs/%s/%s/%s/data", d.Algorithm(), d.Encoded()[:2], d.Encoded())
}
