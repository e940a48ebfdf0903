package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/testenv"
)

// imageProject writes a project whose service hello is built from the
// cross-compiled test program, released to a registry at host.
func imageProject(t *testing.T, host, message string) string {
	t.Helper()
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		data, err := os.ReadFile(testenv.StaticBinary(t, arch, message))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hello-"+arch), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`project: shop
registry:
  url: %s
release:
  platforms: [linux/amd64, linux/arm64]
services:
  hello:
    build:
      binaries:
        linux/amd64: ./hello-amd64
        linux/arm64: ./hello-arm64
      cmd: [serve]
environments:
  staging: {}
`, host)
	compose := "services:\n  hello:\n    image: shop/hello\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildAndPush(t *testing.T) {
	host := testenv.DistributionRegistry(t)
	dir := imageProject(t, host, "v1")

	out, errb, code := run(t, dir, "build", "--output", "json")
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, errb)
	}
	var built []image.Built
	if err := json.Unmarshal([]byte(out), &built); err != nil || len(built) != 1 {
		t.Fatalf("build output: %v\n%s", err, out)
	}
	b := built[0]
	if b.Service != "hello" || b.Method != "binaries" || strings.Join(b.Platforms, ",") != "linux/amd64,linux/arm64" {
		t.Fatalf("built: %+v", b)
	}
	if !strings.Contains(errb, "hello: linux/arm64:") {
		t.Errorf("no progress on stderr:\n%s", errb)
	}

	out, errb, code = run(t, dir, "push", "--tag", "1.0.0", "--tag", "latest", "--output", "json")
	if code != 0 {
		t.Fatalf("push: exit %d: %s", code, errb)
	}
	var pushed []image.PushResult
	if err := json.Unmarshal([]byte(out), &pushed); err != nil || len(pushed) != 1 {
		t.Fatalf("push output: %v\n%s", err, out)
	}
	p := pushed[0]
	if p.Repository != host+"/shop/hello" || p.Digest != b.Digest || p.BlobsUploaded != 4 {
		t.Fatalf("pushed: %+v", p)
	}

	// A new build under the same version tag is refused, exit code 2.
	dir2 := imageProject(t, host, "v2")
	if _, errb, code := run(t, dir2, "build"); code != 0 {
		t.Fatalf("build v2: exit %d: %s", code, errb)
	}
	_, errb, code = run(t, dir2, "push", "--tag", "latest", "--tag", "1.0.0")
	if code != ExitUsage || !strings.Contains(errb, "tag "+host+"/shop/hello:1.0.0 is immutable") || !strings.Contains(errb, b.Digest) {
		t.Fatalf("push over 1.0.0: exit %d: %s", code, errb)
	}
	text, errb, code := run(t, dir2, "push", "--tag", "1.1.0", "--tag", "latest")
	if code != 0 || !strings.Contains(text, "hello: pushed "+host+"/shop/hello@sha256:") || !strings.Contains(text, "as 1.1.0, latest") {
		t.Fatalf("push 1.1.0: exit %d: %s\n%s", code, errb, text)
	}
}

func TestBuildAndPushBadInput(t *testing.T) {
	host := testenv.ClosedPort(t)
	dir := imageProject(t, host, "v1")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"build", "nope"}, "no build for nope"},
		{[]string{"build", "--platform", "linux/s390x"}, "no binary for linux/s390x"},
		{[]string{"build", "--platform", "amd64"}, "write it as os/arch"},
		{[]string{"push", "hello", "--tag", "1.0.0"}, "no image of service hello"},
	}
	for _, c := range cases {
		_, errb, code := run(t, dir, c.args...)
		if code != ExitUsage || !strings.Contains(errb, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q: %s", c.args, code, c.want, errb)
		}
	}
	if _, errb, code := run(t, dir, "build"); code != 0 {
		t.Fatalf("build: %s", errb)
	}
	_, errb, code := run(t, dir, "push", "--tag", "bad tag!")
	if code != ExitUsage || !strings.Contains(errb, `tag "bad tag!"`) {
		t.Errorf("bad tag: exit %d: %s", code, errb)
	}
	_, errb, code = run(t, dir, "push", "--tag", "1.0.0")
	if code != ExitError || !strings.Contains(errb, "refused the connection") || !strings.Contains(errb, host) {
		t.Errorf("registry down: exit %d: %s", code, errb)
	}
}
