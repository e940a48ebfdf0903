package docker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/docker/api/types/container"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/testenv"
)

func newRuntime(t *testing.T) *docker.Runtime {
	t.Helper()
	testenv.Docker(t)
	rt, err := docker.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func secretPlan(project string, id int64, img string, value string) *runtime.Plan {
	var sc types.ServiceConfig
	sc.Labels = types.Labels{testenv.LabelTest: "1"}
	return &runtime.Plan{Project: project, Env: "staging", Release: "1.0.0", ID: id, ComposeName: project + "-staging", Order: []string{"api"},
		Services: map[string]*runtime.Service{"api": {Name: "api", ImageRef: img, ImageID: img, Config: sc,
			Secrets: []runtime.SecretMount{{Name: "db", Target: "/run/secrets/db", UID: 65532, GID: 65532, Mode: 0o400,
				File: "/nonexistent/db.txt", Value: runtime.Secret(value)}}}}}
}

// A container's secret files are written when it is created, kept while
// it exists, written again when a reboot lost them, and removed with it;
// SweepSecrets removes those of containers removed behind gantry's back.
func TestSecretLifecycle(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	project := testenv.Project(t, "seclife")
	img := testenv.Image(t, testenv.Healthy)
	p := secretPlan(project, 1, img, "value-one")
	c, err := rt.Create(ctx, p, "api")
	if err != nil {
		t.Fatal(err)
	}
	ins, err := rt.Client().ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins.Mounts) != 1 || ins.Mounts[0].Destination != "/run/secrets/db" || ins.Mounts[0].RW {
		t.Fatalf("mounts: %+v", ins.Mounts)
	}
	src := ins.Mounts[0].Source
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o400 || st.Uid != 65532 {
		t.Fatalf("%s: %v uid %d", src, fi.Mode(), st.Uid)
	}

	// The container exists: its file is kept, and its value learnt back
	// (for the redactor) when the plan has none.
	again := secretPlan(project, 1, img, "")
	again.Services["api"].Secrets[0].Value = nil
	if _, err := rt.Create(ctx, again, "api"); err != nil {
		t.Fatal(err)
	}
	if v := again.Services["api"].Secrets[0].Value; string(v) != "value-one" {
		t.Fatalf("value learnt from the kept file: %q", string(v))
	}
	// Lost (a reboot emptied the tmpfs), with the source gone too: a
	// clear error; with a value: written again.
	os.Remove(src)
	gone := secretPlan(project, 1, img, "")
	gone.Services["api"].Secrets[0].Value = nil
	gone.Services["api"].Secrets[0].ReadErr = errors.New("file /nonexistent/db.txt does not exist; restore it")
	_, err = rt.Create(ctx, gone, "api")
	if !errors.Is(err, runtime.ErrSecretUnavailable) || !strings.Contains(err.Error(), "secret db of service api (file /nonexistent/db.txt)") {
		t.Fatalf("lost file, no source: %v", err)
	}
	if _, err := rt.Create(ctx, secretPlan(project, 1, img, "value-two"), "api"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(src); string(b) != "value-two" {
		t.Fatalf("rewritten file: %q", b)
	}

	if err := rt.Remove(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(src)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the secret directory outlived its container: %v", err)
	}

	// Removed by hand: the sweep finds the orphan by name.
	c2, err := rt.Create(ctx, secretPlan(project, 2, img, "value-three"), "api")
	if err != nil {
		t.Fatal(err)
	}
	c3, err := rt.Create(ctx, secretPlan(project, 3, img, "value-four"), "api")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(testenv.SecretDirs(t, project)); n != 2 {
		t.Fatalf("%d secret directories, want 2", n)
	}
	if err := rt.Client().ContainerRemove(ctx, c2.ID, containerRemoveForce()); err != nil {
		t.Fatal(err)
	}
	if err := rt.SweepSecrets(ctx, project, "staging"); err != nil {
		t.Fatal(err)
	}
	if dirs := testenv.SecretDirs(t, project); len(dirs) != 1 || dirs[0] != "staging/"+c3.Name {
		t.Fatalf("after the sweep: %v, want only %s", dirs, c3.Name)
	}
}

// ResolveUser reads names from the image's /etc/passwd and /etc/group.
func TestResolveUser(t *testing.T) {
	rt := newRuntime(t)
	ctx := context.Background()
	withUsers := buildImage(t, rt, "gantry-test/users:1", map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\napp:x:1234:2345::/app:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nstaff:x:50:app\n",
	})
	bare := testenv.Image(t, testenv.Healthy)
	cases := []struct {
		img, user string
		uid, gid  int
		err       string
	}{
		{withUsers, "app", 1234, 2345, ""},
		{withUsers, "app:staff", 1234, 50, ""},
		{withUsers, "1000:staff", 1000, 50, ""},
		{withUsers, "65532:65532", 65532, 65532, ""},
		{withUsers, "ghost", 0, 0, `user "ghost", which its /etc/passwd does not list`},
		{withUsers, "app:ghosts", 0, 0, `group "ghosts", which its /etc/group does not list`},
		{bare, "app", 0, 0, "has no readable /etc/passwd"},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			uid, gid, err := rt.ResolveUser(ctx, tc.img, tc.user)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "set ") {
					t.Fatalf("ResolveUser(%s): %v, want an error with %q and what to set", tc.user, err, tc.err)
				}
				return
			}
			if err != nil || uid != tc.uid || gid != tc.gid {
				t.Fatalf("ResolveUser(%s) = %d:%d, %v; want %d:%d", tc.user, uid, gid, err, tc.uid, tc.gid)
			}
		})
	}
}

// buildImage builds ref FROM the healthy test image with files added.
func buildImage(t *testing.T, rt *docker.Runtime, ref string, files map[string]string) string {
	t.Helper()
	df := "FROM " + testenv.Image(t, testenv.Healthy) + "\n"
	ctx := map[string][]byte{}
	for name, content := range files {
		ctx[name] = []byte(content)
		df += "COPY " + name + " /" + name + "\n"
	}
	ctx["Dockerfile"] = []byte(df)
	if err := testenv.BuildImage(rt.Client(), ref, ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.RemoveImage(rt.Client(), ref) })
	return ref
}

func containerRemoveForce() container.RemoveOptions { return container.RemoveOptions{Force: true} }
