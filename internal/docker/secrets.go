package docker

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/docker/docker/api/types/container"

	"github.com/gantryhq/gantry/internal/failpoint"
	"github.com/gantryhq/gantry/internal/runtime"
)

// SecretsDirEnv names the directory where gantry keeps the secret files it
// mounts into containers. It must be on a tmpfs: a secret never touches a
// disk. Without it gantry uses /run/gantry/secrets, then
// $XDG_RUNTIME_DIR/gantry/secrets, then /dev/shm/gantry-<uid>, the first on
// a tmpfs.
const SecretsDirEnv = "GANTRY_SECRETS_DIR"

// SecretsRoot finds (and, with create, makes, mode 0700) the directory of
// secret files on this machine. Without create, a machine where gantry
// never wrote one answers an error wrapping fs.ErrNotExist.
func SecretsRoot(create bool) (string, error) {
	if d := os.Getenv(SecretsDirEnv); d != "" {
		if !filepath.IsAbs(d) {
			return "", fmt.Errorf("%s=%s: give an absolute path", SecretsDirEnv, d)
		}
		got, err := secretsDir(d, create)
		if err != nil {
			return "", fmt.Errorf("%w; point %s at a directory of your own on a tmpfs (mount -t tmpfs -o mode=0700,size=16m tmpfs DIR)", err, SecretsDirEnv)
		}
		return got, nil
	}
	var candidates []string
	if memoryBacked("/run") {
		candidates = append(candidates, "/run/gantry/secrets")
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) && memoryBacked(x) {
		candidates = append(candidates, filepath.Join(x, "gantry", "secrets"))
	}
	if memoryBacked("/dev/shm") {
		candidates = append(candidates, fmt.Sprintf("/dev/shm/gantry-%d", os.Geteuid()))
	}
	var errs []error
	for _, c := range candidates {
		if _, err := os.Lstat(c); !create && errors.Is(err, fs.ErrNotExist) {
			// Looking, not writing: a gantry that could not make this one
			// wrote into the next.
			continue
		}
		d, err := secretsDir(c, create)
		if err == nil {
			return d, nil
		}
		errs = append(errs, err)
	}
	if !create && len(errs) == 0 && len(candidates) > 0 {
		return "", fmt.Errorf("no secret files on this machine: %w", fs.ErrNotExist)
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("no tmpfs for secret files on this machine (/run, $XDG_RUNTIME_DIR and /dev/shm are not tmpfs); mount one (mount -t tmpfs -o mode=0700,size=16m tmpfs /run/gantry) and point %s at it", SecretsDirEnv)
	}
	return "", fmt.Errorf("no usable directory for secret files: %w; point %s at a tmpfs directory of your own", errors.Join(errs...), SecretsDirEnv)
}

// secretsDir checks (and makes) dir: on a tmpfs, a directory, not a
// symlink, owned by this user, private (0700). A directory in /dev/shm
// that someone else made first is refused, not used.
func secretsDir(dir string, create bool) (string, error) {
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("secret directory %s: %w", dir, err)
		}
	}
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return dir, nil // nothing written yet: nothing to find either
	}
	if err != nil {
		return "", fmt.Errorf("secret directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("secret directory %s is not a directory (a symlink or a file)", dir)
	}
	if !memoryBacked(dir) {
		return "", fmt.Errorf("secret directory %s is not on a tmpfs, and a secret must never be written to a disk", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return "", fmt.Errorf("secret directory %s belongs to uid %d, not to gantry's uid %d", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("secret directory %s: %w", dir, err)
		}
	}
	return dir, nil
}

// secretDir is where the secret files of one container live.
func secretDir(root, project, env, containerName string) string {
	return filepath.Join(root, project, env, containerName)
}

// secretFile is the host file of a container's i-th secret.
func secretFile(dir string, i int, sm runtime.SecretMount) string {
	return filepath.Join(dir, fmt.Sprintf("%d-%s", i, sm.Name))
}

// writeSecrets writes the secret files of a container about to be
// created, each owned by the container's user with the plan's mode, and
// returns their directory ("" for a service without secrets). fresh
// rewrites every file; otherwise (a container that exists) files already
// there are kept, and their values learnt back into the plan, so that a
// kept release restarts with the value it was deployed with.
func (r *Runtime) writeSecrets(p *runtime.Plan, s *runtime.Service, name string, fresh bool) (string, error) {
	if len(s.Secrets) == 0 {
		return "", nil
	}
	if !r.Local() {
		return "", fmt.Errorf("service %s has secrets, which gantry writes to a tmpfs on this machine, but the Docker host %s is remote", s.Name, r.host)
	}
	root, err := SecretsRoot(true)
	if err != nil {
		return "", err
	}
	if filepath.Base(name) != name || filepath.Base(p.Project) != p.Project || filepath.Base(p.Env) != p.Env {
		return "", fmt.Errorf("container %s: a name unfit for a directory", name)
	}
	dir := secretDir(root, p.Project, p.Env, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("secret directory %s: %w", dir, err)
	}
	for i := range s.Secrets {
		sm := &s.Secrets[i]
		f := secretFile(dir, i, *sm)
		if !fresh {
			if b, err := os.ReadFile(f); err == nil {
				if sm.Value == nil {
					sm.Value = b
				}
				continue
			}
		}
		if sm.Value == nil {
			why := sm.ReadErr
			if why == nil {
				why = errors.New("gantry has not read it")
			}
			return dir, fmt.Errorf("%w: secret %s of service %s (%s): %v", runtime.ErrSecretUnavailable, sm.Name, s.Name, sm.Source(), why)
		}
		if err := writeSecretFile(f, *sm); err != nil {
			return dir, fmt.Errorf("secret %s of service %s: %w", sm.Name, s.Name, err)
		}
	}
	if fresh {
		failpoint.Hit("secrets:written")
	}
	return dir, nil
}

// writeSecretFile writes one value, never visible half-written nor with
// looser permissions than its final ones.
func writeSecretFile(path string, sm runtime.SecretMount) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(sm.Value); err != nil {
		tmp.Close()
		return err
	}
	mode := os.FileMode(sm.Mode).Perm()
	if sm.UID != os.Geteuid() || sm.GID != os.Getegid() {
		if err := tmp.Chown(sm.UID, sm.GID); err != nil {
			// Without the right to give files away, a file any user may
			// read still works; a private one would be unreadable.
			if mode&0o004 == 0 {
				tmp.Close()
				return fmt.Errorf("it must belong to uid %d gid %d (the container's user), and gantry, running as uid %d, may not give files away (%v); run gantry as root, or give the secret `mode: 0444` in the compose file",
					sm.UID, sm.GID, os.Geteuid(), err)
			}
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// removeSecrets removes the secret files of a container.
func removeSecrets(project, env, name string) error {
	if project == "" || env == "" || name == "" || filepath.Base(name) != name {
		return nil
	}
	root, err := SecretsRoot(false)
	if err != nil {
		return nil // no secret directory on this machine: nothing was written
	}
	if err := os.RemoveAll(secretDir(root, project, env, name)); err != nil {
		return fmt.Errorf("remove the secret files of %s: %w", name, err)
	}
	return nil
}

// SweepSecrets removes the secret files of an environment's containers
// that no longer exist.
func (r *Runtime) SweepSecrets(ctx context.Context, project, env string) error {
	if !r.Local() {
		return nil
	}
	root, err := SecretsRoot(false)
	if err != nil {
		return nil
	}
	dir := filepath.Join(root, project, env)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("secret directory %s: %w", dir, err)
	}
	list, err := r.c.ContainerList(ctx, container.ListOptions{All: true, Filters: envFilter(project, env)})
	if err != nil {
		return fmt.Errorf("list containers on %s: %w", r.host, err)
	}
	alive := map[string]bool{}
	for _, c := range list {
		for _, n := range c.Names {
			alive[strings.TrimPrefix(n, "/")] = true
		}
	}
	var errs []error
	for _, e := range entries {
		if alive[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ResolveUser turns an image's user (name, name:group, uid:group...) into
// numbers, from the image's /etc/passwd and /etc/group, read out of a
// container that is created for it, never started, and removed.
func (r *Runtime) ResolveUser(ctx context.Context, imageID, user string) (int, int, error) {
	name, group, hasGroup := strings.Cut(user, ":")
	uid, uerr := strconv.Atoi(name)
	gid, gerr := strconv.Atoi(group)
	if uerr == nil && (!hasGroup || gerr == nil) {
		return uid, gid, nil
	}
	created, err := r.c.ContainerCreate(ctx, &container.Config{Image: imageID, Entrypoint: []string{"/nonexistent"},
		Labels: map[string]string{runtime.LabelManaged: "true", "io.gantry.purpose": "user-lookup"}}, &container.HostConfig{}, nil, nil, "")
	if err != nil {
		return 0, 0, fmt.Errorf("reading the users of image %s: %w", short(imageID), err)
	}
	defer r.c.ContainerRemove(context.WithoutCancel(ctx), created.ID, container.RemoveOptions{Force: true})
	read := func(path string) ([][]string, error) {
		rc, _, err := r.c.CopyFromContainer(ctx, created.ID, path)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			return nil, err
		}
		var rows [][]string
		sc := bufio.NewScanner(io.LimitReader(tr, 4<<20))
		for sc.Scan() {
			if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
				rows = append(rows, strings.Split(l, ":"))
			}
		}
		return rows, sc.Err()
	}
	if uerr != nil {
		users, err := read("/etc/passwd")
		if err != nil {
			return 0, 0, fmt.Errorf("image %s runs as user %q, a name, and has no readable /etc/passwd to give it a number (%v); set uid and gid on the secret in the compose file, or a numeric user", short(imageID), name, err)
		}
		found := false
		for _, u := range users {
			if len(u) >= 4 && u[0] == name {
				uid, _ = strconv.Atoi(u[2])
				if !hasGroup {
					gid, _ = strconv.Atoi(u[3])
				}
				found = true
				break
			}
		}
		if !found {
			return 0, 0, fmt.Errorf("image %s runs as user %q, which its /etc/passwd does not list; set uid and gid on the secret in the compose file", short(imageID), name)
		}
	}
	if hasGroup && gerr != nil {
		groups, err := read("/etc/group")
		found := false
		for _, g := range groups {
			if len(g) >= 3 && g[0] == group {
				gid, _ = strconv.Atoi(g[2])
				found = true
				break
			}
		}
		if err != nil || !found {
			return 0, 0, fmt.Errorf("image %s runs as group %q, which its /etc/group does not list; set gid on the secret in the compose file", short(imageID), group)
		}
	}
	return uid, gid, nil
}

// SecretValues reads the values of the secret files kept on this machine
// for an environment's containers: what a command that shows container
// output must mask (the values as deployed, even when a source changed
// since). Files it may not read are skipped.
func SecretValues(project, env string) [][]byte {
	root, err := SecretsRoot(false)
	if err != nil || filepath.Base(project) != project || filepath.Base(env) != env {
		return nil
	}
	files, _ := filepath.Glob(filepath.Join(root, project, env, "*", "*"))
	var out [][]byte
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, b)
		}
	}
	return out
}
