package lint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/config"
)

// got renders findings as "file:line RULE", sorted, for comparison.
func got(fs []Finding, withFile bool) []string {
	out := []string{}
	for _, f := range fs {
		s := fmt.Sprintf("%d %s", f.Line, f.Rule)
		if withFile {
			s = f.File + ":" + s
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func same(a, b []string) bool {
	sort.Strings(a)
	sort.Strings(b)
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// TestDockerfileRules lints every testdata/dockerfile fixture; good.* must
// give nothing, bad.* exactly the findings listed (line and rule). A fixture
// without a row fails the test, so none is forgotten.
func TestDockerfileRules(t *testing.T) {
	tests := map[string][]string{
		"good.minimal.Dockerfile":                nil,
		"good.secret-like.Dockerfile":            nil,
		"good.user-inherited.Dockerfile":         nil,
		"good.nonroot-base.Dockerfile":           nil,
		"good.base-pinned.Dockerfile":            nil,
		"good.build-tools-removed.Dockerfile":    nil,
		"good.build-tools-multistage.Dockerfile": nil,
		"good.exec-form.Dockerfile":              nil,
		"good.ignore.Dockerfile":                 nil,

		// ENV with a secret's name, in a continuation with a harmless one.
		"bad.secret-env.Dockerfile": {"2 GL1001"},
		// a meta ARG, an empty ARG default, camelCase.
		"bad.secret-arg.Dockerfile": {"1 GL1001", "3 GL1001", "4 GL1001"},
		// AWS key id, GitHub token, private key, high entropy, URL password.
		"bad.secret-value.Dockerfile": {"2 GL1001", "3 GL1001", "4 GL1001", "5 GL1001", "6 GL1001"},
		"bad.root.Dockerfile":         {"5 GL1002"},
		// USER ${UID}:0 with the meta ARG UID=0 declared again in the stage.
		"bad.root-uid.Dockerfile": {"4 GL1002"},
		"bad.no-user.Dockerfile":  {"1 GL1003"},
		// golang:latest in a build stage, alpine without a tag at the end.
		"bad.latest.Dockerfile": {"1 GL1005", "3 GL1004"},
		// FROM ${BASE}:${TAG} resolves to debian:latest.
		"bad.arg-base.Dockerfile":       {"3 GL1005"},
		"bad.no-healthcheck.Dockerfile": {"1 GL1006"},
		// a parent stage's HEALTHCHECK, turned off in the final one.
		"bad.healthcheck-none.Dockerfile": {"5 GL1006"},
		// gcc=version, make and git in one RUN over three lines.
		"bad.build-tools-single.Dockerfile": {"2 GL1007"},
		// installed in the stage the final stage is built FROM.
		"bad.build-tools-parent.Dockerfile": {"2 GL1007"},
		// URL without checksum, git at a branch, a local file; not: with
		// checksum, git at a commit, a local archive.
		"bad.add.Dockerfile": {"2 GL1008", "4 GL1008", "7 GL1009"},
		// without rm; `apt install`; not: rm in the same RUN, cache mounts,
		// rm in a later RUN (too late, but no install there), a quoted string.
		"bad.apt.Dockerfile": {"2 GL1010", "5 GL1010"},
		"bad.apk.Dockerfile": {"2 GL1011"},
		// pip and python3 -m pip; not: --no-cache-dir, a cache mount, ENV
		// PIP_NO_CACHE_DIR in the final stage.
		"bad.pip.Dockerfile": {"2 GL1012", "3 GL1012"},
		"bad.rpm.Dockerfile": {"2 GL1013", "4 GL1013"},
		// RUN <<EOF is the script, RUN <<EOF bash too; the data of
		// cat <<EOF > file and COPY <<EOF are not commands or ENV.
		"bad.heredoc.Dockerfile": {"3 GL1010", "3 GL1007", "8 GL1012"},
		// a comment line inside the continuation; the finding is on the
		// RUN's first line.
		"bad.continuation.Dockerfile": {"3 GL1010", "3 GL1007"},
		// # escape=` makes the backtick the continuation character.
		"bad.escape.Dockerfile": {"3 GL1010", "3 GL1007"},
		// no reason (ignores nothing), an unknown rule, an unreadable one.
		"bad.ignore.Dockerfile": {"2 GL0001", "3 GL1011", "4 GL0002", "6 GL0001", "7 GL1011"},
	}
	files, err := filepath.Glob("testdata/dockerfile/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		want, ok := tests[name]
		if !ok {
			t.Errorf("%s has no row in the table", name)
			continue
		}
		delete(tests, name)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			fs, err := lintDockerfile(name, data, false)
			if err != nil {
				t.Fatal(err)
			}
			if g := got(fs, false); !same(g, append([]string{}, want...)) {
				t.Errorf("findings:\n  got  %q\n  want %q", g, want)
				for _, f := range fs {
					t.Log(f)
				}
			}
			for _, f := range fs {
				if f.Hint == "" || f.DocURL == "" || f.Message == "" || f.Severity == "" {
					t.Errorf("%s: incomplete finding %+v", f.Rule, f)
				}
			}
		})
	}
	for name := range tests {
		t.Errorf("no fixture %s", name)
	}
}

// TestDockerfileSecretsNotShown: a finding never repeats a secret's value.
func TestDockerfileSecretsNotShown(t *testing.T) {
	data, err := os.ReadFile("testdata/dockerfile/bad.secret-value.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := lintDockerfile("x", data, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		for _, secret := range []string{"AKIAIOSFODNN7EXAMPLE", "ghp_0123", "Xk9dQ2vLp8", "s3cr3t"} {
			if strings.Contains(f.Message, secret) {
				t.Errorf("%s shows the secret: %s", f.Rule, f.Message)
			}
		}
	}
}

func TestDockerfileBadInput(t *testing.T) {
	tests := map[string]struct {
		src  string
		want string
	}{
		"unterminated heredoc": {"FROM alpine:3.20\nRUN <<EOF\necho hi\n", "x.Dockerfile:2"},
		"no FROM":              {"RUN echo hi\n", "x.Dockerfile"},
		"unknown instruction":  {"FROM alpine:3.20\nFOO bar\n", "x.Dockerfile:2"},
		"empty":                {"\n# only a comment\n", "x.Dockerfile"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := lintDockerfile("x.Dockerfile", []byte(tt.src), false)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInput naming %s", err, tt.want)
			}
		})
	}
}

// TestHealthFromCompose: a compose healthcheck stands in for the image's.
func TestHealthFromCompose(t *testing.T) {
	fs, err := lintDockerfile("x", []byte("FROM alpine:3.20\nUSER 1\n"), true)
	if err != nil || len(fs) != 0 {
		t.Fatalf("findings %v, err %v; want none", fs, err)
	}
}

// TestComposeRules lints the compose fixtures in testdata/compose: each
// directory read on its own (every profile), and the gantry project in
// project/, through its gantry.yaml (environments, an override file, image
// overrides, builds, the lint section).
func TestComposeRules(t *testing.T) {
	tests := map[string][]string{
		"good": nil,
		"bad-host": {"compose.yaml:5 GL2001", "compose.yaml:6 GL2002", "compose.yaml:7 GL2003",
			"compose.yaml:10 GL2004"},
		// by name (list form, a pass-through without value, camelCase) and
		// by value, also a value that comes from .env or a default; a
		// secret build argument (GL1001).
		"bad-secrets": {"compose.yaml:8 GL2005", "compose.yaml:9 GL2005", "compose.yaml:11 GL2005",
			"compose.yaml:12 GL2006", "compose.yaml:17 GL2005", "compose.yaml:18 GL2005",
			"compose.yaml:27 GL1001"},
		// 8080:8080, 0.0.0.0, ::, and a published range for "9200".
		"bad-ports":  {"compose.yaml:8 GL2007", "compose.yaml:10 GL2007", "compose.yaml:11 GL2007", "compose.yaml:14 GL2007"},
		"bad-health": {"compose.yaml:5 GL2008", "compose.yaml:7 GL2006", "compose.yaml:9 GL2008"},
		// outside a gantry project: compose.yaml with compose.override.yaml
		// (the port), and compose.prod.yaml as an override of compose.yaml
		// (privileged, reported in the file that sets it).
		// dockerfile_inline: linted, findings at their lines in the compose
		// file, the ignore inside honoured; tool has no health check.
		"inline":    {"compose.yaml:8 GL1006", "compose.yaml:9 GL1011"},
		"overrides": {"compose.override.yaml:4 GL2007", "compose.prod.yaml:3 GL2001"},
		// proxy's GL2007 ignored with a reason; scratchpad's ignores lack
		// a reason or name no rule, and ignore nothing.
		"ignores": {"compose.yaml:13 GL2006", "compose.yaml:17 GL0001", "compose.yaml:17 GL0002", "compose.yaml:17 GL0001"},
		// worker: shop/worker:main in production, but not in live, which
		// only gantry promote reaches, by the release's digest; web: latest
		// from the production override; db privileged there only; db writable
		// (re-levelled), in both environments once. The Dockerfiles have no
		// HEALTHCHECK but every service running them has a compose
		// healthcheck or a gantry probe, but for worker in live (protected:
		// true), which has no probe; GL1009 is disabled. builder passes a
		// secret build argument.
		"project": {"compose.production.yaml:3 GL2009", "compose.production.yaml:5 GL2001",
			"compose.yaml:11 GL2009", "compose.yaml:16 GL2006", "compose.yaml:27 GL1001",
			"worker.Dockerfile:1 GL1006"},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			dir, err := filepath.Abs(filepath.Join("testdata/compose", name))
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{Paths: []string{dir}, BaseDir: dir}
			if name == "project" {
				f, err := config.Load(filepath.Join(dir, "gantry.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				opts = Options{File: f, BaseDir: dir}
			}
			rep, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if g := got(rep.Findings, true); !same(g, append([]string{}, want...)) {
				t.Errorf("findings:\n  got  %q\n  want %q", g, want)
				for _, f := range rep.Findings {
					t.Log(f)
				}
			}
			if name != "project" {
				return
			}
			// A finding of several environments is reported once, naming
			// them; live is protected by protected: true, production by its
			// name.
			envs := map[string]string{
				"compose.production.yaml:3 GL2009": "production", "compose.production.yaml:5 GL2001": "production",
				"compose.yaml:11 GL2009": "production", "compose.yaml:16 GL2006": "live,production,staging",
				"compose.yaml:27 GL1001": "live,production,staging", "worker.Dockerfile:1 GL1006": "",
			}
			for _, f := range rep.Findings {
				wantEnv := envs[fmt.Sprintf("%s:%d %s", f.File, f.Line, f.Rule)]
				if f.Environment != wantEnv {
					t.Errorf("%s: environment %q, want %q", f, f.Environment, wantEnv)
				}
			}
		})
	}
}
