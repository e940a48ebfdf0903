package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	if dir != "" {
		args = append([]string{"--file", filepath.Join(dir, "gantry.yaml")}, args...)
	}
	code := Main(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestHelpOnEveryCommand(t *testing.T) {
	root := newRoot(&globals{})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		out, _, code := run(t, "", c.Name(), "--help")
		if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help: exit %d\n%s", c.Name(), code, out)
		}
		if c.Example == "" {
			t.Errorf("%s has no example in its help", c.Name())
		}
	}
}

func TestConfigPrintsResolvedModel(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "shop")
	out, errb, code := run(t, dir, "config", "staging", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var m struct {
		Project  string `json:"project"`
		Services []struct {
			Name, Strategy string
		} `json:"services"`
		Compose struct {
			Name     string         `json:"name"`
			Networks map[string]any `json:"networks"`
		} `json:"compose"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var order []string
	for _, s := range m.Services {
		order = append(order, s.Name+":"+s.Strategy)
	}
	if got := strings.Join(order, " "); got != "migrate:job api:start-first web:stop-first" {
		t.Errorf("order: %s", got)
	}
	if m.Project != "shop" || m.Compose.Name != "shop-staging" || len(m.Compose.Networks) != 2 {
		t.Errorf("model: %+v", m)
	}
	text, _, code := run(t, dir, "config", "staging")
	if code != 0 || !strings.Contains(text, "deploy order:") || !strings.Contains(text, "window 1m0s") {
		t.Errorf("text output:\n%s", text)
	}
}

func TestInitWritesAWorkingFile(t *testing.T) {
	dir := t.TempDir()
	compose := "services:\n  web:\n    image: example/web:1\n    ports: [\"127.0.0.1:8080:8080\"]\n  db:\n    image: example/db:1\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errb, code := run(t, dir, "init", "--project", "demo")
	if code != 0 || !strings.Contains(out, "wrote") {
		t.Fatalf("init: exit %d %s %s", code, out, errb)
	}
	if _, errb, code := run(t, dir, "config", "staging"); code != 0 {
		t.Fatalf("the written gantry.yaml does not load: %s", errb)
	}
	// A second init does not overwrite.
	if _, errb, code := run(t, dir, "init"); code != ExitUsage || !strings.Contains(errb, "--force") {
		t.Fatalf("second init: exit %d %s", code, errb)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"deploy"}, {"nope"}, {"deploy", "x", "--nope"}, {"--output", "xml", "status"}} {
		out, errb, code := run(t, "", args...)
		if code != ExitUsage || !strings.HasPrefix(errb, "gantry: ") {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, out, errb)
		}
	}
}
