package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptionsChecked(t *testing.T) {
	fp := strings.Repeat("AB:", 31) + "AB"
	for _, o := range []Options{
		{Server: "", Token: "t"},
		{Server: "ftp://x", Token: "t"},
		{Server: "https://x:8443"},
		{Server: "http://10.0.0.1:8080", Token: "t"},
		{Server: "https://x", Token: "t", Fingerprint: "zz"},
		{Server: "https://x", Token: "t", Fingerprint: fp, CAFile: "ca.pem"},
		{Server: "https://x", Token: "t", CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := New(o); !errors.Is(err, ErrInput) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, o := range []Options{
		{Server: "https://gantry.example.com:8443/", Token: "t"},
		{Server: "http://127.0.0.1:8080", Token: "t"},
		{Server: "https://127.0.0.1:8443", Token: "t", Fingerprint: "sha256:" + strings.ToLower(strings.ReplaceAll(fp, ":", ""))},
	} {
		if _, err := New(o); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func TestContexts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gantry", "config.yaml")
	t.Setenv("GANTRY_CONFIG", path)
	t.Setenv("GANTRY_SERVER", "")
	t.Setenv("GANTRY_CONTEXT", "")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := FromEnvironment(); c != nil || err != nil {
		t.Fatalf("no config: %v %v", c, err)
	}
	fp := strings.Repeat("ab", 32)
	if err := cfg.Add("lab", Context{Server: "https://127.0.0.1:8443", Token: "gnt_x", Fingerprint: fp}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		name string
		c    Context
	}{{"local", Context{Server: "https://x", Token: "t"}}, {"a b", Context{Server: "https://x", Token: "t"}}, {"x", Context{Server: "https://x"}}} {
		if err := cfg.Add(bad.name, bad.c); !errors.Is(err, ErrInput) {
			t.Errorf("context %q accepted: %v", bad.name, err)
		}
	}
	if err := cfg.Use("nope"); !errors.Is(err, ErrInput) {
		t.Error("use of an unknown context")
	}
	if err := cfg.Use("lab"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Save(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v: it holds tokens", fi.Mode().Perm())
	}
	c, err := FromEnvironment()
	if err != nil || c == nil || c.Server() != "https://127.0.0.1:8443" {
		t.Fatalf("current context: %v %v", c, err)
	}
	again, _ := LoadConfig(path)
	if again.Contexts["lab"].Fingerprint != FormatFingerprint(mustFP(t, fp)) || again.Contexts["lab"].Token != "gnt_x" {
		t.Errorf("saved context: %+v", again.Contexts["lab"])
	}
	t.Setenv("GANTRY_CONTEXT", "local")
	if c, _ := FromEnvironment(); c != nil {
		t.Error("GANTRY_CONTEXT=local still selects a server")
	}
	t.Setenv("GANTRY_CONTEXT", "")
	t.Setenv("GANTRY_SERVER", "https://other:8443")
	t.Setenv("GANTRY_TOKEN", "gnt_y")
	if c, _ := FromEnvironment(); c == nil || c.Server() != "https://other:8443" {
		t.Error("GANTRY_SERVER does not override the context")
	}
}

func mustFP(t *testing.T, s string) []byte {
	b, err := ParseFingerprint(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
