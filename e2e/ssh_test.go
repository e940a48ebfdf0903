package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// sshHost starts an OpenSSH server on 127.0.0.1 that lets root in with a
// key made for the test, and returns the ssh:// URL and the client options.
// The server stops when the test ends.
func sshHost(t *testing.T) (string, string) {
	t.Helper()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	if _, err := os.Stat(sshd); err != nil {
		t.Fatalf("this test needs OpenSSH's sshd and it is not installed: run `make deps` as root, or apt-get install openssh-server")
	}
	if os.Getuid() != 0 {
		t.Fatalf("this test starts sshd and logs in as root: run it as root (CI does)")
	}
	dir := t.TempDir()
	keygen := func(path string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host_key"))
	keygen(filepath.Join(dir, "client_key"))
	pub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile %s
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on 127.0.0.1:%d: %v\n%s", port, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	opts := fmt.Sprintf("-i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes", filepath.Join(dir, "client_key"))
	return fmt.Sprintf("ssh://root@127.0.0.1:%d", port), opts
}

// An environment on an ssh:// Docker host deploys, gates and rolls back
// exactly as one on the local socket.
func TestSSHHost(t *testing.T) {
	url, opts := sshHost(t)
	gy := strings.Replace(gantryStaging, "  staging:\n", "  staging:\n    host: "+url+"\n", 1)
	p := newProject(t, "ssh", gy, webFixed)
	p.env = []string{"GANTRY_SSH_OPTS=" + opts, "DOCKER_HOST="}
	ok := p.deploy(0, "staging", "--release", "1.0.0")
	if ok.State != "succeeded" {
		t.Fatalf("deploy over ssh: %+v", ok)
	}
	bad := p.deploy(3, "staging", "--release", "2.0.0", "--image", "web=IMG_unhealthy")
	if bad.Failure == nil || bad.Failure.Check != "healthcheck" {
		t.Fatalf("failure over ssh: %+v", bad.Failure)
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q, want 1.0.0", v)
	}
	st := p.status("staging")
	if st.Host != url || st.Release != "1.0.0" {
		t.Fatalf("status over ssh: %+v", st)
	}

	// Secrets are mounted from files on this machine: refused for a remote
	// host, before anything changes.
	p.write("compose-secret.yaml", strings.Replace(webFixed, "    networks: [front]\n", "    networks: [front]\n    secrets: [token]\n", 1)+"secrets:\n  token: { file: ./compose.yaml }\n")
	p.write("gantry-secret.yaml", strings.Replace(gy, "compose: compose.yaml", "compose: compose-secret.yaml", 1))
	before := p.snapshot()
	r := p.run("-f", "gantry-secret.yaml", "deploy", "staging")
	if r.code != 2 || !strings.Contains(r.stderr, "is remote") {
		t.Fatalf("secrets on a remote host: %s", r)
	}
	if p.snapshot() != before {
		t.Fatal("a refused deploy changed containers")
	}
	// A host that does not answer: a clear error naming it.
	p.env = []string{"GANTRY_SSH_OPTS=" + opts + " -o ConnectTimeout=3"}
	p.write("gantry-down.yaml", strings.Replace(gy, url, "ssh://root@127.0.0.1:1", 1))
	r = p.run("-f", "gantry-down.yaml", "status", "staging")
	if r.code != 6 || !strings.Contains(r.stderr, "ssh://root@127.0.0.1:1") {
		t.Fatalf("unreachable ssh host: %s", r)
	}
}
