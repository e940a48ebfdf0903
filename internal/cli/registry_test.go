package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

type syncBuffer = testenv.SyncBuffer

// runIn runs gantry with stdin and returns stdout, stderr and the exit code.
func runIn(ctx context.Context, stdin string, stdout, stderr *syncBuffer, args ...string) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		stderr.Write([]byte("gantry: " + stripSentinel(err.Error()) + "\n"))
	}
	return ExitCode(err)
}

func TestRegistryUserAdd(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	var out, errb syncBuffer
	if code := runIn(context.Background(), "pw-one\n", &out, &errb, "registry", "user", "add", "ci", "--users", users, "--password-stdin"); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "added ci in "+users) {
		t.Errorf("output: %q", out.String())
	}
	b, err := os.ReadFile(users)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ci:\$2[aby]\$12\$.{53}\n$`).Match(b) {
		t.Errorf("users file is not one bcrypt line: %q", b)
	}
	if strings.Contains(string(b), "pw-one") {
		t.Error("the users file holds the password")
	}
	if fi, _ := os.Stat(users); fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	out, errb = syncBuffer{}, syncBuffer{}
	if code := runIn(context.Background(), "pw-two", &out, &errb, "registry", "user", "add", "ci", "--users", users, "--password-stdin", "--output", "json"); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct{ Replaced bool }
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil || !res.Replaced {
		t.Errorf("second add: %q, %v", out.String(), err)
	}
	if b2, _ := os.ReadFile(users); strings.Count(string(b2), "\n") != 1 || bytes.Equal(b, b2) {
		t.Errorf("second add did not replace ci's line: %q", b2)
	}
}

func TestRegistryBadInput(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"user name with a colon", "pw", []string{"registry", "user", "add", "a:b", "--users", users, "--password-stdin"}, "user name"},
		{"empty password", "\n", []string{"registry", "user", "add", "ci", "--users", users, "--password-stdin"}, "no password"},
		{"no terminal for the password", "", []string{"registry", "user", "add", "ci", "--users", users}, "--password-stdin"},
		{"no user name", "pw", []string{"registry", "user", "add", "--users", users, "--password-stdin"}, "needs the user's name"},
		{"open address without users", "", []string{"registry", "serve", "--addr", "0.0.0.0:5000", "--root", dir}, "--users"},
		{"bad address", "", []string{"registry", "serve", "--addr", "localhost", "--root", dir}, "HOST:PORT"},
		{"bad immutable pattern", "", []string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", dir, "--immutable", "("}, "immutable tag pattern"},
		{"missing users file", "", []string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", dir, "--users", filepath.Join(dir, "nope")}, "gantry registry user add"},
		{"gc of a root with no registry", "", []string{"registry", "gc", "--root", filepath.Join(dir, "nothing")}, "holds no registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb syncBuffer
			code := runIn(context.Background(), tc.stdin, &out, &errb, tc.args...)
			if code != ExitUsage || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, want %d; stderr %q should say %q", code, ExitUsage, errb.String(), tc.want)
			}
		})
	}
	if _, err := os.Stat(users); !os.IsNotExist(err) {
		t.Errorf("refused input wrote the users file: %v", err)
	}
}

func TestRegistryServeAndGC(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "registry")
	users := filepath.Join(dir, "users")
	var out, errb syncBuffer
	if code := runIn(context.Background(), "pw", &out, &errb, "registry", "user", "add", "ci", "--users", users, "--password-stdin"); code != 0 {
		t.Fatal(errb.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sout, serr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runIn(ctx, "", &sout, &serr, "registry", "serve", "--addr", "127.0.0.1:0", "--root", root, "--users", users)
	}()
	re := regexp.MustCompile(`registry listening on (127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(sout.String()); m != nil {
			addr = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, serr.String())
		default:
		}
	}
	if addr == "" {
		t.Fatalf("serve printed no address: %q %q", sout.String(), serr.String())
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/", nil)
	req.SetBasicAuth("ci", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v2/ with the user's credentials: %s", resp.Status)
	}
	var gout, gerr syncBuffer
	if code := runIn(context.Background(), "", &gout, &gerr, "registry", "gc", "--root", root); code != ExitBusy || !strings.Contains(gerr.String(), "stop it first") {
		t.Errorf("gc while serving: exit %d, %q; want %d", code, gerr.String(), ExitBusy)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve after cancel: exit %d: %s", code, serr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	gout, gerr = syncBuffer{}, syncBuffer{}
	if code := runIn(context.Background(), "", &gout, &gerr, "registry", "gc", "--root", root, "--dry-run"); code != 0 || !strings.Contains(gout.String(), "dry run: would remove 0 of 0 blobs") {
		t.Errorf("gc --dry-run after the server stopped: exit %d, %q %q", code, gout.String(), gerr.String())
	}
}
