package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/testenv"
)

const secretsGantry = `
project: PROJECT
compose: compose.yaml
environments:
  staging:
    keep_releases: 0
    health:
      window: 20s
      min_healthy: 1s
`

// secretsCompose: the secrets test app, which prints every secret it can
// read to its log, with a file secret (owned by the image's user, 0400)
// and an environment secret from .env (owner and mode from compose).
const secretsCompose = `
services:
  api:
    image: SECRETAPP
    ports: ["127.0.0.1:PORT:8080"]
    read_only: true
    secrets:
      - db_password
      - source: api_token
        target: token
        uid: "65532"
        gid: "4242"
        mode: 0440
secrets:
  db_password: { file: ./db_password.txt }
  api_token: { environment: API_TOKEN }
`

func randomValue(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// noLeak fails the test when text holds any of the values.
func noLeak(t *testing.T, where, text string, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(text, v) {
			i := strings.Index(text, v)
			lo, hi := max(0, i-120), min(len(text), i+len(v)+40)
			t.Errorf("%s shows a secret value: ...%s...", where, strings.ReplaceAll(text[lo:hi], v, "<<THE SECRET>>"))
		}
	}
}

// secretStat is what the test app reports of a secret file.
type secretStat struct {
	Mode     string `json:"mode"`
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	SHA256   string `json:"sha256"`
	ReadErr  string `json:"read_error"`
	WriteErr string `json:"write_error"`
	FSType   string `json:"fs_type"`
	MountRO  bool   `json:"mount_ro"`
}

func (p *project) secretStat(path string) secretStat {
	p.t.Helper()
	body, err := get(fmt.Sprintf("http://127.0.0.1:%d/stat?path=%s", p.port, path))
	if err != nil {
		p.t.Fatalf("GET /stat?path=%s: %v %s", path, err, body)
	}
	var st secretStat
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		p.t.Fatalf("/stat answer: %v: %s", err, body)
	}
	return st
}

// secretDirsMatchContainers: every secret directory on the host belongs to
// a container of the project that exists, and every container with
// secrets has one.
func (p *project) secretDirsMatchContainers(when string) {
	p.t.Helper()
	var names []string
	for _, c := range p.containers() {
		names = append(names, "staging/"+strings.TrimPrefix(c.Names[0], "/"))
	}
	dirs := testenv.SecretDirs(p.t, p.name)
	sort.Strings(names)
	sort.Strings(dirs)
	if strings.Join(names, " ") != strings.Join(dirs, " ") {
		p.t.Fatalf("%s: secret directories %v, containers %v", when, dirs, names)
	}
}

func memoryBacked(t *testing.T, path string) bool {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatalf("statfs %s: %v", path, err)
	}
	return int64(st.Type) == 0x01021994
}

// TestSecretsNeverLeak deploys an app that prints its secrets to its log,
// checks how the secrets are mounted, then looks for their values in every
// channel gantry has: its output and logs, the store's bytes, docker
// inspect, the health gate's log excerpt of a failed deploy, errors. Along
// the way the secret files on the host follow their containers: replaced,
// rolled back, killed mid-deploy and recovered.
func TestSecretsNeverLeak(t *testing.T) {
	filePW := randomValue(t, "file-pw-")
	token := randomValue(t, "env-token-")
	values := []string{filePW, token}
	healthy, unhealthy := testenv.SecretApp(t, testenv.SecretAppHealthy), testenv.SecretApp(t, testenv.SecretAppUnhealthy)
	p := newProject(t, "secrets", secretsGantry, strings.Replace(secretsCompose, "SECRETAPP", healthy, 1))
	p.write("db_password.txt", filePW+"\n")
	p.write(".env", "API_TOKEN="+token+"\n")
	var outputs []string
	keep := func(r result) result {
		outputs = append(outputs, r.stdout+r.stderr)
		return r
	}

	r := keep(p.run("--log-level", "debug", "deploy", "staging", "--release", "1.0.0"))
	if r.code != 0 {
		t.Fatalf("deploy: %s", r)
	}
	p.secretDirsMatchContainers("after the first deploy")

	// As the container sees them: owner, mode, read-only, from a tmpfs.
	st := p.secretStat("/run/secrets/db_password")
	if st.Mode != "0400" || st.UID != 65532 || st.GID != 65532 || st.SHA256 != sha256hex(filePW+"\n") {
		t.Errorf("/run/secrets/db_password: %+v, want mode 0400, owner 65532:65532 (the image's USER), the file's content", st)
	}
	if st.WriteErr == "" || !st.MountRO || st.FSType != "tmpfs" {
		t.Errorf("/run/secrets/db_password must be a read-only mount from a tmpfs: %+v", st)
	}
	st = p.secretStat("/run/secrets/token")
	if st.Mode != "0440" || st.UID != 65532 || st.GID != 4242 || st.SHA256 != sha256hex(token) || !st.MountRO {
		t.Errorf("/run/secrets/token: %+v, want mode 0440, owner 65532:4242 from compose, the .env value", st)
	}

	// As the host sees them.
	cs := p.containers()
	if len(cs) != 1 {
		t.Fatalf("containers: %d", len(cs))
	}
	ctx := context.Background()
	ins, raw, err := p.c.ContainerInspectWithRaw(ctx, cs[0].ID, false)
	if err != nil {
		t.Fatal(err)
	}
	noLeak(t, "docker inspect (env, labels, mounts)", string(raw), values...)
	mounts := 0
	for _, m := range ins.Mounts {
		if !strings.HasPrefix(m.Destination, "/run/secrets/") {
			continue
		}
		mounts++
		if m.RW {
			t.Errorf("%s is mounted read-write", m.Destination)
		}
		if !memoryBacked(t, m.Source) {
			t.Errorf("%s comes from %s, which is not on a tmpfs", m.Destination, m.Source)
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		if di, err := os.Stat(filepath.Dir(m.Source)); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("the directory of %s: %v %v, want mode 0700", m.Source, di, err)
		}
		if m.Destination == "/run/secrets/db_password" && (fi.Mode().Perm() != 0o400 || fi.Sys().(*syscall.Stat_t).Uid != 65532) {
			t.Errorf("host file %s: %v uid %d", m.Source, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
		}
	}
	if mounts != 2 {
		t.Fatalf("%d secret mounts, want 2: %+v", mounts, ins.Mounts)
	}
	// The app did print its secrets (into Docker's log of it), so the
	// excerpts below prove gantry masks them.
	logs, err := p.c.ContainerLogs(ctx, cs[0].ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	var lb strings.Builder
	stdcopy.StdCopy(&lb, &lb, logs)
	logs.Close()
	if !strings.Contains(lb.String(), filePW) {
		t.Fatalf("the test app should print its secret to its log: %q", lb.String())
	}

	// A failing deploy: the health gate's log excerpt holds what the app
	// printed, masked, in text and JSON.
	for _, output := range []string{"text", "json"} {
		r := keep(p.run("--log-level", "debug", "deploy", "staging", "--release", "2.0.0-"+output, "--image", "api="+unhealthy, "--output", output))
		if r.code != 3 {
			t.Fatalf("unhealthy deploy: want exit 3: %s", r)
		}
		excerpt := r.stdout
		if output == "json" {
			var res deploy.Result
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Failure == nil {
				t.Fatalf("deploy --output json: %v\n%s", err, r)
			}
			excerpt = res.Failure.Logs
		}
		if !strings.Contains(excerpt, "secretapp: db_password=<redacted>\n") {
			t.Errorf("the failure's log excerpt should show the masked line:\n%s", r.stdout)
		}
	}
	p.secretDirsMatchContainers("after an automatic rollback")

	// Replaced by a new release, then rolled back: with keep_releases 0 the
	// old container goes, so the rollback creates one and reads the
	// secrets' sources again (the file, and .env).
	if r := keep(p.run("deploy", "staging", "--release", "3.0.0")); r.code != 0 {
		t.Fatalf("deploy 3.0.0: %s", r)
	}
	p.secretDirsMatchContainers("after a replacing deploy")
	if r := keep(p.run("rollback", "staging", "--to", "1.0.0")); r.code != 0 {
		t.Fatalf("rollback: %s", r)
	}
	p.secretDirsMatchContainers("after a rollback")
	if st := p.secretStat("/run/secrets/token"); st.SHA256 != sha256hex(token) {
		t.Errorf("after the rollback /run/secrets/token is %+v", st)
	}

	// gantry logs shows what the app printed: its secrets, masked.
	r = keep(p.run("logs", "staging", "--tail", "50"))
	if r.code != 0 || !strings.Contains(r.stdout, "secretapp: db_password=<redacted>\n") || !strings.Contains(r.stdout, "secretapp: token=<redacted>\n") {
		t.Errorf("gantry logs should show the app's lines with the values masked: %s", r)
	}

	// Every command that shows state, in both formats.
	for _, args := range [][]string{{"status", "staging"}, {"history", "staging"}, {"config", "staging"}, {"audit"}} {
		for _, output := range []string{"text", "json"} {
			r := keep(p.run(append(args, "--output", output)...))
			if r.code != 0 {
				t.Fatalf("gantry %v: %s", args, r)
			}
		}
	}

	// A rollback whose secret source is gone fails clearly; the serving
	// release stays.
	os.Rename(filepath.Join(p.dir, "db_password.txt"), filepath.Join(p.dir, "moved.txt"))
	r = keep(p.run("rollback", "staging", "--to", "3.0.0"))
	if r.code != 2 || !strings.Contains(r.stderr, "needs secret db_password") || !strings.Contains(r.stderr, "does not exist; restore it") {
		t.Fatalf("rollback without the secret's file: %s", r)
	}
	if st := p.status("staging"); st.Release != "1.0.0" {
		t.Fatalf("after the refused rollback %s serves", st.Release)
	}
	os.Rename(filepath.Join(p.dir, "moved.txt"), filepath.Join(p.dir, "db_password.txt"))
	p.secretDirsMatchContainers("after a rollback that could not read its secret")

	// Killed (kill -9) between writing the secret files and creating the
	// container, and after creating it: the next command removes both.
	for _, point := range []string{"secrets:written", "step:start"} {
		p.env = []string{"GANTRY_FAILPOINTS=" + point}
		r := p.run("deploy", "staging", "--release", "4.0.0")
		p.env = nil
		if r.code != -1 {
			t.Fatalf("gantry should have been killed at %s: %s", point, r)
		}
		if n := len(testenv.SecretDirs(t, p.name)); n != 2 {
			t.Fatalf("killed at %s: %d secret directories, want 2 (the serving container's and the new one's)", point, n)
		}
		if r := keep(p.run("status", "staging")); r.code != 0 {
			t.Fatalf("status after the kill: %s", r)
		}
		p.secretDirsMatchContainers("after recovery from a kill at " + point)
	}

	// The store's bytes: the database, its WAL and whatever else is there.
	filepath.Walk(p.state, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(path)
			noLeak(t, "state file "+filepath.Base(path), string(b), values...)
		}
		return nil
	})
	for i, o := range outputs {
		noLeak(t, fmt.Sprintf("gantry output #%d", i), o, values...)
	}
}

// A compose environment entry that holds a secret's value is the user's
// choice: gantry deploys it, warns, and never prints the value itself.
func TestSecretInEnvironmentWarns(t *testing.T) {
	token := randomValue(t, "env-token-")
	compose := strings.Replace(secretsCompose, "SECRETAPP", testenv.SecretApp(t, testenv.SecretAppHealthy), 1)
	compose = strings.Replace(compose, "    read_only: true\n", "    read_only: true\n    environment: { LEAKY_TOKEN: \"${API_TOKEN}\" }\n", 1)
	p := newProject(t, "secretenv", secretsGantry, compose)
	p.write("db_password.txt", randomValue(t, "pw-"))
	p.env = []string{"API_TOKEN=" + token}
	for _, output := range []string{"text", "json"} {
		r := p.run("config", "staging", "--output", output)
		if r.code != 0 || !strings.Contains(r.stdout, "<redacted>") {
			t.Fatalf("config should show the environment entry masked: %s", r)
		}
		noLeak(t, "gantry config --output "+output, r.stdout+r.stderr, token)
	}
	r := p.run("deploy", "staging")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: service api: environment variable LEAKY_TOKEN holds a secret's value") {
		t.Fatalf("deploy should warn: %s", r)
	}
	noLeak(t, "gantry deploy", r.stdout+r.stderr, token)
}

// Bad secrets are refused before anything changes, with what to do.
func TestSecretBadInput(t *testing.T) {
	p := newProject(t, "secretbad", secretsGantry, strings.Replace(secretsCompose, "SECRETAPP", testenv.SecretApp(t, testenv.SecretAppHealthy), 1))
	p.write("db_password.txt", randomValue(t, "pw-"))
	p.write(".env", "API_TOKEN="+randomValue(t, "tok-")+"\n")
	p.deploy(0, "staging", "--release", "1.0.0")
	before, history, dirs := p.snapshot(), len(p.history("staging")), testenv.SecretDirs(t, p.name)

	svc := func(secrets, top string) string {
		return fmt.Sprintf("services:\n  api:\n    image: %s\n    secrets: %s\nsecrets:\n%s", testenv.SecretApp(t, testenv.SecretAppHealthy), secrets, top)
	}
	big := strings.Repeat("x", 600<<10)
	cases := []struct {
		name    string
		compose string
		want    []string
	}{
		{"missing file", svc("[db]", "  db: { file: ./missing.txt }\n"), []string{"secret db", "missing.txt does not exist"}},
		{"a directory", svc("[db]", "  db: { file: ./sub }\n"), []string{"secret db", "is a directory"}},
		{"environment variable unset", svc("[db]", "  db: { environment: GANTRY_TEST_NOT_SET_ANYWHERE }\n"), []string{"secret db", "GANTRY_TEST_NOT_SET_ANYWHERE is not set"}},
		{"invalid name", svc("[.hidden]", "  .hidden: { file: ./db_password.txt }\n"), []string{`secret name ".hidden" is not allowed`, "letter or digit"}},
		{"external", svc("[db]", "  db: { external: true }\n"), []string{"secret db is external", "file:"}},
		{"target climbing out", svc("[{source: db, target: ../../etc/passwd}]", "  db: { file: ./db_password.txt }\n"), []string{"climbs out"}},
		{"uid not a number", svc(`[{source: db, uid: "app"}]`, "  db: { file: ./db_password.txt }\n"), []string{`uid "app" is not a number`}},
		{"too large", svc("[db]", "  db: { file: ./big.txt }\n"), []string{"secret db", "more than 500 KiB"}},
		{"empty", svc("[db]", "  db: { file: ./empty.txt }\n"), []string{"secret db", "is empty"}},
	}
	if err := os.WriteFile(filepath.Join(p.dir, "big.txt"), []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	p.write("empty.txt", "")
	mkdir(filepath.Join(p.dir, "sub"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.write("compose.yaml", tc.compose)
			r := p.run("deploy", "staging", "--release", "2.0.0")
			if r.code != 2 {
				t.Fatalf("want exit 2: %s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, big[:64]) {
				t.Error("the error quotes the file")
			}
		})
	}
	if p.snapshot() != before || len(p.history("staging")) != history || strings.Join(testenv.SecretDirs(t, p.name), " ") != strings.Join(dirs, " ") {
		t.Fatal("a refused deploy changed containers, records or secret files")
	}
}
