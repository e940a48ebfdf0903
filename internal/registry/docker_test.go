package registry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	dockerregistry "github.com/docker/docker/api/types/registry"
	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/testenv"
)

// serveTest starts the registry on a free loopback port until the test
// ends and returns its address.
func serveTest(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := Start(context.Background(), ServeOptions{Options: opts, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("registry did not start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("registry shutdown: %v", err)
		}
	})
	return srv.Addr
}

func dockerAuth(t *testing.T, addr, user, pass string) string {
	t.Helper()
	if user == "" {
		return ""
	}
	a, err := dockerregistry.EncodeAuthConfig(dockerregistry.AuthConfig{Username: user, Password: pass, ServerAddress: addr})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func dockerPush(c *dockerclient.Client, ref, auth string) error {
	rc, err := c.ImagePush(context.Background(), ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	return docker.DrainStream(rc)
}

func dockerPull(c *dockerclient.Client, ref, auth string) error {
	rc, err := c.ImagePull(context.Background(), ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer rc.Close()
	return docker.DrainStream(rc)
}

// manifestDigest asks the registry which digest ref's tag holds.
func manifestDigest(t *testing.T, addr, repo, tag, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequest("HEAD", "http://"+addr+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD %s:%s: %s", repo, tag, resp.Status)
	}
	return resp.Header.Get("Docker-Content-Digest")
}

// TestDockerPushPullByDigest pushes an image built FROM scratch with the
// Docker engine to the embedded registry on 127.0.0.1, and pulls it back by
// digest after removing it locally.
func TestDockerPushPullByDigest(t *testing.T) {
	c := testenv.Docker(t)
	src := testenv.Image(t, testenv.Healthy)
	users := usersFile(t, "ci", "ci-password")
	addr := serveTest(t, Options{Users: users})
	repo := "gantry-test/registry-app"
	ref := addr + "/" + repo + ":1.0.0"
	ctx := context.Background()
	if err := c.ImageTag(ctx, src, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })

	// Wrong credentials: the engine is refused.
	if err := dockerPush(c, ref, dockerAuth(t, addr, "ci", "wrong")); err == nil {
		t.Fatal("push with a wrong password succeeded")
	}
	if err := dockerPush(c, ref, dockerAuth(t, addr, "ci", "ci-password")); err != nil {
		t.Fatalf("docker push %s: %v", ref, err)
	}
	dgst := manifestDigest(t, addr, repo, "1.0.0", "ci", "ci-password")
	if !strings.HasPrefix(dgst, "sha256:") {
		t.Fatalf("pushed manifest digest %q", dgst)
	}

	// A second push of the same image moves nothing and is refused nothing:
	// same digest on an immutable tag.
	if err := dockerPush(c, ref, dockerAuth(t, addr, "ci", "ci-password")); err != nil {
		t.Fatalf("second docker push of the same image: %v", err)
	}

	// Remove it locally, pull it back by digest, and check it is the same.
	if _, err := c.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	byDigest := addr + "/" + repo + "@" + dgst
	t.Cleanup(func() { c.ImageRemove(context.Background(), byDigest, image.RemoveOptions{Force: true}) })
	if err := dockerPull(c, byDigest, ""); err == nil {
		t.Fatal("pull without credentials succeeded on a registry without --anonymous-pull")
	}
	if err := dockerPull(c, byDigest, dockerAuth(t, addr, "ci", "ci-password")); err != nil {
		t.Fatalf("docker pull %s: %v", byDigest, err)
	}
	pulled, err := c.ImageInspect(ctx, byDigest)
	if err != nil {
		t.Fatalf("inspect pulled image: %v", err)
	}
	want, err := c.ImageInspect(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.ID != want.ID {
		t.Errorf("pulled image %s, pushed %s", pulled.ID, want.ID)
	}
}

// TestDockerAnonymousPull: with --anonymous-pull the engine pulls without
// credentials, and still cannot push without them.
func TestDockerAnonymousPull(t *testing.T) {
	c := testenv.Docker(t)
	src := testenv.Image(t, testenv.Healthy)
	users := usersFile(t, "ci", "ci-password")
	addr := serveTest(t, Options{Users: users, AnonymousPull: true})
	ref := addr + "/gantry-test/anon:1.0.0"
	ctx := context.Background()
	if err := c.ImageTag(ctx, src, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true}) })
	if err := dockerPush(c, ref, ""); err == nil {
		t.Fatal("anonymous push succeeded")
	}
	if err := dockerPush(c, ref, dockerAuth(t, addr, "ci", "ci-password")); err != nil {
		t.Fatalf("push: %v", err)
	}
	if _, err := c.ImageRemove(ctx, ref, image.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := dockerPull(c, ref, ""); err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
}
