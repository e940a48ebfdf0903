// Package testenv gives integration tests the real Docker engine, images
// built FROM scratch from the example app, and cleanup of everything a
// test created, found by label even when the test fails.
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/internal/docker"
)

// LabelTest marks every image a test builds.
const LabelTest = "io.gantry.test"

// Docker returns a client for the local engine, failing the test with what
// to do when there is none: integration tests are never skipped silently.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("this test needs a Docker engine and none answers at %s (%v).\n"+
			"Run `make deps` as root (installs Debian's docker.io and starts dockerd), or start dockerd yourself.", c.DaemonHost(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Image modes of the example app (examples/app).
const (
	Healthy   = "healthy"
	Unhealthy = "unhealthy"
	Crash     = "crash"
	Slow      = "slow"
)

var (
	imagesOnce sync.Once
	imagesErr  error
	// imagesTag ends every test image's tag: a hash of the example app's
	// source, so that test runs of different checkouts on one Docker
	// engine (worktrees, CI beside a developer) never run each other's
	// builds of the app under one tag.
	imagesTag string
)

// Image returns the reference of a test image of the example app in a mode,
// version "1.0.0" for healthy and "2.0.0" otherwise, plus "healthy-v2"
// (version 2.0.0, healthy). The images are built once per test process.
func Image(t testing.TB, name string) string {
	t.Helper()
	c := Docker(t)
	imagesOnce.Do(func() { imagesErr = buildImages(c) })
	if imagesErr != nil {
		t.Fatalf("building test images: %v", imagesErr)
	}
	return "gantry-test/app:" + name + imagesTag
}

// sourceTag hashes the files the test images are built from.
func sourceTag(root string) (string, error) {
	files, err := filepath.Glob(filepath.Join(root, "examples", "app", "*.go"))
	if err != nil {
		return "", err
	}
	files = append(files, filepath.Join(root, "examples", "Dockerfile"), filepath.Join(root, "go.sum"))
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return "-" + hex.EncodeToString(h.Sum(nil))[:10], nil
}

// RepoRoot finds the module root from the test's working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func buildImages(c *client.Client) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if imagesTag, err = sourceTag(root); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "gantry-testimg")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	builds := []struct{ tag, version, mode string }{
		{Healthy, "1.0.0", Healthy},
		{"healthy-v2", "2.0.0", Healthy},
		{Unhealthy, "2.0.0", Unhealthy},
		{Crash, "2.0.0", Crash},
		{Slow, "2.0.0", Slow},
	}
	for _, b := range builds {
		bin := filepath.Join(tmp, "app-"+b.tag)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", fmt.Sprintf("-s -w -X main.version=%s -X main.mode=%s", b.version, b.mode), "-o", bin, "./examples/app")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build examples/app: %v\n%s", err, out)
		}
		dockerfile, err := os.ReadFile(filepath.Join(root, "examples", "Dockerfile"))
		if err != nil {
			return err
		}
		app, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		if err := BuildImage(c, "gantry-test/app:"+b.tag+imagesTag, map[string][]byte{"Dockerfile": dockerfile, "app": app, "data/": nil}); err != nil {
			return err
		}
	}
	return nil
}

// BuildImage builds ref, labelled io.gantry.test=1, from a build context
// of files (name -> content, "Dockerfile" among them; a name ending in / is
// a directory). Files are 0755: the binaries must run, nothing else cares.
func BuildImage(c *client.Client, ref string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mod := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o755, Size: int64(len(files[n])), ModTime: mod}
		if strings.HasSuffix(n, "/") {
			h.Typeflag = tar.TypeDir
		}
		tw.WriteHeader(h)
		tw.Write(files[n])
	}
	tw.Close()
	resp, err := c.ImageBuild(context.Background(), &buf, build.ImageBuildOptions{
		Tags: []string{ref}, Labels: map[string]string{LabelTest: "1"}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	err = docker.DrainStream(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	return nil
}

var seq struct {
	sync.Mutex
	n int
}

// Project returns a project name unique to this test run, and removes at
// the end of the test every container, network and volume labelled with it.
func Project(t testing.TB, base string) string {
	t.Helper()
	c := Docker(t)
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	name := strings.ToLower(fmt.Sprintf("gt%d-%s-%d", os.Getpid()%100000, base, n))
	t.Cleanup(func() { RemoveProject(c, name) })
	return name
}

// RemoveProject removes everything gantry created for a project:
// containers, networks, volumes, released images and secret files.
func RemoveProject(c *client.Client, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", "io.gantry.project="+project))
	cs, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	for _, ct := range cs {
		c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true})
	}
	ns, _ := c.NetworkList(ctx, network.ListOptions{Filters: f})
	for _, n := range ns {
		c.NetworkRemove(ctx, n.ID)
	}
	vs, _ := c.VolumeList(ctx, volume.ListOptions{Filters: f})
	for _, v := range vs.Volumes {
		c.VolumeRemove(ctx, v.Name, true)
	}
	// The images gantry released for the project, which it labels with the
	// project's name as their title, tagged or not (each build on the engine
	// takes the tag of the one before): after the containers, since the
	// engine keeps an image a container uses.
	ims, _ := c.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "org.opencontainers.image.title="+project))})
	for _, im := range ims {
		c.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
	removeSecretDirs(project)
}

// DerivedImage builds an image of its own (FROM base, plus a label) for a
// test that needs to remove it; it is removed when the test ends.
func DerivedImage(t testing.TB, base, ref string) string {
	t.Helper()
	c := Docker(t)
	dockerfile := []byte("FROM " + base + "\nLABEL io.gantry.test.derived=" + ref + "\n")
	if err := BuildImage(c, ref, map[string][]byte{"Dockerfile": dockerfile}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// By its label, tagged or not (a test may remove the tag while a
		// container uses the image), after the containers that use it:
		// the engine keeps an image a container uses, even when forced.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		ims, _ := c.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "io.gantry.test.derived="+ref))})
		for _, im := range ims {
			cs, _ := c.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("ancestor", im.ID))})
			for _, ct := range cs {
				c.ContainerRemove(ctx, ct.ID, container.RemoveOptions{Force: true})
			}
			c.ImageRemove(ctx, im.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
	return ref
}

// RemoveImage removes an image a test made, with the images only it used.
func RemoveImage(c *client.Client, ref string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
}

// RunImage pulls ref (from a registry on 127.0.0.1, which the engine
// trusts without TLS), runs it to completion in a container labelled
// io.gantry.test=1 and returns what it printed. The container and the
// image are removed when the test ends.
func RunImage(t testing.TB, c *client.Client, ref string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := c.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		t.Fatalf("docker pull %s: %v", ref, err)
	}
	err = docker.DrainStream(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("docker pull %s: %v", ref, err)
	}
	t.Cleanup(func() { RemoveImage(c, ref) })
	created, err := c.ContainerCreate(ctx, &container.Config{Image: ref, Labels: map[string]string{LabelTest: "1"}}, &container.HostConfig{}, nil, nil, "")
	if err != nil {
		t.Fatalf("create a container of %s: %v", ref, err)
	}
	t.Cleanup(func() {
		c.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	waitC, errC := c.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start %s: %v", ref, err)
	}
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			t.Errorf("%s exited with %d", ref, w.StatusCode)
		}
	case err := <-errC:
		t.Fatalf("wait for %s: %v", ref, err)
	}
	logs, err := c.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of %s: %v", ref, err)
	}
	defer logs.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil {
		t.Fatalf("logs of %s: %v", ref, err)
	}
	return out.String()
}
