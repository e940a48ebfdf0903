package scan

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TrivyVersion is the Trivy gantry is built and tested with.
const TrivyVersion = "v0.74.0"

// TrivyInstall is the command that installs it from the Go module proxy.
const TrivyInstall = "GOEXPERIMENT=jsonv2 go install github.com/aquasecurity/trivy/cmd/trivy@" + TrivyVersion

// ErrTrivyMissing: the trivy binary is not where gantry looks.
var ErrTrivyMissing = errors.New("trivy is not installed")

// DefaultTimeout bounds one image's scan.
const DefaultTimeout = 10 * time.Minute

// Options say how Trivy runs.
type Options struct {
	// Trivy is the binary; empty means trivy on $PATH.
	Trivy string
	// Server is a Trivy server's URL (trivy server): the server holds the
	// vulnerability database and matches; the image is read here.
	Server string
	// CacheDir is Trivy's cache directory (its database lives in
	// CacheDir/db); empty means Trivy's default.
	CacheDir string
	// Offline uses the database in CacheDir as it is: no download, no
	// network lookups.
	Offline bool
	// Timeout bounds one image's scan (default DefaultTimeout).
	Timeout time.Duration
	// Username and Password are credentials for the registry the images
	// are read from. They reach Trivy through its environment, never its
	// arguments.
	Username, Password string
}

// Trivy runs the trivy binary.
type Trivy struct {
	path    string
	version string
	opts    Options
}

// NewTrivy finds the trivy binary and asks its version.
func NewTrivy(ctx context.Context, o Options) (*Trivy, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	path := o.Trivy
	if path == "" {
		p, err := exec.LookPath("trivy")
		if err != nil {
			return nil, fmt.Errorf("%w: no trivy on $PATH, and gates.scan.trivy does not name one.\n"+
				"Install Trivy %s: %s (in gantry's source tree, scripts/ensure-trivy.sh builds it into bin/trivy), "+
				"then put it on $PATH or set gates.scan.trivy to its path", ErrTrivyMissing, TrivyVersion, TrivyInstall)
		}
		path = p
	} else if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: gates.scan.trivy is %s, and there is no such file.\n"+
			"Install Trivy %s: %s (in gantry's source tree, scripts/ensure-trivy.sh builds it into bin/trivy), "+
			"or fix the path", ErrTrivyMissing, path, TrivyVersion, TrivyInstall)
	}
	t := &Trivy{path: path, opts: o}
	vctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(vctx, path, "--version", "--format", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s --version: %v; is it Trivy? Install %s with: %s", ErrTrivyMissing, path, err, TrivyVersion, TrivyInstall)
	}
	var v struct{ Version string }
	if err := json.Unmarshal(out, &v); err != nil || v.Version == "" {
		return nil, fmt.Errorf("%w: %s --version gave no version; is it Trivy? Install %s with: %s", ErrTrivyMissing, path, TrivyVersion, TrivyInstall)
	}
	t.version = v.Version
	if t.version == "dev" {
		// A plain go install leaves the version unset; Go recorded the
		// module's version in the binary.
		if bi, err := buildinfo.ReadFile(path); err == nil && strings.HasPrefix(bi.Main.Version, "v") {
			t.version = strings.TrimPrefix(bi.Main.Version, "v")
		}
	}
	return t, nil
}

// Version is the version trivy reports (0.74.0).
func (t *Trivy) Version() string { return t.version }

// Path is the binary.
func (t *Trivy) Path() string { return t.path }

// Scan runs Trivy on one image: from gantry's image store when img.Layout
// is set, else from its registry by digest.
func (t *Trivy) Scan(ctx context.Context, img Image) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	tmp, err := os.MkdirTemp("", "gantry-scan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "report.json")
	args := []string{"image", "--format", "json", "--output", out, "--quiet", "--scanners", "vuln",
		"--severity", strings.Join(severityNames, ","), "--timeout", t.opts.Timeout.String(),
		// Trivy calls Aqua for version notices and usage data unless told
		// not to; a gate in CI has no business doing either.
		"--skip-version-check", "--disable-telemetry"}
	if t.opts.CacheDir != "" {
		args = append(args, "--cache-dir", t.opts.CacheDir)
	}
	if t.opts.Server != "" {
		args = append(args, "--server", t.opts.Server)
	} else if t.opts.Offline {
		args = append(args, "--skip-db-update", "--skip-java-db-update", "--offline-scan")
	}
	env := os.Environ()
	if img.Layout != "" {
		dir, err := stageLayout(tmp, img.Layout, img.Digest)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", img.Ref, err)
		}
		args = append(args, "--input", dir)
	} else {
		args = append(args, "--image-src", "remote")
		if loopbackRegistry(img.Ref) {
			// Docker trusts registries on 127.0.0.0/8 without TLS; so does gantry.
			args = append(args, "--insecure")
		}
		if t.opts.Username != "" {
			env = append(env, "TRIVY_USERNAME="+t.opts.Username, "TRIVY_PASSWORD="+t.opts.Password)
		}
		args = append(args, img.Ref)
	}
	cmd := exec.CommandContext(ctx, t.path, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("trivy scan of %s: no verdict within %s (gates.scan.timeout): %w", img.Ref, t.opts.Timeout, ctx.Err())
		}
		return nil, fmt.Errorf("trivy scan of %s failed: %v%s", img.Ref, err, t.hint(stderr.String()))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("trivy scan of %s wrote no report: %w", img.Ref, err)
	}
	r, err := ParseReport(data)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", img.Ref, err)
	}
	return r, nil
}

// hint turns Trivy's last words into an error's tail, with what to do for
// the failures a user meets first.
func (t *Trivy) hint(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	msg := "\n  " + strings.Join(lines, "\n  ")
	switch {
	case t.opts.Server != "" && (strings.Contains(stderr, "connection refused") || strings.Contains(stderr, "no such host")):
		msg += fmt.Sprintf("\nno Trivy server answers at %s (gates.scan.server); start one with `trivy server --listen ADDR`, or remove server to scan here", t.opts.Server)
	case t.opts.Offline && (strings.Contains(stderr, "--skip-db-update") || strings.Contains(stderr, "trivy.db") || strings.Contains(stderr, "metadata.json")):
		dir := t.opts.CacheDir
		if dir == "" {
			dir = "Trivy's cache directory"
		}
		msg += fmt.Sprintf("\nwith gates.scan.offline, %s must hold a vulnerability database (db/trivy.db and db/metadata.json); fetch one where the internet is reachable with `trivy image --download-db-only --cache-dir DIR`", dir)
	case strings.Contains(stderr, "UNAUTHORIZED") || strings.Contains(stderr, "401"):
		msg += "\nthe registry refused Trivy; gantry passes registry.username and the password of registry.password_env to Trivy"
	}
	return msg
}

// loopbackRegistry reports whether ref's registry is on a loopback address.
func loopbackRegistry(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// stageLayout writes, under tmp, an OCI layout whose index names only the
// image digest of the store at storeDir, with the store's blobs linked in:
// Trivy's --input reads the first image of a layout, and the store holds
// many. Nothing is copied.
func stageLayout(tmp, storeDir, digest string) (string, error) {
	desc, err := findDescriptor(storeDir, digest)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(tmp, "layout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	blobs, err := filepath.Abs(filepath.Join(storeDir, "blobs"))
	if err != nil {
		return "", err
	}
	if err := os.Symlink(blobs, filepath.Join(dir, "blobs")); err != nil {
		return "", err
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json",
		Manifests: []v1.Descriptor{{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, Platform: desc.Platform}}}
	b, err := json.Marshal(idx)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}

// findDescriptor finds the manifest digest in the layout's index or in one
// of the indexes it lists (the platforms of a multi-platform image).
func findDescriptor(storeDir, digest string) (v1.Descriptor, error) {
	p, err := layout.FromPath(storeDir)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("image store %s: %w", storeDir, err)
	}
	want, err := v1.NewHash(digest)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%w: %q is not a digest", ErrInput, digest)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("image store %s: %w", storeDir, err)
	}
	var walk func(idx v1.ImageIndex, depth int) (v1.Descriptor, bool, error)
	walk = func(idx v1.ImageIndex, depth int) (v1.Descriptor, bool, error) {
		m, err := idx.IndexManifest()
		if err != nil {
			return v1.Descriptor{}, false, err
		}
		for _, d := range m.Manifests {
			if d.Digest == want {
				return d, true, nil
			}
		}
		if depth > 1 {
			return v1.Descriptor{}, false, nil
		}
		for _, d := range m.Manifests {
			if !d.MediaType.IsIndex() {
				continue
			}
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return v1.Descriptor{}, false, err
			}
			if got, ok, err := walk(child, depth+1); ok || err != nil {
				return got, ok, err
			}
		}
		return v1.Descriptor{}, false, nil
	}
	d, ok, err := walk(idx, 0)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("image store %s: %w", storeDir, err)
	}
	if !ok {
		return v1.Descriptor{}, fmt.Errorf("image %s is not in the image store %s; build it again (gantry build)", digest, storeDir)
	}
	return d, nil
}
