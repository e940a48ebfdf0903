package image

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// EngineTag is the name the engine's last build of a service keeps in the
// local Docker engine (gantry-build/web:latest), so its layers stay as the
// build cache of the next build.
func EngineTag(service string) string { return "gantry-build/" + service + ":latest" }

// contextDir and dockerfile resolve a Dockerfile build's paths.
func contextPaths(req BuildRequest) (ctxDir, dockerfile string, err error) {
	ctxDir = req.Build.Context
	if ctxDir == "" {
		ctxDir = "."
	}
	if !filepath.IsAbs(ctxDir) {
		ctxDir = filepath.Join(req.Dir, ctxDir)
	}
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		return "", "", inputErr("service %s: build context %s is not a directory", req.Service, ctxDir)
	}
	dockerfile = req.Build.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(ctxDir, dockerfile)
	}
	if _, err := os.Stat(dockerfile); err != nil {
		return "", "", inputErr("service %s: Dockerfile %s not found; set build.dockerfile (relative to the context %s)", req.Service, dockerfile, ctxDir)
	}
	return ctxDir, dockerfile, nil
}

// buildEngine builds on the local Docker engine with the classic builder
// (the engines of Debian and older distributions have no BuildKit session
// through the API), then saves the image into the store.
func (s *Store) buildEngine(ctx context.Context, c *client.Client, req BuildRequest, progress func(string)) (taggable, error) {
	ctxDir, dockerfile, err := contextPaths(req)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	inTar := ".gantry.Dockerfile"
	go func() { pw.CloseWithError(tarContext(pw, ctxDir, dockerfile, inTar)) }()
	defer pr.Close()
	args := map[string]*string{}
	for k, v := range req.Build.Args {
		args[k] = &v
	}
	progress(fmt.Sprintf("%s: building %s on the Docker engine", req.Service, ctxDir))
	resp, err := c.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{EngineTag(req.Service)},
		Dockerfile:  inTar,
		BuildArgs:   args,
		Target:      req.Build.Target,
		Labels:      req.Labels,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return nil, fmt.Errorf("the Docker engine refused the build: %w", err)
	}
	defer resp.Body.Close()
	id, err := buildStream(resp.Body, func(line string) {
		// The classic builder's bookkeeping says nothing to a reader.
		if line == "--->" || strings.HasPrefix(line, "---> Running in") || strings.HasPrefix(line, "Removing intermediate container") {
			return
		}
		progress(req.Service + ": " + line)
	})
	if err != nil {
		return nil, err
	}
	if id == "" {
		id = EngineTag(req.Service)
	}
	return s.save(ctx, c, id)
}

// buildStream follows the engine's JSON build output, reports its lines and
// returns the built image's ID.
func buildStream(r io.Reader, line func(string)) (string, error) {
	dec := json.NewDecoder(r)
	var id string
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return id, nil
			}
			return "", err
		}
		if m.Error != nil {
			return "", fmt.Errorf("%s", strings.TrimSpace(m.Error.Message))
		}
		if m.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		for _, l := range strings.Split(m.Stream, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				line(l)
				if rest, ok := strings.CutPrefix(l, "Successfully built "); ok && id == "" {
					id = rest
				}
			}
		}
	}
}

// save copies an image out of the engine (docker save) and reads it as an
// image; its layers are compressed and hashed once, here.
func (s *Store) save(ctx context.Context, c *client.Client, id string) (taggable, error) {
	rc, err := c.ImageSave(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("saving the built image from the engine: %w", err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(s.dir, ".save-*.tar")
	if err != nil {
		return nil, err
	}
	name := tmp.Name()
	_, err = io.Copy(tmp, rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("saving the built image from the engine: %w", err)
	}
	img, err := tarball.ImageFromPath(name, nil)
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("reading the saved image: %w", err)
	}
	return &savedImage{Image: img, file: name}, nil
}

// savedImage removes its docker save file once it is in the store.
type savedImage struct {
	v1.Image
	file string
}

func (i *savedImage) done() { os.Remove(i.file) }

// tarContext writes the build context, minus what .dockerignore excludes,
// with the Dockerfile under the name inTar.
func tarContext(w io.Writer, dir, dockerfile, inTar string) error {
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
		if pm, err = patternmatcher.New(patterns); err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if pm != nil {
			if skip, _ := pm.MatchesOrParentMatches(rel); skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil // sockets and the like are not part of a build context
		}
		h.Name = rel
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	df, err := os.ReadFile(dockerfile)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: inTar, Mode: 0o644, Size: int64(len(df)), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := tw.Write(df); err != nil {
		return err
	}
	return tw.Close()
}

// buildxMissing says how to get buildx, or what to do instead.
func buildxMissing(req BuildRequest, why string) error {
	return fmt.Errorf("%w (%s): building service %s for %s from a Dockerfile needs it.\n"+
		"Install the buildx plugin (Docker's docker-buildx-plugin package, or the docker-buildx package where your distribution has one; "+
		"Debian 12 has none) and check with `docker buildx version`; "+
		"or build for the engine's platform only (--platform with one platform, or none), "+
		"or give the service prebuilt binaries (services.%s.build.binaries) for a daemonless multi-platform build",
		ErrBuildxMissing, why, req.Service, strings.Join(req.Platforms, ", "), req.Service)
}

// Buildx reports whether `docker buildx` is installed, and its version.
func Buildx(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return "", fmt.Errorf("the docker CLI is not on PATH")
	}
	out, err := exec.CommandContext(ctx, "docker", "buildx", "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("`docker buildx version` failed: %s", firstLine(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// buildBuildx builds several platforms with `docker buildx build` into an
// OCI archive, and reads the image index from it.
func (s *Store) buildBuildx(ctx context.Context, c *client.Client, req BuildRequest, progress func(string)) (taggable, error) {
	if _, err := Buildx(ctx); err != nil {
		return nil, buildxMissing(req, err.Error())
	}
	ctxDir, dockerfile, err := contextPaths(req)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(s.dir, ".buildx-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	archive := filepath.Join(tmp, "out.tar")
	args := []string{"buildx", "build", "--progress", "plain",
		"--platform", strings.Join(req.Platforms, ","),
		"--file", dockerfile,
		"--output", "type=oci,dest=" + archive}
	if req.Build.Target != "" {
		args = append(args, "--target", req.Build.Target)
	}
	for _, k := range sortedKeys(req.Build.Args) {
		args = append(args, "--build-arg", k+"="+req.Build.Args[k])
	}
	for _, k := range sortedKeys(req.Labels) {
		args = append(args, "--label", k+"="+req.Labels[k])
	}
	args = append(args, ctxDir)
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = os.Environ()
	if c != nil {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+c.DaemonHost())
	}
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("%s: docker buildx build --platform %s", req.Service, strings.Join(req.Platforms, ",")))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var last []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" {
			continue
		}
		progress(req.Service + ": " + l)
		if last = append(last, l); len(last) > 10 {
			last = last[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("docker buildx build failed: %v\n%s", err, strings.Join(last, "\n"))
	}
	dir := filepath.Join(tmp, "oci")
	if err := untar(archive, dir); err != nil {
		return nil, fmt.Errorf("reading buildx's OCI archive: %w", err)
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading buildx's OCI archive: %w", err)
	}
	im, err := root.IndexManifest()
	if err != nil || len(im.Manifests) == 0 {
		return nil, fmt.Errorf("buildx's OCI archive holds no image (%v)", err)
	}
	d := im.Manifests[0]
	if d.MediaType.IsIndex() {
		return root.ImageIndex(d.Digest)
	}
	return root.Image(d.Digest)
}

func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.Create(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, tr)
			w.Close()
			if err != nil {
				return err
			}
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
