package config

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestInit runs `gantry init` on the compose fixture: the starter file is
// compared with a golden file, parses, and resolves against the compose
// files it was written from.
func TestInit(t *testing.T) {
	dir := filepath.Join("testdata", "project")
	out, err := Init(context.Background(), InitOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}

	golden := filepath.Join("testdata", "init.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestInit -update to write it)", err)
	}
	if string(out) != string(want) {
		t.Errorf("Init output differs from %s (run go test -run TestInit -update if the change is intended):\n%s", golden, out)
	}

	abs, err := filepath.Abs(filepath.Join(dir, DefaultFileName))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(DefaultFileName, abs, out)
	if err != nil {
		t.Fatalf("Init output does not parse: %v\n%s", err, out)
	}
	if f.Project != "project" {
		t.Errorf("project = %q, want the directory name", f.Project)
	}
	if got := strings.Join(f.Compose, ","); got != "compose.yaml" {
		t.Errorf("compose = %s", got)
	}
	// Services that have an image in the compose file are not pinned in
	// gantry.yaml: the compose file (and its ${TAG}) stays the source.
	if len(f.Services) != 0 {
		t.Errorf("services = %v, want none: every compose service has an image", f.Services)
	}
	if got := strings.Join(f.EnvNames(), ","); got != "production,staging" {
		t.Errorf("environments = %s", got)
	}
	st := f.Environments["staging"]
	if p := st.Health.Probes["web"]; p.HTTP == nil || p.HTTP.Port != 8080 {
		t.Errorf("staging web probe = %+v, want http on 8080", p)
	}
	if pr := f.Environments["production"]; pr.Health.MinHealthy.D().String() != "30s" {
		t.Errorf("production min_healthy = %s", pr.Health.MinHealthy.D())
	}

	m, err := f.Resolve(context.Background(), "staging")
	if err != nil {
		t.Fatalf("Resolve the generated file: %v", err)
	}
	if got := strings.Join(m.Order, ","); got != "db,migrate,web,worker" {
		t.Errorf("Order = %s", got)
	}
}

func TestInitServiceWithoutImage(t *testing.T) {
	out, err := Init(context.Background(), InitOptions{Dir: filepath.Join("testdata", "noimage"), Project: "noimage"})
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join("testdata", "noimage", DefaultFileName))
	f, err := Parse(DefaultFileName, abs, out)
	if err != nil {
		t.Fatalf("Init output does not parse: %v\n%s", err, out)
	}
	// The placeholder keeps the file valid and says what to do.
	if got := f.Services["app"].Image; got != "noimage/app:1.0.0" {
		t.Errorf("app image = %q, want the placeholder noimage/app:1.0.0", got)
	}
	if !strings.Contains(string(out), "# the image to deploy") {
		t.Errorf("no hint to set the image:\n%s", out)
	}
}

func TestInitErrors(t *testing.T) {
	_, err := Init(context.Background(), InitOptions{Dir: t.TempDir()})
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "no compose file found") || !strings.Contains(ce.Msg, "--compose") {
		t.Errorf("Init in an empty directory = %v; want a no compose file error suggesting --compose", err)
	}

	_, err = Init(context.Background(), InitOptions{Dir: filepath.Join("testdata", "project"), Project: "My Shop"})
	if !errors.As(err, &ce) || ce.Field != "project" || !strings.Contains(ce.Msg, "--project") {
		t.Errorf("Init with a bad project name = %v; want a project error suggesting --project", err)
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"shop":       "shop",
		"My Shop":    "my-shop",
		"shop.app_2": "shop-app_2",
		"--Shop--":   "shop",
		"___":        "app",
		"":           "app",
		"Ünïcode":    "n-code",
	} {
		got := sanitizeName(in)
		if got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
		if !nameRE.MatchString(got) {
			t.Errorf("sanitizeName(%q) = %q is not a valid project name", in, got)
		}
	}
}
