package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMonitoringCommands: init next to a gantry.yaml joins its
// environments' networks; check passes it (placeholders are warnings),
// fails a broken one with exit 1, and bad flags change nothing.
func TestMonitoringCommands(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: shop\nenvironments:\n  staging: {}\n  production: {}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: example/web:1\n    networks: [front, back]\nnetworks:\n  front: {}\n  back: {}\n"), 0o644)
	stack := filepath.Join(dir, "monitoring")
	out, errb, code := run(t, dir, "monitoring", "init", "--dir", stack, "--slack-channel", "#ops")
	if code != 0 || !strings.Contains(out, "Prometheus joins the networks shop-production_back, shop-production_front, shop-staging_back, shop-staging_front") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errb)
	}
	if b, _ := os.ReadFile(filepath.Join(stack, "alertmanager", "alertmanager.yml")); !strings.Contains(string(b), `channel: "#ops"`) {
		t.Errorf("--slack-channel did not reach alertmanager.yml")
	}
	out, errb, code = run(t, dir, "monitoring", "check", "--dir", stack, "--output", "json")
	var rep struct {
		Findings []struct{ Level, What, Detail string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("check: exit %d %v\n%s%s", code, err, out, errb)
	}
	for _, f := range rep.Findings {
		if f.Level == "fail" {
			t.Errorf("check: %+v", f)
		}
	}
	dash := filepath.Join(stack, "grafana", "dashboards", "gantry.json")
	b, _ := os.ReadFile(dash)
	os.WriteFile(dash, []byte(strings.Replace(string(b), "gantry_release_info", "gantry_release", 1)), 0o644)
	out, errb, code = run(t, dir, "monitoring", "check", "--dir", stack)
	if code != ExitError || !strings.Contains(out, "fail grafana/dashboards/gantry.json: panel \"Serving releases\" uses gantry_release, which gantry does not export") {
		t.Errorf("check of a broken dashboard: exit %d\n%s%s", code, out, errb)
	}
	if _, errb, code := run(t, dir, "monitoring", "init", "--dir", filepath.Join(dir, "other"), "--gantry-scheme", "ftp"); code != ExitUsage || !strings.Contains(errb, "--gantry-scheme") {
		t.Errorf("init --gantry-scheme ftp: exit %d %s", code, errb)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err == nil {
		t.Errorf("a refused init wrote its directory")
	}
	if _, errb, code := run(t, dir, "monitoring", "check", "--dir", filepath.Join(dir, "nope")); code != ExitUsage || !strings.Contains(errb, "is not a monitoring stack") {
		t.Errorf("check of no stack: exit %d %s", code, errb)
	}
}
