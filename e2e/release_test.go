package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// The released project: the example app built daemonless from binaries for
// two platforms, released to REGISTRY and deployed by digest.
const releaseGantryYAML = `project: PROJECT
compose: compose.yaml
registry:
  url: REGADDR
  username: ci
  password_env: E2E_REGISTRY_PASSWORD
IMMUTABLE
release:
  platforms: [linux/amd64, linux/arm64]
services:
  web:
    build:
      binaries:
        linux/amd64: bin/app-linux-amd64
        linux/arm64: bin/app-linux-arm64
      path: /app
      user: "65532:65532"
environments:
  staging:
    health:
      window: 1m
      min_healthy: 1s
`

const releaseComposeYAML = `services:
  web:
    image: REGADDR/PROJECT/web
    ports: ["127.0.0.1:PORT:8080"]
    healthcheck:
      test: ["CMD", "/app", "check"]
      interval: 1s
      timeout: 3s
      retries: 2
`

const registryPassword = "e2e-s3cret"

// releaseOut is the part of `gantry release --output json` the tests read.
type releaseOut struct {
	Version string   `json:"version"`
	GitTag  string   `json:"git_tag"`
	Commit  string   `json:"commit"`
	Tags    []string `json:"tags"`
	Images  map[string]struct {
		Repository    string   `json:"repository"`
		Digest        string   `json:"digest"`
		Platforms     []string `json:"platforms"`
		BlobsUploaded int      `json:"blobs_uploaded"`
	} `json:"images"`
	TagCreated bool `json:"git_tag_created"`
}

// releaseProject is a git repository holding a gantry project that
// releases to a registry at addr.
type releaseProject struct {
	*project
	registry string
}

// newReleaseProject writes the project with registry.url = addr; immutable
// is gantry.yaml's registry.immutable_tags line ("" for the default).
func newReleaseProject(t *testing.T, addr, immutable string) *releaseProject {
	t.Helper()
	r := strings.NewReplacer("REGADDR", addr, "IMMUTABLE", immutable)
	p := newProject(t, "rel", r.Replace(releaseGantryYAML), r.Replace(releaseComposeYAML))
	p.env = append(p.env, "E2E_REGISTRY_PASSWORD="+registryPassword, "GITHUB_REF=", "GITHUB_HEAD_REF=", "GITHUB_ACTIONS=",
		"GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	p.write(".gitignore", "bin/\n.state/\n")
	rp := &releaseProject{project: p, registry: addr}
	rp.git("init", "-q", "-b", "main")
	return rp
}

func (p *releaseProject) git(args ...string) string {
	p.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit commits every change with msg.
func (p *releaseProject) commit(msg string) {
	p.t.Helper()
	p.git("add", "-A")
	p.git("commit", "-q", "--allow-empty", "-m", msg)
}

// binaries cross-compiles examples/app for linux/amd64 and linux/arm64
// into bin/, answering version on /version.
func (p *releaseProject) binaries(version string) {
	p.t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version="+version,
			"-o", filepath.Join(p.dir, "bin", "app-linux-"+arch), "./examples/app")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			p.t.Fatalf("cross-compile examples/app for linux/%s: %v\n%s", arch, err, out)
		}
	}
}

func (p *releaseProject) release(wantCode int, args ...string) (releaseOut, result) {
	p.t.Helper()
	r := p.run(append([]string{"release", "--output", "json"}, args...)...)
	if r.code != wantCode {
		p.t.Fatalf("gantry release %v: want exit %d, got %s", args, wantCode, r)
	}
	var out releaseOut
	if wantCode == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			p.t.Fatalf("gantry release output: %v\n%s", err, r)
		}
	}
	return out, r
}

func (p *releaseProject) releases() []store.Release {
	p.t.Helper()
	r := p.run("releases", "--output", "json")
	if r.code != 0 {
		p.t.Fatalf("gantry releases: %s", r)
	}
	var rs []store.Release
	if err := json.Unmarshal([]byte(r.stdout), &rs); err != nil {
		p.t.Fatalf("gantry releases output: %v\n%s", err, r)
	}
	return rs
}

// manifest GETs repository:reference from the registry with the test
// user's credentials: the status, the digest and the body.
func (p *releaseProject) manifest(reference string) (int, string, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v2/%s/web/manifests/%s", p.registry, p.name, reference), nil)
	if err != nil {
		p.t.Fatal(err)
	}
	req.SetBasicAuth("ci", registryPassword)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), body
}

// startRegistry runs gantry's embedded registry in the test process on a
// free 127.0.0.1 port, with the user ci, and returns its address.
func startRegistry(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if _, err := registry.AddUser(users, "ci", []byte(registryPassword)); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(context.Background(), registry.Options{Root: filepath.Join(dir, "root"), Users: users,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	return ln.Addr().String()
}

// TestReleaseAndDeployByDigest is the whole path: a feat commit released
// (version, tags, a two-platform index pushed, recorded, git tag), then
// deployed by digest from the registry, with its credentials.
func TestReleaseAndDeployByDigest(t *testing.T) {
	p := newReleaseProject(t, startRegistry(t), "")
	p.binaries("0.1.0")
	p.commit("feat: the first feature")
	head := p.git("rev-parse", "HEAD")

	out, r := p.release(0)
	if out.Version != "0.1.0" || out.Commit != head || !out.TagCreated {
		t.Fatalf("release: want 0.1.0 of %s with a git tag, got %+v\n%s", head, out, r)
	}
	for _, want := range []string{"0.1.0", "0.1", "latest", "main", "sha-" + head[:7]} {
		if !slices.Contains(out.Tags, want) {
			t.Errorf("release tags %v: %s missing", out.Tags, want)
		}
	}
	web := out.Images["web"]
	if web.Repository != p.registry+"/"+p.name+"/web" || !strings.HasPrefix(web.Digest, "sha256:") ||
		!slices.Equal(web.Platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("release image: %+v", web)
	}
	if typ := p.git("cat-file", "-t", "v0.1.0"); typ != "tag" {
		t.Errorf("git tag v0.1.0 is a %s, want an annotated tag", typ)
	}

	// The registry holds the index under every tag, with both platforms.
	for _, tag := range out.Tags {
		code, digest, _ := p.manifest(tag)
		if code != http.StatusOK || digest != web.Digest {
			t.Errorf("registry tag %s: status %d digest %s, want 200 %s", tag, code, digest, web.Digest)
		}
	}
	_, _, body := p.manifest(web.Digest)
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &index); err != nil || len(index.Manifests) != 2 {
		t.Fatalf("index %s: %v\n%s", web.Digest, err, body)
	}

	// The record: released, with each platform's manifest digest.
	rs := p.releases()
	if len(rs) != 1 || rs[0].State != store.ReleaseReleased || rs[0].Commit != head {
		t.Fatalf("releases: %+v", rs)
	}
	rec := rs[0].Images["web"]
	for _, m := range index.Manifests {
		plat := m.Platform.OS + "/" + m.Platform.Architecture
		if rec.Platforms[plat] != m.Digest {
			t.Errorf("recorded %s manifest %q, registry index says %s", plat, rec.Platforms[plat], m.Digest)
		}
	}

	// Deployed by digest: the engine pulls from the registry with
	// gantry.yaml's credentials, and runs exactly the released bytes.
	res := p.deploy(0, "staging", "--release", "0.1.0")
	if got := res.Services[0].Image; got != web.Repository+"@"+web.Digest {
		t.Errorf("deployed image %s, want %s@%s", got, web.Repository, web.Digest)
	}
	if v := p.version(); v != "0.1.0" {
		t.Errorf("/version answers %q, want 0.1.0", v)
	}

	// The same version again is refused, and so is a dirty work tree.
	if _, r := p.release(2); !strings.Contains(r.stderr, "made already") {
		t.Errorf("second release of 0.1.0: %s", r)
	}
	p.commit("fix: a fix")
	p.write("compose.yaml", strings.ReplaceAll(releaseComposeYAML, "REGADDR", p.registry)+"# edited\n")
	_, r = p.release(2)
	if !strings.Contains(r.stderr, "compose.yaml") || !strings.Contains(r.stderr, "--allow-dirty") {
		t.Errorf("dirty release: want compose.yaml and --allow-dirty named, got %s", r)
	}
	if n := len(p.releases()); n != 1 {
		t.Errorf("a refused release was recorded: %d releases", n)
	}
	if code, _, _ := p.manifest("0.1.1"); code != http.StatusNotFound {
		t.Errorf("a refused release pushed tag 0.1.1 (status %d)", code)
	}
}

// TestReleaseNeverMovesAVersionTag: a version tag that holds other bytes
// is refused before any tag moves (gantry's check), and, with gantry's
// check switched off, by the embedded registry itself. Either way the
// release is recorded as failed and no git tag is made.
func TestReleaseNeverMovesAVersionTag(t *testing.T) {
	addr := startRegistry(t)
	p := newReleaseProject(t, addr, "")
	p.commit("feat: the first feature")

	// Someone pushed other bytes as 0.1.0 already.
	p.binaries("impostor")
	if r := p.run("build"); r.code != 0 {
		t.Fatalf("gantry build: %s", r)
	}
	if r := p.run("push", "web", "--tag", "0.1.0"); r.code != 0 {
		t.Fatalf("gantry push --tag 0.1.0: %s", r)
	}
	_, held, _ := p.manifest("0.1.0")

	p.binaries("0.1.0")
	_, r := p.release(1)
	if !strings.Contains(r.stderr, "0.1.0 is immutable") || !strings.Contains(r.stderr, held) {
		t.Errorf("want the tag and the digest it holds named, got %s", r)
	}
	check := func(stage string) {
		t.Helper()
		if _, now, _ := p.manifest("0.1.0"); now != held {
			t.Errorf("%s: tag 0.1.0 moved from %s to %s", stage, held, now)
		}
		if code, _, _ := p.manifest("latest"); code != http.StatusNotFound {
			t.Errorf("%s: the floating tag latest was pushed (status %d)", stage, code)
		}
		if tags := p.git("tag", "--list"); tags != "" {
			t.Errorf("%s: git tags %q made by a failed release", stage, tags)
		}
		rs := p.releases()
		if len(rs) != 1 || rs[0].State != store.ReleaseFailed || !strings.Contains(rs[0].Reason, "immutable") {
			t.Errorf("%s: want one failed release naming the immutable tag, got %+v", stage, rs)
		}
	}
	check("client side")

	// gantry.yaml that calls no tag immutable: the registry refuses.
	p.write("gantry.yaml", strings.NewReplacer("REGADDR", addr, "IMMUTABLE", "  immutable_tags: ['^never$']").Replace(releaseGantryYAML))
	p.commit("chore: no immutable tags on the client")
	_, r = p.release(1)
	if !strings.Contains(r.stderr, "(409 Conflict): DENIED: tag 0.1.0 is immutable") || strings.Contains(r.stderr, "map[") {
		t.Errorf("server side: want the registry's refusal, got %s", r)
	}
	check("server side")
}

// TestReleaseRegistryErrors: wrong credentials, an unknown registry host
// and a commit with nothing to release each stop with a message that says
// what to do.
func TestReleaseRegistryErrors(t *testing.T) {
	addr := startRegistry(t)

	t.Run("wrong credentials", func(t *testing.T) {
		p := newReleaseProject(t, addr, "")
		p.env = append(p.env, "E2E_REGISTRY_PASSWORD=wrong")
		p.binaries("0.1.0")
		p.commit("feat: one")
		_, r := p.release(1)
		if !strings.Contains(r.stderr, addr) || !strings.Contains(strings.ToLower(r.stderr), "credentials") {
			t.Errorf("want the registry and its credentials named, got %s", r)
		}
		if rs := p.releases(); len(rs) != 1 || rs[0].State != store.ReleaseFailed {
			t.Errorf("want one failed release, got %+v", rs)
		}
	})
	t.Run("unknown host", func(t *testing.T) {
		p := newReleaseProject(t, "registry.invalid:5000", "")
		p.binaries("0.1.0")
		p.commit("feat: one")
		_, r := p.release(1)
		if !strings.Contains(r.stderr, "registry.invalid") {
			t.Errorf("want the unknown host named, got %s", r)
		}
	})
	t.Run("nothing to release", func(t *testing.T) {
		p := newReleaseProject(t, addr, "")
		p.commit("chore: tidy up")
		_, r := p.release(2)
		if !strings.Contains(r.stderr, "nothing to release") {
			t.Errorf("want nothing to release, got %s", r)
		}
	})
}
