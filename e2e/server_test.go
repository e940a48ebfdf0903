package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// gantryServer is a `gantry server` process of a project.
type gantryServer struct {
	p           *project
	cmd         *exec.Cmd
	url         string
	fingerprint string
	http        *http.Client
	exited      chan struct{}
}

// startServer runs gantry server with a self-signed certificate on a free
// loopback port (addr, when given, to restart on the same one) and waits
// until it has started.
func startServer(t *testing.T, p *project, addr string) *gantryServer {
	t.Helper()
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	}
	cmd, _, errb := p.command(context.Background(), "server", "--addr", addr, "--tls-self-signed", "--log-level", "info")
	cmd.Stdout = nil
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &gantryServer{p: p, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-s.exited
		}
	})
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	urlRE := regexp.MustCompile(`listening on (https://\S+)`)
	fpRE := regexp.MustCompile(`fingerprint: ([0-9A-F:]{95})`)
	deadline := time.After(30 * time.Second)
	for s.url == "" || s.fingerprint == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("gantry server ended before it listened:\n%s", errb)
			}
			if m := urlRE.FindStringSubmatch(l); m != nil {
				s.url = m[1]
			}
			if m := fpRE.FindStringSubmatch(l); m != nil {
				s.fingerprint = m[1]
			}
		case <-deadline:
			t.Fatalf("gantry server did not print its address and fingerprint:\n%s", errb)
		}
	}
	want := strings.ReplaceAll(s.fingerprint, ":", "")
	s.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if !strings.EqualFold(hex.EncodeToString(sum[:]), want) {
				return fmt.Errorf("certificate fingerprint mismatch")
			}
			return nil
		}}}}
	waitFor(t, time.Minute, "/startupz 200", func() bool {
		code, _ := s.get("", "/startupz")
		return code == 200
	})
	return s
}

func (s *gantryServer) request(token, method, path, body string) (int, []byte) {
	s.p.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *gantryServer) get(token, path string) (int, []byte) {
	return s.request(token, "GET", path, "")
}

func (s *gantryServer) env(token string) []string {
	return []string{"GANTRY_SERVER=" + s.url, "GANTRY_TOKEN=" + token, "GANTRY_FINGERPRINT=" + s.fingerprint, "GANTRY_CONFIG=" + s.p.dir + "/no-contexts.yaml"}
}

func makeToken(t *testing.T, p *project, name, role string) string {
	t.Helper()
	r := p.run("token", "create", "--name", name, "--role", role)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "gnt_") {
		t.Fatalf("token create: %s", r)
	}
	return strings.TrimSpace(r.stdout)
}

var agoRE = regexp.MustCompile(`\d+[hms0-9.]* ago|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\d+\.\ds`)

// TestCLIAgainstServer: with GANTRY_SERVER and GANTRY_TOKEN set, deploy,
// status, history, rollback and releases go through the server and print
// what they print locally; a bad pin, a viewer's deploy and a wrong token
// fail with the exit codes of local mode.
func TestCLIAgainstServer(t *testing.T) {
	p := newProject(t, "srvcli", gantryStaging, webFixed)
	editor := makeToken(t, p, "ci", "editor")
	viewer := makeToken(t, p, "watcher", "viewer")
	srv := startServer(t, p, "")

	p.env = srv.env(editor)
	r := p.run("deploy", "staging", "--release", "1.0.0")
	if r.code != 0 || !strings.Contains(r.stdout, "deployed 1.0.0 to staging") || !strings.Contains(r.stderr, "web") {
		t.Fatalf("remote deploy: %s", r)
	}
	r = p.run("deploy", "staging", "--release", "2.0.0", "--image", "web=IMG_unhealthy")
	if r.code != 3 || !strings.Contains(r.stdout, "FAILED: release 2.0.0 did not become healthy in staging; gantry rolled back to 1.0.0") ||
		!strings.Contains(r.stdout, "last log lines of web") {
		t.Fatalf("remote failed deploy: %s", r)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q after the failed deploy", v)
	}
	for _, args := range [][]string{{"status", "staging"}, {"history", "staging"}, {"status"}, {"releases"}} {
		p.env = srv.env(editor)
		remote := p.run(args...)
		p.env = nil
		local := p.run(args...)
		if remote.code != 0 || local.code != 0 || agoRE.ReplaceAllString(remote.stdout, "T") != agoRE.ReplaceAllString(local.stdout, "T") {
			t.Errorf("gantry %v differs between server and local mode:\nserver:\n%s\nlocal:\n%s", args, remote, local)
		}
	}
	p.env = srv.env(editor)
	var st deploy.Status
	r = p.run("status", "staging", "--output", "json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Release != "1.0.0" {
		t.Fatalf("remote status json: %v %s", err, r)
	}
	r = p.run("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2")
	if r.code != 0 {
		t.Fatalf("deploy 3.0.0: %s", r)
	}
	r = p.run("rollback", "staging")
	if r.code != 0 || !strings.Contains(r.stdout, "rolled back to 1.0.0 to staging") {
		t.Fatalf("remote rollback: %s", r)
	}

	// Refusals keep local mode's exit codes and say why.
	p.env = srv.env(viewer)
	if r := p.run("deploy", "staging", "--release", "4.0.0"); r.code != 2 || !strings.Contains(r.stderr, "role viewer") {
		t.Errorf("a viewer's deploy: %s", r)
	}
	p.env = srv.env("gnt_aaaaaaaa_" + strings.Repeat("b", 43))
	if r := p.run("status"); r.code != 2 || !strings.Contains(r.stderr, "not valid") {
		t.Errorf("a wrong token: %s", r)
	}
	env := srv.env(editor)
	env[2] = "GANTRY_FINGERPRINT=" + strings.Repeat("00:", 31) + "00"
	p.env = env
	if r := p.run("status"); r.code != 1 || !strings.Contains(r.stderr, "fingerprint") {
		t.Errorf("a wrong pin: %s", r)
	}
	p.env = []string{"GANTRY_SERVER=http://192.0.2.1:8080", "GANTRY_TOKEN=" + editor}
	if r := p.run("status"); r.code != 2 || !strings.Contains(r.stderr, "loopback") {
		t.Errorf("plain http to another host: %s", r)
	}

	// Contexts: the same, through ~/.config/gantry/config.yaml.
	p.env = []string{"GANTRY_CONFIG=" + p.dir + "/contexts.yaml"}
	add, _, errb := p.command(context.Background(), "context", "add", "lab", "--server", srv.url, "--fingerprint", srv.fingerprint, "--token-stdin")
	add.Stdin = strings.NewReader(editor + "\n")
	if err := add.Run(); err != nil {
		t.Fatalf("context add: %v %s", err, errb)
	}
	if r := p.run("history", "staging", "--output", "json"); r.code != 0 || !strings.Contains(r.stdout, `"rollback"`) {
		t.Errorf("history through a context: %s", r)
	}
	if r := p.run("context", "list"); r.code != 0 || strings.Contains(r.stdout, editor) || !strings.Contains(r.stdout, "* ") {
		t.Errorf("context list: %s", r)
	}
	p.run("context", "use", "local")
	if r := p.run("audit", "--actor", "ci", "--action", "deploy"); r.code != 0 || !strings.Contains(r.stdout, "deploy.finish") {
		t.Errorf("the local audit log lacks the server's deploys: %s", r)
	}
}

// TestServerKilledDuringHealthWait: kill -9 of the server while a
// deployment waits for health; the restarted server rolls it back before it
// answers, and the environment serves exactly the release before.
func TestServerKilledDuringHealthWait(t *testing.T) {
	p := newProject(t, "srvkill", gantryStaging, webFixed)
	editor := makeToken(t, p, "ci", "editor")
	srv := startServer(t, p, "")
	p.env = srv.env(editor)
	if r := p.run("deploy", "staging", "--release", "1.0.0"); r.code != 0 {
		t.Fatalf("deploy 1.0.0: %s", r)
	}
	code, body := srv.request(editor, "POST", "/api/v1/envs/staging/deploy", fmt.Sprintf(`{"release":"2.0.0","images":{"web":%q}}`, p.expand("IMG_slow")))
	if code != 202 {
		t.Fatalf("deploy 2.0.0: %d %s", code, body)
	}
	var a struct {
		Deployment int64
		URL        string
	}
	json.Unmarshal(body, &a)
	// Wait for the health wait: the new container started, no verdict yet.
	waitFor(t, time.Minute, "deployment 2 to wait for health", func() bool {
		_, b := srv.get(editor, a.URL)
		var d struct {
			State store.State
			Steps []store.Step
		}
		json.Unmarshal(b, &d)
		return d.State == store.Deploying && len(d.Steps) > 0 && d.Steps[len(d.Steps)-1].Phase == "start"
	})
	time.Sleep(time.Second)
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-srv.exited
	if run := p.running(); !contains(run, "web@2.0.0") {
		t.Fatalf("the slow release should be running, not yet healthy, when the server dies: %v", run)
	}

	srv2 := startServer(t, p, strings.TrimPrefix(srv.url, "https://"))
	// /startupz answers 200 only after recovery: the deployment is final now.
	_, b := srv2.get(editor, a.URL)
	var d store.Deployment
	json.Unmarshal(b, &d)
	if d.State != store.RolledBack || !strings.Contains(d.Reason, "interrupted") {
		t.Fatalf("after the restart deployment %d is %s: %s", a.Deployment, d.State, d.Reason)
	}
	if run := p.running(); len(run) != 1 || run[0] != "web@1.0.0" {
		t.Fatalf("running after recovery: %v", run)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q", v)
	}
	p.env = srv2.env(editor)
	if r := p.run("deploy", "staging", "--release", "3.0.0", "--image", "web=IMG_healthy-v2"); r.code != 0 {
		t.Fatalf("a deploy after recovery: %s", r)
	}
}

// TestPromotionThroughServer: two people with their own tokens: alice
// promotes the release that passed staging, sees it wait, cannot approve it
// herself; bob approves, and production runs it.
func TestPromotionThroughServer(t *testing.T) {
	p := newPromoteProject(t, "24h")
	alice := makeToken(t, p.project, "alice", "editor")
	bob := makeToken(t, p.project, "bob", "admin")
	srv := startServer(t, p.project, "")

	p.env = append(srv.env(alice), "E2E_REGISTRY_PASSWORD="+registryPassword)
	r := p.run("promote", "staging", "production")
	if r.code != 0 || !strings.Contains(r.stdout, "awaits approval") || !strings.Contains(r.stdout, "requested by alice") {
		t.Fatalf("promote as alice: %s", r)
	}
	var id int64
	fmt.Sscanf(r.stdout, "deployment %d:", &id)
	if r := p.run("deployments", "--pending"); r.code != 0 || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "0/1") {
		t.Fatalf("deployments --pending: %s", r)
	}
	if r := p.run("approve", fmt.Sprint(id)); r.code != 2 || !strings.Contains(r.stderr, "self-approval") {
		t.Fatalf("alice approving her own request: %s", r)
	}
	p.env = append(srv.env(bob), "E2E_REGISTRY_PASSWORD="+registryPassword)
	r = p.run("approve", fmt.Sprint(id), "--comment", "staging is green")
	if r.code != 0 || !strings.Contains(r.stdout, "deployed 0.1.0 to production") {
		t.Fatalf("approve as bob: %s", r)
	}
	if v, err := get(fmt.Sprintf("http://127.0.0.1:%d/version", p.prodPort)); err != nil || v != "0.1.0" {
		t.Fatalf("production serves %q (%v)", v, err)
	}
	r = p.run("deployments", "production")
	if r.code != 0 || !strings.Contains(r.stdout, "bob") || !strings.Contains(r.stdout, "succeeded") {
		t.Fatalf("deployments production: %s", r)
	}
}
