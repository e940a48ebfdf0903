package testenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/internal/docker"
)

// Modes of the secrets test app (internal/testenv/secretapp).
const (
	SecretAppHealthy   = "healthy"
	SecretAppUnhealthy = "unhealthy"
)

var secretApp struct {
	sync.Mutex
	built map[string]bool
}

// SecretApp returns the image of the secrets test app in a mode: FROM
// scratch, USER 65532:65532, printing its secrets to its log at start and
// reporting what it sees of a secret file at /stat?path=... (see
// secretapp/main.go). Built once per test process and mode.
func SecretApp(t testing.TB, mode string) string {
	t.Helper()
	c := Docker(t)
	ref := "gantry-test/secretapp:" + mode
	secretApp.Lock()
	defer secretApp.Unlock()
	if secretApp.built[ref] {
		return ref
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "secretapp")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.mode="+mode, "-o", bin, "./internal/testenv/secretapp")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build internal/testenv/secretapp: %v\n%s", err, out)
	}
	app, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := []byte("FROM scratch\nCOPY secretapp /secretapp\nUSER 65532:65532\nEXPOSE 8080\n" +
		"HEALTHCHECK --interval=1s --timeout=3s --retries=3 CMD [\"/secretapp\", \"check\"]\nENTRYPOINT [\"/secretapp\"]\n")
	if err := BuildImage(c, ref, map[string][]byte{"Dockerfile": dockerfile, "secretapp": app}); err != nil {
		t.Fatal(err)
	}
	if secretApp.built == nil {
		secretApp.built = map[string]bool{}
	}
	secretApp.built[ref] = true
	return ref
}

// SecretDirs lists the directories of secret files gantry keeps for a
// project's containers on this machine, as env/container.
func SecretDirs(t testing.TB, project string) []string {
	t.Helper()
	root, err := docker.SecretsRoot(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gantry never wrote a secret on this machine
	}
	if err != nil {
		t.Fatalf("secrets root: %v", err)
	}
	dirs, _ := filepath.Glob(filepath.Join(root, project, "*", "*"))
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		out = append(out, fmt.Sprintf("%s/%s", filepath.Base(filepath.Dir(d)), filepath.Base(d)))
	}
	return out
}

// removeSecretDirs removes a project's secret files, for a test that
// removed its containers behind gantry's back.
func removeSecretDirs(project string) {
	if root, err := docker.SecretsRoot(false); err == nil && project != "" && filepath.Base(project) == project {
		os.RemoveAll(filepath.Join(root, project))
	}
}
