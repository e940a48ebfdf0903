package image_test

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/testenv"
)

// binariesBuild is a build of the test program for both platforms.
func binariesBuild(t *testing.T, message string) *config.Build {
	t.Helper()
	return &config.Build{
		Binaries: map[string]string{
			"linux/amd64": testenv.StaticBinary(t, "amd64", message),
			"linux/arm64": testenv.StaticBinary(t, "arm64", message),
		},
		Path:   "/usr/local/bin/hello",
		Cmd:    []string{"serve", "--fast"},
		Env:    []string{"MODE=test"},
		User:   "65532",
		Expose: []string{"8080"},
	}
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(image.DefaultDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func build(t *testing.T, s *image.Store, svc, message string) image.Built {
	t.Helper()
	b, err := s.Build(context.Background(), nil, image.BuildRequest{
		Service: svc, Build: binariesBuild(t, message), Labels: map[string]string{"org.opencontainers.image.version": message},
	}, func(l string) { t.Log(l) })
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// digestOf reads what a tag points to in the registry ("" when missing).
func digestOf(t *testing.T, s string, opts ...remote.Option) string {
	t.Helper()
	d, err := remote.Head(ref(t, s), opts...)
	if err != nil {
		var terr interface{ Error() string }
		if errors.As(err, &terr) && strings.Contains(err.Error(), "404") {
			return ""
		}
		t.Fatalf("HEAD %s: %v", s, err)
	}
	return d.Digest.String()
}

func TestBinariesBuildMultiArchIndex(t *testing.T) {
	s := openStore(t)
	b := build(t, s, "hello", "v1")
	if b.Method != image.MethodBinaries || b.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("built %+v, want a binaries build as an OCI index", b)
	}
	if strings.Join(b.Platforms, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("platforms %v", b.Platforms)
	}
	latest, err := s.Latest("hello")
	if err != nil || latest.Digest != b.Digest || latest.Size != b.Size || b.Size == 0 {
		t.Fatalf("Latest = %+v, %v; want %+v", latest, err, b)
	}

	// The same binaries give the same digest: the build is reproducible.
	again := build(t, s, "hello", "v1")
	if again.Digest != b.Digest {
		t.Fatalf("rebuild gave %s, first build %s", again.Digest, b.Digest)
	}

	// Read it back the way a registry client would, from a registry.
	host := testenv.DistributionRegistry(t)
	repo := host + "/test/hello"
	if _, err := s.Push(context.Background(), []image.Target{{Service: "hello", Digest: b.Digest, Repository: repo}}, image.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref(t, repo+"@"+b.Digest))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests, want 2", len(im.Manifests))
	}
	for _, d := range im.Manifests {
		arch := d.Platform.Architecture
		if latest.Manifests["linux/"+arch] != d.Digest.String() {
			t.Errorf("Built.Manifests = %v, the index has %s for %s", latest.Manifests, d.Digest, arch)
		}
		if d.Platform.OS != "linux" || (arch != "amd64" && arch != "arm64") {
			t.Fatalf("index entry platform %v", d.Platform)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.OS != "linux" || cf.Architecture != arch {
			t.Errorf("%s: config says %s/%s", arch, cf.OS, cf.Architecture)
		}
		if strings.Join(c.Entrypoint, " ") != "/usr/local/bin/hello" || strings.Join(c.Cmd, " ") != "serve --fast" ||
			c.User != "65532" || !contains(c.Env, "MODE=test") || c.Labels["org.opencontainers.image.version"] != "v1" {
			t.Errorf("%s: config %+v", arch, c)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("%s: exposed ports %v", arch, c.ExposedPorts)
		}
		ls, err := img.Layers()
		if err != nil || len(ls) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1 on scratch", arch, len(ls), err)
		}
		rc, err := ls[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var bin []byte
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Name == "usr/local/bin/hello" {
				if h.Mode != 0o755 {
					t.Errorf("%s: binary mode %o", arch, h.Mode)
				}
				bin, _ = io.ReadAll(tr)
			}
		}
		rc.Close()
		want, _ := os.ReadFile(testenv.StaticBinary(t, arch, "v1"))
		if len(bin) == 0 || string(bin) != string(want) {
			t.Errorf("%s: the layer does not hold the %s binary (%d bytes, want %d)", arch, arch, len(bin), len(want))
		}
		if m := elfMachine(bin); (arch == "amd64" && m != 62) || (arch == "arm64" && m != 183) {
			t.Errorf("%s: the layer's binary is ELF machine %d", arch, m)
		}
	}
}

func elfMachine(b []byte) uint16 {
	if len(b) < 20 {
		return 0
	}
	return binary.LittleEndian.Uint16(b[18:20])
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestBinariesBuildBadInput(t *testing.T) {
	s := openStore(t)
	amd := testenv.StaticBinary(t, "amd64", "v1")
	cases := []struct {
		name  string
		build *config.Build
		plats []string
		want  string
	}{
		{"wrong arch", &config.Build{Binaries: map[string]string{"linux/arm64": amd}}, nil, "built for EM_X86_64, not arm64"},
		{"platform without binary", &config.Build{Binaries: map[string]string{"linux/amd64": amd}}, []string{"linux/arm64"}, "no binary for linux/arm64"},
		{"missing file", &config.Build{Binaries: map[string]string{"linux/amd64": "nope"}}, nil, "nope: no such file"},
		{"bad platform", &config.Build{Binaries: map[string]string{"linux/amd64": amd}}, []string{"amd64"}, "write it as os/arch"},
		{"relative path", &config.Build{Binaries: map[string]string{"linux/amd64": amd}, Path: "bin/x"}, nil, "absolute path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Build(context.Background(), nil, image.BuildRequest{Service: "x", Dir: t.TempDir(), Build: c.build, Platforms: c.plats}, nil)
			if !errors.Is(err, image.ErrInput) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInput with %q", err, c.want)
			}
		})
	}
	if bs, _ := s.Builds(""); len(bs) != 0 {
		t.Fatalf("failed builds left %d images in the store", len(bs))
	}
}

func TestPushSkipsExistingAndMountsAcrossRepositories(t *testing.T) {
	s := openStore(t)
	b := build(t, s, "hello", "v1")
	host := testenv.DistributionRegistry(t)
	ctx := context.Background()
	repo := host + "/shop/hello"

	var events []image.PushEvent
	opts := image.PushOptions{Progress: func(e image.PushEvent) { events = append(events, e) }}
	rs, err := s.Push(ctx, []image.Target{{Service: "hello", Digest: b.Digest, Repository: repo, Tags: []string{"1.0.0", "latest"}}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	// 2 layers + 2 configs.
	if r.BlobsUploaded != 4 || r.BlobsSkipped != 0 || r.BytesUploaded < 1000 {
		t.Fatalf("first push: %+v", r)
	}
	if len(events) == 0 {
		t.Fatal("no progress events")
	}
	for _, tag := range []string{"1.0.0", "latest"} {
		if got := digestOf(t, repo+":"+tag); got != b.Digest {
			t.Fatalf("%s:%s = %s, want %s", repo, tag, got, b.Digest)
		}
	}

	// A second push sends no blob: the registry has them all.
	rs, err = s.Push(ctx, []image.Target{{Service: "hello", Digest: b.Digest, Repository: repo, Tags: []string{"1.0.0", "latest"}}}, image.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; r.BlobsUploaded != 0 || r.BytesUploaded != 0 || r.BlobsSkipped == 0 {
		t.Fatalf("second push: %+v, want nothing uploaded", r)
	}

	// Pushing the stored image to another repository of the same registry
	// mounts every blob from the first.
	rs, err = s.Push(ctx, []image.Target{{Service: "hello", Digest: b.Digest, Repository: host + "/other/hello", Tags: []string{"x"}}}, image.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := rs[0]; r.BlobsUploaded != 0 || r.BytesUploaded != 0 || r.BlobsMounted != 4 {
		t.Fatalf("push to another repository: %+v, want 4 blobs mounted and none uploaded", r)
	}

	// Copy (promotion) sends manifests only.
	cr, err := image.Copy(ctx, repo+"@"+b.Digest, host+"/prod/hello", []string{"1.0.0"}, image.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cr.BytesUploaded != 0 || cr.BlobsUploaded != 0 || cr.BlobsMounted != 4 || cr.Digest != b.Digest {
		t.Fatalf("copy: %+v, want 4 blobs mounted, no bytes uploaded", cr)
	}
	if got := digestOf(t, host+"/prod/hello:1.0.0"); got != b.Digest {
		t.Fatalf("copied tag = %s, want %s", got, b.Digest)
	}
}

func TestImmutableTagIsNeverMoved(t *testing.T) {
	s := openStore(t)
	v1b := build(t, s, "hello", "v1")
	v2b := build(t, s, "hello", "v2")
	host := testenv.DistributionRegistry(t)
	ctx := context.Background()
	repo := host + "/shop/hello"
	reg := config.Registry{ImmutableTags: config.DefaultImmutableTags}
	opts := image.PushOptionsFor(reg)

	if _, err := s.Push(ctx, []image.Target{{Service: "hello", Digest: v1b.Digest, Repository: repo, Tags: []string{"1.0.0", "1.0", "latest"}}}, opts); err != nil {
		t.Fatal(err)
	}
	// The same digest under the same version tag is fine: nothing moves.
	if _, err := s.Push(ctx, []image.Target{{Service: "hello", Digest: v1b.Digest, Repository: repo, Tags: []string{"1.0.0", "latest"}}}, opts); err != nil {
		t.Fatalf("re-pushing the same digest: %v", err)
	}

	// Another image under 1.0.0 is refused before any tag moves, floating
	// ones included, and in every target.
	other := host + "/shop/other"
	_, err := s.Push(ctx, []image.Target{
		{Service: "other", Digest: v2b.Digest, Repository: other, Tags: []string{"latest"}},
		{Service: "hello", Digest: v2b.Digest, Repository: repo, Tags: []string{"latest", "1.0", "1.0.0"}},
	}, opts)
	var ie *image.ImmutableTagError
	if !errors.As(err, &ie) || ie.Tag != "1.0.0" || ie.Have != v1b.Digest || ie.Want != v2b.Digest {
		t.Fatalf("err = %v, want an ImmutableTagError for 1.0.0", err)
	}
	for _, want := range []string{"1.0.0", v1b.Digest, "release a new version", "nothing was tagged"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
	for _, tag := range []string{"1.0.0", "1.0", "latest"} {
		if got := digestOf(t, repo+":"+tag); got != v1b.Digest {
			t.Errorf("%s moved to %s", tag, got)
		}
	}
	if got := digestOf(t, other+":latest"); got != "" {
		t.Errorf("the other target was tagged (%s) although the push was refused", got)
	}

	// A new version moves the floating tags.
	if _, err := s.Push(ctx, []image.Target{{Service: "hello", Digest: v2b.Digest, Repository: repo, Tags: []string{"1.1.0", "1.1", "1", "latest"}}}, opts); err != nil {
		t.Fatal(err)
	}
	if got := digestOf(t, repo+":latest"); got != v2b.Digest {
		t.Errorf("latest = %s, want the new %s", got, v2b.Digest)
	}
	if got := digestOf(t, repo+":1.0.0"); got != v1b.Digest {
		t.Errorf("1.0.0 = %s, want the old %s", got, v1b.Digest)
	}

	// Copy follows the same rule.
	_, err = image.Copy(ctx, repo+"@"+v2b.Digest, repo, []string{"1.0.0"}, opts)
	if !errors.As(err, &ie) {
		t.Fatalf("copy over 1.0.0: %v, want an ImmutableTagError", err)
	}
}

func TestCredentials(t *testing.T) {
	s := openStore(t)
	b := build(t, s, "hello", "v1")
	host := testenv.DistributionRegistryAuth(t, "ci", "s3cret")
	ctx := context.Background()
	repo := host + "/shop/hello"
	target := []image.Target{{Service: "hello", Digest: b.Digest, Repository: repo, Tags: []string{"1.0.0"}}}
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials from this machine's Docker config

	_, err := s.Push(ctx, target, image.PushOptions{Username: "ci", Password: "wrong"})
	if !errors.Is(err, image.ErrUnauthorized) || !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), `user "ci"`) ||
		!strings.Contains(err.Error(), "registry.password_env") {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = s.Push(ctx, target, image.PushOptions{})
	if !errors.Is(err, image.ErrUnauthorized) || !strings.Contains(err.Error(), "found none") {
		t.Fatalf("no credentials: %v", err)
	}

	t.Setenv("GANTRY_TEST_REGISTRY_PASSWORD", "s3cret")
	opts := image.PushOptionsFor(config.Registry{Username: "ci", PasswordEnv: "GANTRY_TEST_REGISTRY_PASSWORD"})
	if _, err := s.Push(ctx, target, opts); err != nil {
		t.Fatal(err)
	}
	u, p, err := image.Credentials(repo, opts)
	if err != nil || u != "ci" || p != "s3cret" {
		t.Fatalf("Credentials = %q, %q, %v", u, p, err)
	}
	got := digestOf(t, repo+":1.0.0", remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	if got != b.Digest {
		t.Fatalf("pushed tag = %s", got)
	}
}

func TestCredentialsFromGitHubToken(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("GITHUB_TOKEN", "ghs_test")
	t.Setenv("GITHUB_ACTOR", "octo")
	u, p, err := image.Credentials("ghcr.io/acme/web", image.PushOptions{})
	if err != nil || u != "octo" || p != "ghs_test" {
		t.Fatalf("ghcr.io: %q %q %v", u, p, err)
	}
	u, p, err = image.Credentials("registry.example.com/acme/web", image.PushOptions{})
	if err != nil || u != "" || p != "" {
		t.Fatalf("GITHUB_TOKEN must go to ghcr.io only: %q %q %v", u, p, err)
	}
}

func TestUnreachableRegistry(t *testing.T) {
	s := openStore(t)
	b := build(t, s, "hello", "v1")
	ctx := context.Background()

	// Nothing listens on the port.
	closed := testenv.ClosedPort(t)
	_, err := s.Push(ctx, []image.Target{{Service: "hello", Digest: b.Digest, Repository: closed + "/shop/hello", Tags: []string{"1.0.0"}}}, image.PushOptionsFor(config.Registry{ImmutableTags: config.DefaultImmutableTags}))
	if !errors.Is(err, image.ErrUnreachable) || !strings.Contains(err.Error(), closed) || !strings.Contains(err.Error(), "refused the connection") {
		t.Fatalf("closed port: %v", err)
	}

	// A host that does not resolve. The resolver asked is a DNS server of
	// the test's own on 127.0.0.1, which knows no name: the test sends no
	// traffic off the machine.
	dns := nxdomainServer(t)
	dialer := &net.Dialer{Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", dns)
	}}}
	tr := &http.Transport{DialContext: dialer.DialContext}
	_, err = s.Push(ctx, []image.Target{{Service: "hello", Digest: b.Digest, Repository: "registry.gantry-test.invalid/shop/hello"}}, image.PushOptions{Transport: tr})
	if !errors.Is(err, image.ErrUnreachable) || !strings.Contains(err.Error(), "registry.gantry-test.invalid") || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("unknown host: %v", err)
	}
}

// nxdomainServer answers every DNS query with NXDOMAIN, on 127.0.0.1.
func nxdomainServer(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			resp := append([]byte(nil), buf[:n]...)
			resp[2] = 0x81 | (buf[2] & 0x01) // response, recursion desired as asked
			resp[3] = 0x83                   // recursion available, NXDOMAIN
			// no answer, authority or additional records
			for i := 6; i < 12; i++ {
				resp[i] = 0
			}
			pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().String()
}

func TestRequests(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yaml", `services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile.prod
      target: runtime
      args: { GO_VERSION: "1.26" }
  api:
    build: ./api
    image: shop/api
  db:
    image: postgres
  worker:
    image: shop/worker
`)
	write("web/Dockerfile.prod", "FROM scratch\n")
	write("api/Dockerfile", "FROM scratch\n")
	write("gantry.yaml", `project: shop
compose: compose.yaml
services:
  worker:
    build:
      binaries: { linux/amd64: ./bin/worker }
environments:
  staging: {}
`)
	f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reqs, err := image.Requests(ctx, f, "", nil, []string{"linux/amd64"}, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.Service)
		if r.Dir != dir || r.Platforms[0] != "linux/amd64" || r.Labels["a"] != "b" {
			t.Errorf("%s: %+v", r.Service, r)
		}
	}
	sort.Strings(got)
	if strings.Join(got, ",") != "api,web,worker" {
		t.Fatalf("services with builds: %v", got)
	}
	web := reqs[1].Build
	if web.Context != filepath.Join(dir, "web") || web.Dockerfile != filepath.Join(dir, "web", "Dockerfile.prod") || web.Target != "runtime" || web.Args["GO_VERSION"] != "1.26" {
		t.Errorf("web build from compose: %+v", web)
	}
	if !reqs[2].Build.Daemonless() {
		t.Errorf("worker: gantry.yaml's build must win: %+v", reqs[2].Build)
	}

	_, err = image.Requests(ctx, f, "", []string{"web", "db", "cache"}, nil, nil)
	if !errors.Is(err, image.ErrInput) || !strings.Contains(err.Error(), "no build for db, cache") {
		t.Fatalf("services without build: %v", err)
	}
}

func TestBuildxMissing(t *testing.T) {
	if v, err := image.Buildx(context.Background()); err == nil {
		t.Logf("docker buildx is installed here (%s): the missing-buildx error is not reachable", v)
		return
	}
	// Debian 12 packages no buildx plugin, so on this project's machines a
	// multi-platform Dockerfile build must say so and what to do instead.
	c := testenv.Docker(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644)
	s := openStore(t)
	_, err := s.Build(context.Background(), c, image.BuildRequest{
		Service: "web", Dir: dir, Build: &config.Build{Context: "."}, Platforms: []string{"linux/amd64", "linux/arm64"},
	}, nil)
	if !errors.Is(err, image.ErrBuildxMissing) {
		t.Fatalf("err = %v, want ErrBuildxMissing", err)
	}
	for _, want := range []string{"docker-buildx", "Debian 12 has none", "services.web.build.binaries"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message does not say %q: %v", want, err)
		}
	}
}

// The Docker engine pulls by digest from a registry on 127.0.0.1 (which it
// trusts without TLS) what gantry built with each method, and runs it.
func TestEnginePullsAndRunsByDigest(t *testing.T) {
	c := testenv.Docker(t)
	ctx := context.Background()
	s := openStore(t)
	host := testenv.DistributionRegistry(t)
	arch := runtime.GOARCH

	// An engine build of a FROM scratch Dockerfile.
	dir := t.TempDir()
	bin, err := os.ReadFile(testenv.StaticBinary(t, arch, "engine"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "hello"), bin, 0o755)
	os.WriteFile(filepath.Join(dir, "junk.log"), []byte("ignored"), 0o644)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.log\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY hello /hello\nENV MODE=engine\nUSER 65532\nENTRYPOINT [\"/hello\"]\nCMD [\"from-dockerfile\"]\n"), 0o644)
	svc := "gt-engine-" + strings.ReplaceAll(t.Name(), "/", "-")
	svc = strings.ToLower(svc)
	t.Cleanup(func() { testenv.RemoveImage(c, image.EngineTag(svc)) })
	eb, err := s.Build(ctx, c, image.BuildRequest{Service: svc, Dir: dir, Build: &config.Build{Context: "."}, Labels: map[string]string{testenv.LabelTest: "1"}},
		func(l string) { t.Log(l) })
	if err != nil {
		t.Fatal(err)
	}
	if eb.Method != image.MethodEngine || strings.Join(eb.Platforms, ",") != "linux/"+arch || eb.Manifests["linux/"+arch] != eb.Digest {
		t.Fatalf("engine build: %+v", eb)
	}

	bb := build(t, s, "hello", "binaries")
	cases := []struct {
		name, digest, want string
	}{
		{"engine", eb.Digest, "engine from linux/" + arch + " args=[from-dockerfile] mode=engine uid=65532"},
		{"binaries", bb.Digest, "binaries from linux/" + arch + " args=[serve --fast] mode=test uid=65532"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := host + "/run/" + tc.name
			if _, err := s.Push(ctx, []image.Target{{Digest: tc.digest, Repository: repo, Tags: []string{"1.0.0"}}}, image.PushOptions{}); err != nil {
				t.Fatal(err)
			}
			out := testenv.RunImage(t, c, repo+"@"+tc.digest)
			if !strings.Contains(out, tc.want) {
				t.Fatalf("container printed %q, want %q", out, tc.want)
			}
		})
	}
}

func TestStoreKeepsRecentBuilds(t *testing.T) {
	s := openStore(t)
	amd := testenv.StaticBinary(t, "amd64", "v1")
	var digests []string
	for i := 0; i < 7; i++ {
		b, err := s.Build(context.Background(), nil, image.BuildRequest{
			Service: "hello", Build: &config.Build{Binaries: map[string]string{"linux/amd64": amd}},
			Labels: map[string]string{"n": string(rune('a' + i))},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, b.Digest)
		time.Sleep(time.Millisecond)
	}
	bs, err := s.Builds("hello")
	if err != nil || len(bs) != 5 || bs[4].Digest != digests[6] || bs[0].Digest != digests[2] {
		t.Fatalf("builds kept: %d (%v)", len(bs), err)
	}
	if _, err := s.Get(digests[0]); !errors.Is(err, image.ErrNotBuilt) {
		t.Fatalf("the oldest build is still there: %v", err)
	}
	if _, err := s.Latest("nope"); !errors.Is(err, image.ErrNotBuilt) || !strings.Contains(err.Error(), "gantry build nope") {
		t.Fatalf("Latest of an unbuilt service: %v", err)
	}
}

// A binaries build on a base image from a registry: each platform's layer
// goes on the base's image for that platform.
func TestBinariesBuildOnABase(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	host := testenv.DistributionRegistry(t)
	baseBuild := binariesBuild(t, "base")
	baseBuild.Path, baseBuild.Env, baseBuild.Cmd = "/opt/base/hello", []string{"FROM_BASE=1", "MODE=base"}, nil
	base, err := s.Build(ctx, nil, image.BuildRequest{Service: "base", Build: baseBuild}, nil)
	if err != nil {
		t.Fatal(err)
	}
	baseRepo := host + "/lib/base"
	if _, err := s.Push(ctx, []image.Target{{Digest: base.Digest, Repository: baseRepo, Tags: []string{"1"}}}, image.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	appBuild := binariesBuild(t, "app")
	appBuild.Base = baseRepo + ":1"
	app, err := s.Build(ctx, nil, image.BuildRequest{Service: "app", Build: appBuild}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.Push(ctx, []image.Target{{Digest: app.Digest, Repository: host + "/shop/app"}}, image.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The base's layers are mounted from its repository: only the app's
	// two layers and two configs go up.
	if rs[0].BlobsMounted != 2 || rs[0].BlobsUploaded != 4 {
		t.Errorf("push on a base: %+v, want the base's 2 layers mounted", rs[0])
	}
	idx, err := remote.Index(ref(t, host+"/shop/app@"+app.Digest))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		cf, _ := img.ConfigFile()
		if len(ls) != 2 || cf.Architecture != d.Platform.Architecture {
			t.Errorf("%s: %d layers, config arch %s", d.Platform, len(ls), cf.Architecture)
		}
		if !contains(cf.Config.Env, "FROM_BASE=1") || !contains(cf.Config.Env, "MODE=test") || contains(cf.Config.Env, "MODE=base") {
			t.Errorf("%s: env %v: the base's env stays, the build's wins", d.Platform, cf.Config.Env)
		}
		if strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/hello" {
			t.Errorf("%s: entrypoint %v", d.Platform, cf.Config.Entrypoint)
		}
	}
}
