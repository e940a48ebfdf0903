package image

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantryhq/gantry/internal/config"
)

// BuildRequest is one service image to build.
type BuildRequest struct {
	Service string
	// Dir is what the relative paths of Build (context, dockerfile,
	// binaries) are relative to: gantry.yaml's directory.
	Dir   string
	Build *config.Build
	// Platforms to build (linux/amd64). Empty: every platform of Binaries
	// for a binaries build, the Docker engine's own for a Dockerfile.
	Platforms []string
	// Labels go into every platform's image config.
	Labels map[string]string
}

// taggable is what a build makes and a push sends: an image or an index.
type taggable interface {
	Digest() (v1.Hash, error)
	MediaType() (types.MediaType, error)
	RawManifest() ([]byte, error)
	Size() (int64, error)
}

// Build builds req's image and adds it to the store. c, the Docker engine,
// is needed only for Dockerfile builds (nil is fine for binaries).
// progress, when not nil, gets one line per step.
func (s *Store) Build(ctx context.Context, c *client.Client, req BuildRequest, progress func(string)) (Built, error) {
	if progress == nil {
		progress = func(string) {}
	}
	if req.Build == nil {
		return Built{}, inputErr("service %s has no build; give it one under services.%s.build in gantry.yaml or a build: section in the compose file", req.Service, req.Service)
	}
	if req.Service == "" {
		return Built{}, inputErr("a build needs the service's name")
	}
	for _, p := range req.Platforms {
		if _, err := parsePlatform(p); err != nil {
			return Built{}, err
		}
	}
	var (
		t      taggable
		method string
		err    error
	)
	switch {
	case req.Build.Daemonless():
		method = MethodBinaries
		t, err = buildBinaries(ctx, req, progress)
	default:
		if c == nil {
			return Built{}, inputErr("service %s is built from a Dockerfile, which needs a Docker engine", req.Service)
		}
		var local string
		local, err = enginePlatform(ctx, c)
		if err != nil {
			return Built{}, err
		}
		if len(req.Platforms) == 0 || (len(req.Platforms) == 1 && samePlatform(req.Platforms[0], local)) {
			method = MethodEngine
			t, err = s.buildEngine(ctx, c, req, progress)
		} else {
			method = MethodBuildx
			t, err = s.buildBuildx(ctx, c, req, progress)
		}
	}
	if err != nil {
		return Built{}, fmt.Errorf("build %s (%s): %w", req.Service, method, err)
	}
	if d, ok := t.(interface{ done() }); ok {
		defer d.done()
	}
	b := Built{Service: req.Service, Method: method, Built: time.Now().UTC()}
	if b.Platforms, b.Manifests, b.Size, err = describe(t); err != nil {
		return Built{}, fmt.Errorf("build %s: %w", req.Service, err)
	}
	progress(fmt.Sprintf("%s: storing %s in %s", req.Service, strings.Join(b.Platforms, ", "), s.dir))
	if err := s.add(t, &b); err != nil {
		return Built{}, fmt.Errorf("build %s: storing the image in %s: %w", req.Service, s.dir, err)
	}
	progress(fmt.Sprintf("%s: built %s", req.Service, b.Digest))
	return b, nil
}

// walk calls f on t and, when t is an index, on every image and index in it.
func walk(t taggable, f func(taggable) error) error {
	if err := f(t); err != nil {
		return err
	}
	ii, ok := t.(v1.ImageIndex)
	if !ok {
		return nil
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	for _, c := range im.Manifests {
		var child taggable
		switch {
		case c.MediaType.IsIndex():
			child, err = ii.ImageIndex(c.Digest)
		case c.MediaType.IsImage():
			child, err = ii.Image(c.Digest)
		default:
			continue
		}
		if err != nil {
			return err
		}
		if err := walk(child, f); err != nil {
			return err
		}
	}
	return nil
}

// describe lists an image's platforms with their manifests' digests, and
// adds up its distinct blobs.
func describe(t taggable) ([]string, map[string]string, int64, error) {
	manifests := map[string]string{}
	seen := map[v1.Hash]bool{}
	var size int64
	add := func(h v1.Hash, n int64) {
		if !seen[h] {
			seen[h] = true
			size += n
		}
	}
	var plats []string
	err := walk(t, func(m taggable) error {
		d, err := m.Digest()
		if err != nil {
			return err
		}
		n, err := m.Size()
		if err != nil {
			return err
		}
		add(d, n)
		img, ok := m.(v1.Image)
		if !ok {
			return nil
		}
		man, err := img.Manifest()
		if err != nil {
			return err
		}
		add(man.Config.Digest, man.Config.Size)
		for _, l := range man.Layers {
			add(l.Digest, l.Size)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		// Attestations that buildx adds say unknown/unknown.
		if p := cf.Platform(); p != nil && p.OS != "unknown" {
			plats = append(plats, p.String())
			manifests[p.String()] = d.String()
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, err
	}
	sort.Strings(plats)
	return plats, manifests, size, nil
}

func parsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" || strings.Count(s, "/") < 1 {
		return nil, inputErr("platform %q: write it as os/arch, like linux/amd64 or linux/arm64", s)
	}
	return p, nil
}

func samePlatform(a, b string) bool {
	pa, err1 := v1.ParsePlatform(a)
	pb, err2 := v1.ParsePlatform(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return pa.OS == pb.OS && pa.Architecture == pb.Architecture && (pa.Variant == "" || pb.Variant == "" || pa.Variant == pb.Variant)
}

// epoch is the time in layers and configs of binaries builds: the build is
// reproducible (the same binary gives the same digest) unless
// SOURCE_DATE_EPOCH says otherwise.
func epoch() time.Time {
	if v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(v, 0).UTC()
	}
	return time.Unix(0, 0).UTC()
}

// buildBinaries lays each platform's binary on the base (or scratch) and
// puts the images in an OCI index.
func buildBinaries(ctx context.Context, req BuildRequest, progress func(string)) (taggable, error) {
	b := req.Build
	plats := req.Platforms
	if len(plats) == 0 {
		for p := range b.Binaries {
			plats = append(plats, p)
		}
		sort.Strings(plats)
	}
	dest := b.Path
	if dest == "" {
		dest = "/" + req.Service
	}
	if !path.IsAbs(dest) {
		return nil, inputErr("services.%s.build.path %q: give an absolute path in the image, like /%s", req.Service, dest, req.Service)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, ps := range plats {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		plat, err := parsePlatform(ps)
		if err != nil {
			return nil, err
		}
		file, ok := b.Binaries[ps]
		if !ok {
			var have []string
			for p := range b.Binaries {
				have = append(have, p)
			}
			sort.Strings(have)
			return nil, inputErr("service %s has no binary for %s (services.%s.build.binaries has %s); build one for it or leave the platform out", req.Service, ps, req.Service, strings.Join(have, ", "))
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(req.Dir, file)
		}
		if err := checkBinary(file, plat); err != nil {
			return nil, inputErr("service %s, %s: %v", req.Service, ps, err)
		}
		progress(fmt.Sprintf("%s: %s: %s -> %s", req.Service, ps, file, dest))
		base, err := baseImage(ctx, b.Base, plat)
		if err != nil {
			return nil, fmt.Errorf("base image %s for %s: %w", b.Base, ps, err)
		}
		img, err := layBinary(base, file, dest, req, plat)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: plat}})
	}
	if len(adds) == 0 {
		return nil, inputErr("service %s: no platform to build", req.Service)
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// checkBinary refuses a file that is not there, or an ELF binary built for
// another architecture than the platform it is given for: a mistake that
// would otherwise show only as "exec format error" in production.
func checkBinary(file string, plat *v1.Platform) error {
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("binary %s: %w", file, err)
	}
	if st.IsDir() {
		return fmt.Errorf("binary %s is a directory", file)
	}
	f, err := elf.Open(file)
	if err != nil {
		return nil // not ELF (a script?): nothing to check
	}
	defer f.Close()
	want, known := map[string]elf.Machine{
		"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386,
		"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
	}[plat.Architecture]
	if known && f.Machine != want {
		return fmt.Errorf("binary %s is built for %s, not %s; cross-compile it (GOOS=%s GOARCH=%s CGO_ENABLED=0 go build)", file, f.Machine, plat.Architecture, plat.OS, plat.Architecture)
	}
	return nil
}

// baseImage is the platform's image of ref, or scratch when ref is empty.
func baseImage(ctx context.Context, ref string, plat *v1.Platform) (v1.Image, error) {
	if ref == "" || ref == "scratch" {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
	}
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	opts, err := remoteOptions(ctx, r.Context().RegistryStr(), PushOptions{})
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, append(opts, remote.WithPlatform(*plat))...)
	if err != nil {
		return nil, registryErr(r.Context().RegistryStr(), err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, registryErr(r.Context().RegistryStr(), err)
	}
	if got := cf.Platform(); got != nil && (got.OS != plat.OS || got.Architecture != plat.Architecture) {
		return nil, inputErr("%s is an image for %s only, not %s; use a multi-platform base", ref, got, plat)
	}
	return img, nil
}

// layBinary adds the binary as one layer and sets the config.
func layBinary(base v1.Image, file, dest string, req BuildRequest, plat *v1.Platform) (v1.Image, error) {
	b := req.Build
	when := epoch()
	data, err := binaryLayer(file, dest, when)
	if err != nil {
		return nil, err
	}
	mt, err := base.MediaType()
	if err != nil {
		return nil, err
	}
	layerType := types.OCILayer
	if mt == types.DockerManifestSchema2 {
		layerType = types.DockerLayer
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(layerType), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: layerType,
		History:   v1.History{Created: v1.Time{Time: when}, CreatedBy: "gantry build: " + dest, Comment: "binaries"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = plat.OS, plat.Architecture, plat.Variant, plat.OSVersion
	cf.Created = v1.Time{Time: when}
	c := &cf.Config
	c.Entrypoint = b.Entrypoint
	if len(c.Entrypoint) == 0 {
		c.Entrypoint = []string{dest}
	}
	c.Cmd = b.Cmd
	c.Env = mergeEnv(c.Env, b.Env)
	if !hasEnv(c.Env, "PATH") {
		c.Env = append(c.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	if b.User != "" {
		c.User = b.User
	}
	for _, e := range b.Expose {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		if !strings.Contains(e, "/") {
			e += "/tcp"
		}
		c.ExposedPorts[e] = struct{}{}
	}
	if len(req.Labels) > 0 {
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for k, v := range req.Labels {
			c.Labels[k] = v
		}
	}
	return mutate.ConfigFile(img, cf)
}

// binaryLayer is a tar with the binary at dest (mode 0755, owned by root)
// and its parent directories.
func binaryLayer(file, dest string, when time.Time) ([]byte, error) {
	bin, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("binary %s: %w", file, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := strings.TrimPrefix(path.Clean(dest), "/")
	var dirs []string
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: when, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: when, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func mergeEnv(base, add []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

// enginePlatform is the Docker engine's os/arch.
func enginePlatform(ctx context.Context, c *client.Client) (string, error) {
	v, err := c.ServerVersion(ctx)
	if err != nil {
		return "", fmt.Errorf("the Docker engine at %s does not answer: %w", c.DaemonHost(), err)
	}
	return v.Os + "/" + v.Arch, nil
}
