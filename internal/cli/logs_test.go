package cli

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

// logsProject is a project of two services of the example app that print
// a numbered line to stdout every 100ms (and their start line to stderr).
func logsProject(t *testing.T) string {
	t.Helper()
	img := testenv.Image(t, testenv.Healthy)
	return writeProject(t, fmt.Sprintf("project: %s\ncompose: compose.yaml\nenvironments:\n  staging:\n    health: { window: 30s, min_healthy: 200ms }\n", testenv.Project(t, "logs")), fmt.Sprintf(`services:
  web:
    image: %[1]s
    environment: { APP_TICK: 100ms }
    read_only: true
    healthcheck: { disable: true }   # logs, not health: no check to fail on a loaded machine
  worker:
    image: %[1]s
    environment: { APP_TICK: 100ms }
    read_only: true
    healthcheck: { disable: true }   # logs, not health: no check to fail on a loaded machine
`, img))
}

// TestLogs: gantry logs against real containers: every line whole and
// prefixed with its service and release, two services merged in time
// order, one service, --tail, --since, -f until cancelled, and bad input.
func TestLogs(t *testing.T) {
	dir := logsProject(t)
	if _, errb, code := run(t, dir, "logs", "staging"); code != ExitUsage || !strings.Contains(errb, "nothing is deployed in staging") {
		t.Fatalf("logs before a deploy: exit %d %s", code, errb)
	}
	if _, errb, code := run(t, dir, "deploy", "staging", "--release", "1.0.0"); code != 0 {
		t.Fatalf("deploy: exit %d: %s", code, errb)
	}
	time.Sleep(500 * time.Millisecond)

	out, errb, code := run(t, dir, "logs", "staging", "--timestamps")
	if code != 0 {
		t.Fatalf("logs: exit %d: %s", code, errb)
	}
	lineRE := regexp.MustCompile(`^(\S+) (web|worker)@1\.0\.0 +\| (app: start version=1\.0\.0 .*|tick \d+ version=1\.0\.0)$`)
	var last time.Time
	seen := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("a line is not whole or not prefixed: %q\n%s", l, out)
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("timestamp %q: %v", m[1], err)
		}
		if at.Before(last) {
			t.Fatalf("lines out of time order at %q:\n%s", l, out)
		}
		last = at
		seen[m[2]+" "+strings.Fields(m[3])[0]]++
	}
	for _, k := range []string{"web app:", "web tick", "worker app:", "worker tick"} {
		if seen[k] == 0 {
			t.Errorf("no %q line in:\n%s", k, out)
		}
	}

	out, _, code = run(t, dir, "logs", "staging", "worker", "--tail", "2")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "worker@1.0.0 | tick ") || !strings.HasPrefix(lines[1], "worker@1.0.0 | tick ") {
		t.Fatalf("logs staging worker --tail 2: exit %d\n%s", code, out)
	}
	if out, _, code := run(t, dir, "logs", "staging", "--since", "2030-01-01T00:00:00Z"); code != 0 || out != "" {
		t.Errorf("--since in the future: exit %d %q", code, out)
	}

	// -f: new lines as they come, until the context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var fout, ferr bytes.Buffer
	fcode := Main(ctx, []string{"--file", filepath.Join(dir, "gantry.yaml"), "logs", "staging", "web", "-f", "--tail", "0"}, &fout, &ferr)
	ticks := regexp.MustCompile(`(?m)^web@1\.0\.0 \| tick (\d+) version=1\.0\.0$`).FindAllStringSubmatch(fout.String(), -1)
	if fcode != 0 || len(ticks) < 5 || strings.Count(fout.String(), "\n") != len(ticks) {
		t.Fatalf("logs -f for 1.5s: exit %d, %d tick lines\n%s%s", fcode, len(ticks), fout.String(), ferr.String())
	}

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"logs", "staging", "nope"}, `service "nope" has no container in release 1.0.0 of staging (its services: web, worker)`},
		{[]string{"logs", "staging", "--since", "yesterday"}, `--since "yesterday"`},
		{[]string{"logs", "staging", "--tail", "-3"}, `--tail "-3"`},
		{[]string{"logs", "nope"}, `nope`},
		{[]string{"logs"}, "needs the environment"},
	} {
		if _, errb, code := run(t, dir, c.args...); code != ExitUsage || !strings.Contains(errb, c.msg) {
			t.Errorf("%v: exit %d %s", c.args, code, errb)
		}
	}
}

func TestFollowShorthand(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"logs", "staging", "-f"}, []string{"logs", "staging", "--follow"}},
		{[]string{"-f", "x.yaml", "logs", "-f", "staging"}, []string{"-f", "x.yaml", "logs", "--follow", "staging"}},
		{[]string{"--output", "json", "logs", "staging", "web", "-f"}, []string{"--output", "json", "logs", "staging", "web", "--follow"}},
		{[]string{"deploy", "logs", "-f", "x.yaml"}, []string{"deploy", "logs", "-f", "x.yaml"}},
		{[]string{"-f", "logs", "status"}, []string{"-f", "logs", "status"}},
		{[]string{"logs", "staging", "--", "-f"}, []string{"logs", "staging", "--", "-f"}},
	} {
		if got := followShorthand(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%v: %v, want %v", c.in, got, c.want)
		}
	}
}
