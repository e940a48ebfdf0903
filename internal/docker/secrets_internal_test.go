package docker

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gantryhq/gantry/internal/runtime"
)

// shmDir makes a directory on /dev/shm, the tmpfs every Linux machine has.
func shmDir(t *testing.T) string {
	t.Helper()
	if !memoryBacked("/dev/shm") {
		t.Fatal("this test needs /dev/shm to be a tmpfs, as it is on every Linux machine (mount -t tmpfs tmpfs /dev/shm)")
	}
	d, err := os.MkdirTemp("/dev/shm", "gantry-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestSecretFiles(t *testing.T) {
	dir := shmDir(t)
	cases := []struct {
		name string
		sm   runtime.SecretMount
	}{
		{"default", runtime.SecretMount{Name: "db", UID: 65532, GID: 65532, Mode: 0o400, Value: runtime.Secret("pw-1\n")}},
		{"compose mode and owner", runtime.SecretMount{Name: "tok", UID: 1000, GID: 4242, Mode: 0o440, Value: runtime.Secret("tok-2")}},
		{"gantry's own user", runtime.SecretMount{Name: "own", UID: os.Geteuid(), GID: os.Getegid(), Mode: 0o400, Value: runtime.Secret("x-3")}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := secretFile(dir, i, tc.sm)
			if err := writeSecretFile(f, tc.sm); err != nil {
				if os.Geteuid() != 0 && tc.sm.UID != os.Geteuid() {
					if !strings.Contains(err.Error(), "run gantry as root") {
						t.Fatalf("error without the fix: %v", err)
					}
					return
				}
				t.Fatal(err)
			}
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != os.FileMode(tc.sm.Mode) || int(st.Uid) != tc.sm.UID || int(st.Gid) != tc.sm.GID {
				t.Errorf("%s: mode %v owner %d:%d, want %#o %d:%d", f, fi.Mode(), st.Uid, st.Gid, tc.sm.Mode, tc.sm.UID, tc.sm.GID)
			}
			if b, _ := os.ReadFile(f); string(b) != string(tc.sm.Value) {
				t.Errorf("content %q", b)
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestSecretsRoot(t *testing.T) {
	shm := shmDir(t)
	open := filepath.Join(shm, "open")
	os.Mkdir(open, 0o755)
	foreign := filepath.Join(shm, "foreign")
	os.Mkdir(foreign, 0o700)
	link := filepath.Join(shm, "link")
	os.Symlink(open, link)
	cases := []struct {
		name, dir string
		want      string // "" for success
	}{
		{"a tmpfs directory of gantry's", filepath.Join(shm, "new", "secrets"), ""},
		{"made private", open, ""},
		{"on a disk", t.TempDir(), "is not on a tmpfs"},
		{"relative", "secrets", "give an absolute path"},
		{"a symlink", link, "not a directory (a symlink or a file)"},
	}
	if os.Geteuid() == 0 {
		os.Chown(foreign, 4321, 4321)
		cases = append(cases, struct{ name, dir, want string }{"someone else's", foreign, "belongs to uid 4321"})
	}
	if memoryBacked(os.TempDir()) {
		t.Fatalf("%s is a tmpfs here: the on-disk case needs a disk-backed temporary directory (set TMPDIR)", os.TempDir())
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(SecretsDirEnv, tc.dir)
			got, err := SecretsRoot(true)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), SecretsDirEnv) {
					t.Fatalf("SecretsRoot with %s: %v, want an error with %q and what to set", tc.dir, err, tc.want)
				}
				return
			}
			if err != nil || got != tc.dir {
				t.Fatalf("SecretsRoot: %q, %v", got, err)
			}
			if fi, _ := os.Stat(got); fi.Mode().Perm() != 0o700 {
				t.Errorf("%s is %v, want 0700", got, fi.Mode())
			}
		})
	}
	t.Run("default on this machine", func(t *testing.T) {
		t.Setenv(SecretsDirEnv, "")
		got, err := SecretsRoot(true)
		if err != nil || !memoryBacked(got) {
			t.Fatalf("default root %q, %v: want one on a tmpfs", got, err)
		}
	})
}
