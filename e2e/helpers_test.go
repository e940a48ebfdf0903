package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/testenv"
)

var gantryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gantry-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gantryBin = filepath.Join(dir, "gantry")
	cmd := exec.Command("go", "build", "-o", gantryBin, "./cmd/gantry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building gantry: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// project is one test's gantry project: a directory with gantry.yaml and a
// compose file, a state directory, and the Docker objects labelled with its
// unique name (removed when the test ends).
type project struct {
	t     *testing.T
	name  string
	dir   string
	state string
	port  int
	c     *client.Client
	env   []string
	// notify is a notify section for gantry.yaml (analysis tests).
	notify string
}

// newProject writes gantry.yaml and compose.yaml from templates in which
// PROJECT, PORT and IMG_<tag> (IMG_healthy, IMG_unhealthy, ...) are
// replaced.
func newProject(t *testing.T, base, gantryYAML, composeYAML string) *project {
	t.Helper()
	p := &project{t: t, c: testenv.Docker(t), name: testenv.Project(t, base), dir: t.TempDir(), port: testenv.FreePort(t)}
	p.state = filepath.Join(p.dir, ".state")
	p.write("gantry.yaml", gantryYAML)
	p.write("compose.yaml", composeYAML)
	return p
}

func (p *project) expand(s string) string {
	r := []string{"PROJECT", p.name, "PORT", fmt.Sprint(p.port)}
	for _, tag := range []string{"healthy-v2", testenv.Healthy, testenv.Unhealthy, testenv.Crash, testenv.Slow} {
		if strings.Contains(s, "IMG_"+tag) {
			r = append(r, "IMG_"+tag, testenv.Image(p.t, tag))
		}
	}
	return strings.NewReplacer(r...).Replace(s)
}

func (p *project) write(name, content string) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.dir, name), []byte(p.expand(content)), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func (p *project) command(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	args = append([]string{"--state-dir", p.state}, args...)
	for i := range args {
		args[i] = p.expand(args[i])
	}
	cmd := exec.CommandContext(ctx, gantryBin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return cmd, &out, &errb
}

// run runs gantry in the project directory, bounded to 3 minutes.
func (p *project) run(args ...string) result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd, out, errb := p.command(ctx, args...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("gantry %v: %v", args, err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// start runs gantry in the background; the process is killed at cleanup.
func (p *project) start(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	p.t.Helper()
	cmd, out, errb := p.command(context.Background(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if p.t.Failed() {
			p.t.Logf("gantry %s printed:\n%s%s", strings.Join(args, " "), out, errb)
		}
	})
	return cmd, out, errb
}

// deploy runs `gantry deploy ENV --output json` and decodes the result.
func (p *project) deploy(wantCode int, args ...string) deploy.Result {
	p.t.Helper()
	r := p.run(append([]string{"deploy", "--output", "json"}, args...)...)
	if r.code != wantCode {
		p.t.Fatalf("gantry deploy %v: want exit %d, got %s", args, wantCode, r)
	}
	var res deploy.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		p.t.Fatalf("gantry deploy %v: output is not a result: %v\n%s", args, err, r)
	}
	return res
}

func (p *project) history(env string) []deploy.HistoryEntry {
	p.t.Helper()
	r := p.run("history", env, "--output", "json")
	if r.code != 0 {
		p.t.Fatalf("gantry history: %s", r)
	}
	var hs []deploy.HistoryEntry
	if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
		p.t.Fatalf("history output: %v\n%s", err, r)
	}
	return hs
}

func (p *project) status(env string) deploy.Status {
	p.t.Helper()
	r := p.run("status", env, "--output", "json")
	if r.code != 0 {
		p.t.Fatalf("gantry status: %s", r)
	}
	var st deploy.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		p.t.Fatalf("status output: %v\n%s", err, r)
	}
	return st
}

// containers lists the project's containers, stopped ones too.
func (p *project) containers() []container.Summary {
	p.t.Helper()
	cs, err := p.c.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "io.gantry.project="+p.name))})
	if err != nil {
		p.t.Fatal(err)
	}
	return cs
}

// running lists "service@release" of the project's running containers.
func (p *project) running() []string {
	var out []string
	for _, c := range p.containers() {
		if c.State == "running" {
			out = append(out, c.Labels["io.gantry.service"]+"@"+c.Labels["io.gantry.release"])
		}
	}
	return out
}

// snapshot describes the project's containers and their states.
func (p *project) snapshot() string {
	var l []string
	for _, c := range p.containers() {
		l = append(l, c.ID[:12]+":"+c.State)
	}
	return strings.Join(sortStrings(l), " ")
}

func sortStrings(l []string) []string {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && l[j] < l[j-1]; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
	return l
}

// get fetches a URL on loopback and returns the body, or "" and the error.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), err
}

// version is what the app on the project's fixed port reports.
func (p *project) version() string {
	p.t.Helper()
	v, err := get(fmt.Sprintf("http://127.0.0.1:%d/version", p.port))
	if err != nil {
		p.t.Fatalf("GET /version on 127.0.0.1:%d: %v", p.port, err)
	}
	return v
}

// waitFor polls cond every 100ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, timeout, what, cond)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// readFile copies one file out of a container through the Engine API.
func readFile(t *testing.T, p *project, id, path string) string {
	t.Helper()
	rc, _, err := p.c.CopyFromContainer(context.Background(), id, path)
	if err != nil {
		t.Fatalf("copy %s out of the container: %v", path, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mkdir(path string) error { return os.MkdirAll(path, 0o755) }
