// Package registry is gantry's embedded OCI registry: distribution's
// registry (on-disk storage) behind gantry's own layer, which adds basic
// authentication with bcrypt-hashed users, server-side tag immutability, and
// what the OCI distribution-spec 1.1 asks for beyond distribution (sha512
// content, the OCI-Subject header, the referrers API).
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the only driver gantry uses
	"github.com/opencontainers/go-digest"
)

// DefaultImmutableTags are the tag patterns that never move to another
// digest: versions, with an optional prerelease. The same as
// config.DefaultImmutableTags.
var DefaultImmutableTags = []string{`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`}

// Options configure a registry. Zero values take the defaults documented
// on each field.
type Options struct {
	// Root is the directory that holds the registry's content. Required.
	Root string
	// Users is an htpasswd-style file of NAME:BCRYPT-HASH lines. Empty:
	// no authentication at all (only for loopback listeners).
	Users string
	// AnonymousPull lets requests without credentials GET and HEAD.
	AnonymousPull bool
	// Immutable holds the patterns of tags that never move once they point
	// to a manifest. Nil: DefaultImmutableTags. Empty (non-nil): none.
	Immutable []string
	// Realm is the basic-auth realm. Default "gantry".
	Realm string
	// Logger receives the registry's logs, distribution's at warn and above.
	// Default slog.Default().
	Logger *slog.Logger
}

// Registry is an http.Handler serving the OCI distribution API under /v2/.
type Registry struct {
	opts      Options
	log       *slog.Logger
	app       *handlers.App
	handler   http.Handler
	immutable []*regexp.Regexp
	users     *users
	tokens    tokenSigner
	ns        distribution.Namespace
	drv       storagedriver.StorageDriver
	referrers referrerStore
	tagLocks  tagLocks
	cancel    context.CancelFunc
}

// ErrInput marks an invalid option.
var ErrInput = errors.New("invalid registry option")

// New opens (creating if needed) the registry rooted at opts.Root.
func New(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("%w: the registry needs a root directory", ErrInput)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	opts.Root = root
	if opts.Realm == "" {
		opts.Realm = "gantry"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Immutable == nil {
		opts.Immutable = DefaultImmutableTags
	}
	r := &Registry{opts: opts, log: opts.Logger, tokens: newTokenSigner()}
	for _, p := range opts.Immutable {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("%w: immutable tag pattern %q: %v", ErrInput, p, err)
		}
		r.immutable = append(r.immutable, re)
	}
	if opts.Users != "" {
		if r.users, err = loadUsers(opts.Users); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(r.distRoot(), 0o755); err != nil {
		return nil, fmt.Errorf("registry root: %w", err)
	}
	routeLogrus(opts.Logger)
	ctx, r.cancel = context.WithCancel(ctx)
	app, err := newApp(ctx, r.distRoot())
	if err != nil {
		r.cancel()
		return nil, err
	}
	r.app = app
	r.handler = app
	r.drv = filesystem.New(filesystem.DriverParameters{RootDirectory: r.distRoot(), MaxThreads: 100})
	r.referrers = referrerStore{dir: filepath.Join(opts.Root, "referrers")}
	if r.ns, err = storage.NewRegistry(ctx, r.drv); err != nil {
		r.cancel()
		return nil, err
	}
	return r, nil
}

// distRoot is where distribution's filesystem driver keeps its tree.
func (r *Registry) distRoot() string { return filepath.Join(r.opts.Root, "distribution") }

// Close stops the registry's background work (the upload purger).
func (r *Registry) Close() error {
	r.cancel()
	return nil
}

// ServeHTTP serves the registry API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.users != nil && r.opts.AnonymousPull && req.URL.Path == tokenPath {
		r.serveToken(w, req)
		return
	}
	if !r.authenticate(w, req) {
		return
	}
	r.dispatch(w, req)
}

// dispatch sends an authenticated request to gantry's handling or to
// distribution's.
func (r *Registry) dispatch(w http.ResponseWriter, req *http.Request) {
	rt := parseRoute(req.URL.Path)
	switch rt.kind {
	case "manifest":
		if req.Method == http.MethodPut {
			r.putManifest(w, req, rt.repo, rt.ref)
			return
		}
		if req.Method == http.MethodDelete && len(r.immutable) > 0 && !r.deletable(w, req, rt.repo, rt.ref) {
			return
		}
		if d, ok := nonCanonical(rt.ref); ok {
			r.manifestByAlias(w, req, rt.repo, d)
			return
		}
	case "blob":
		if d, ok := nonCanonical(rt.ref); ok {
			r.blobByAlias(w, req, d)
			return
		}
	case "upload":
		if d, ok := nonCanonical(req.URL.Query().Get("digest")); ok && req.Method == http.MethodPut {
			r.finishUploadAlias(w, req, d)
			return
		}
	case "uploads":
		q := req.URL.Query()
		if d, ok := nonCanonical(q.Get("mount")); ok && q.Get("from") != "" && req.Method == http.MethodPost {
			r.mountAlias(w, req, rt.repo, d)
			return
		}
		if q.Get("mount") != "" && q.Get("from") == "" && req.Method == http.MethodPost {
			r.mountAnywhere(w, req, rt.repo, q.Get("mount"))
			return
		}
		if q.Get("digest") != "" && q.Get("mount") == "" && req.Method == http.MethodPost {
			r.monolithicUpload(w, req)
			return
		}
	case "referrers":
		r.serveReferrers(w, req, rt.repo, rt.ref)
		return
	}
	r.handler.ServeHTTP(w, req)
}

func newApp(ctx context.Context, dir string) (app *handlers.App, err error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
			"redirect":   configuration.Parameters{"disable": true},
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": true, "age": "168h", "interval": "24h", "dryrun": false},
			},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	// Non-distributable layers carry URLs; accept http(s) ones, as the OCI
	// spec allows, instead of distribution's default of none.
	cfg.Validation.Manifests.URLs.Allow = []string{`^https?://`}
	cfg.Log.AccessLog.Disabled = true
	// NewApp panics on a configuration it cannot use; turn that into an error.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("starting distribution: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// isDigest reports whether ref is a digest rather than a tag.
func isDigest(ref string) bool {
	_, err := digest.Parse(ref)
	return err == nil
}
