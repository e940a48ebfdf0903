package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// GCOptions configure a garbage collection.
type GCOptions struct {
	// Root is the registry's root directory.
	Root string
	// DryRun reports what would be removed and removes nothing.
	DryRun bool
	// RemoveUntagged also removes manifests that no tag points to (and
	// that no index or referrer holds).
	RemoveUntagged bool
}

// GCResult says what a collection found.
type GCResult struct {
	Root         string `json:"root"`
	DryRun       bool   `json:"dry_run"`
	BlobsBefore  int    `json:"blobs_before"`
	BlobsAfter   int    `json:"blobs_after"`
	BytesBefore  int64  `json:"bytes_before"`
	BytesAfter   int64  `json:"bytes_after"`
	BlobsRemoved int    `json:"blobs_removed"`
}

// GC removes the blobs no manifest references, with distribution's
// mark-and-sweep. It refuses to run while a server holds the root: a push in
// flight has uploaded blobs that no manifest references yet.
func GC(ctx context.Context, opts GCOptions) (*GCResult, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("%w: the registry needs a root directory", ErrInput)
	}
	if _, err := os.Stat(opts.Root); err != nil {
		return nil, fmt.Errorf("%w: registry root %s: %v", ErrInput, opts.Root, err)
	}
	unlock, err := lockRoot(opts.Root, "gc")
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &GCResult{Root: opts.Root, DryRun: opts.DryRun}
	dir := filepath.Join(opts.Root, "distribution")
	res.BlobsBefore, res.BytesBefore = countBlobs(dir)
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100})
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return nil, err
	}
	err = storage.MarkAndSweep(ctx, drv, ns, storage.GCOpts{DryRun: opts.DryRun, RemoveUntagged: opts.RemoveUntagged, Quiet: true})
	if err != nil {
		return nil, fmt.Errorf("garbage collection: %w", err)
	}
	res.BlobsAfter, res.BytesAfter = countBlobs(dir)
	res.BlobsRemoved = res.BlobsBefore - res.BlobsAfter
	return res, nil
}

// countBlobs counts the blob data files under distribution's tree.
func countBlobs(dir string) (n int, size int64) {
	filepath.WalkDir(filepath.Join(dir, "docker", "registry", "v2", "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "data" {
			if fi, err := d.Info(); err == nil {
				n++
				size += fi.Size()
			}
		}
		return nil
	})
	return n, size
}
