package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const lintData = "../lint/testdata"

// TestLintExitCodes: 0 clean or below the threshold, 1 findings at or above
// it, 2 bad input; with the message on stderr.
func TestLintExitCodes(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "Dockerfile"), []byte("FROM alpine:3.20\nRUN <<EOF\necho unterminated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failOnWarning := t.TempDir()
	writeFiles(t, failOnWarning, map[string]string{
		"gantry.yaml":  "project: p\nenvironments:\n  staging: {}\nlint:\n  fail_on: warning\n",
		"compose.yaml": "services:\n  web:\n    image: p/web:1.0.0\n    read_only: true\n    healthcheck: { test: [CMD, /web, check] }\n    ports: [\"8080:8080\"]\n",
	})
	unknownRule := t.TempDir()
	writeFiles(t, unknownRule, map[string]string{
		"gantry.yaml":  "project: p\nenvironments:\n  staging: {}\nlint:\n  disable:\n    - GL1005\n    - GL9999\n",
		"compose.yaml": "services:\n  web:\n    image: p/web:1.0.0\n",
	})
	tests := []struct {
		name   string
		dir    string // gantry.yaml's directory, for --file
		args   []string
		code   int
		stderr string
	}{
		{name: "examples are clean", args: []string{"lint", "../../examples"}, code: 0},
		{name: "a project", dir: "../../examples/shop", args: []string{"lint"}, code: 0},
		{name: "one environment", dir: "../../examples/hello", args: []string{"lint", "--env", "production"}, code: 0},
		{name: "an error", args: []string{"lint", lintData + "/dockerfile/bad.root.Dockerfile"}, code: 1, stderr: "1 finding at or above error"},
		{name: "a warning under the default threshold", args: []string{"lint", lintData + "/dockerfile/bad.no-user.Dockerfile"}, code: 0},
		{name: "a warning at --fail-on warning", args: []string{"lint", "--fail-on", "warning", lintData + "/dockerfile/bad.no-user.Dockerfile"}, code: 1},
		{name: "info at --fail-on info", args: []string{"lint", "--fail-on=info", lintData + "/compose/bad-health"}, code: 1},
		{name: "lint.fail_on", dir: failOnWarning, args: []string{"lint"}, code: 1, stderr: "1 finding at or above warning"},
		{name: "--fail-on over lint.fail_on", dir: failOnWarning, args: []string{"lint", "--fail-on", "error"}, code: 0},
		{name: "compose errors", args: []string{"lint", lintData + "/compose/bad-host"}, code: 1, stderr: "4 findings"},
		{name: "no such path", args: []string{"lint", "nope/Dockerfile"}, code: 2, stderr: "nope/Dockerfile: no such file"},
		{name: "a Dockerfile that does not parse", args: []string{"lint", filepath.Join(bad, "Dockerfile")}, code: 2, stderr: "Dockerfile:2: unterminated heredoc"},
		{name: "a bad threshold", args: []string{"lint", "--fail-on", "high", "."}, code: 2, stderr: `"high" is not a severity`},
		{name: "a bad format", args: []string{"lint", "--format", "xml", "."}, code: 2, stderr: "use text, json or sarif"},
		{name: "an unknown rule in gantry.yaml", dir: unknownRule, args: []string{"lint"}, code: 2, stderr: "gantry.yaml:7: lint.disable: no rule GL9999"},
		{name: "an unknown environment", dir: "../../examples/shop", args: []string{"lint", "--env", "nope"}, code: 2, stderr: `no environment "nope"`},
		{name: "--env with paths", dir: "../../examples/shop", args: []string{"lint", "--env", "staging", "."}, code: 2, stderr: "--env picks environments"},
		{name: "a missing --file", args: []string{"--file", "nope.yaml", "lint"}, code: 2, stderr: "nope.yaml: file not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errb, code := run(t, tt.dir, tt.args...)
			if code != tt.code || !strings.Contains(errb, tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nstdout: %s", code, tt.code, errb, out)
			}
		})
	}
}

// TestLintOutputs: JSON and SARIF are one document on stdout, also when the
// lint fails; --rules lists every rule.
func TestLintOutputs(t *testing.T) {
	out, errb, code := run(t, "", "lint", "--output", "json", lintData+"/compose/bad-secrets")
	if code != 1 || !strings.Contains(errb, "lint failed") {
		t.Fatalf("exit %d: %s", code, errb)
	}
	var rep struct {
		Findings []struct{ Rule, File, Severity, Message string }
		Summary  map[string]int
		Failed   bool
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !rep.Failed || rep.Summary["error"] != 6 || len(rep.Findings) != 7 {
		t.Errorf("report: %+v", rep)
	}
	for _, f := range rep.Findings {
		if strings.Contains(f.Message, "hunter2") || strings.Contains(f.Message, "sk_live") {
			t.Errorf("a secret's value in the output: %s", f.Message)
		}
	}

	out, _, code = run(t, "", "lint", "--format", "sarif", lintData+"/dockerfile/bad.root.Dockerfile")
	var sarif struct {
		Version string
		Runs    []struct {
			Results []struct{ RuleID string }
		}
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil || code != 1 {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	if sarif.Version != "2.1.0" || len(sarif.Runs) != 1 || len(sarif.Runs[0].Results) != 1 || sarif.Runs[0].Results[0].RuleID != "GL1002" {
		t.Errorf("sarif: %+v", sarif)
	}

	out, _, code = run(t, "", "lint", "--rules")
	if code != 0 || !strings.Contains(out, "GL1001") || !strings.Contains(out, "DL3064") || !strings.Contains(out, "GL2009") {
		t.Errorf("--rules: exit %d\n%s", code, out)
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
