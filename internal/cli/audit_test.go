package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
)

// tokenProject is a directory with a minimal gantry.yaml and its own store.
func tokenProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: example/web:1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte("project: demo\ncompose: compose.yaml\nenvironments:\n  staging: {}\n  production: {}\n"), 0o644)
	return dir
}

func TestTokenAndAuditCommands(t *testing.T) {
	dir := tokenProject(t)
	out, errb, code := run(t, dir, "token", "create", "--name", "ci", "--role", "editor", "--env", "staging", "--expires", "30d")
	if code != 0 || !strings.HasPrefix(out, "gnt_") || !strings.Contains(errb, "shown only now") {
		t.Fatalf("token create: exit %d %q %q", code, out, errb)
	}
	secret := strings.TrimSpace(out)

	for _, args := range [][]string{
		{"token", "create", "--name", "ci", "--role", "viewer"}, // name taken
		{"token", "create", "--name", "x", "--role", "root"},    // no such role
		{"token", "create", "--name", "x", "--env", "qa"},       // no such env
		{"token", "create", "--name", "x", "--expires", "soon"}, // bad expiry
		{"token", "create", "--role", "viewer"},                 // no name
		{"token", "revoke", "nobody"},                           // no such token
		{"audit", "--since", "yesterday"},                       // bad time
		{"audit", "--outcome", "maybe"},                         // bad outcome
		{"audit", "prune"},                                      // no --before
	} {
		if _, errb, code := run(t, dir, args...); code != ExitUsage || !strings.HasPrefix(errb, "gantry: ") {
			t.Errorf("%v: exit %d %s", args, code, errb)
		}
	}

	out, _, code = run(t, dir, "token", "list")
	if code != 0 || !strings.Contains(out, "ci") || !strings.Contains(out, "staging") || !strings.Contains(out, "active") {
		t.Fatalf("token list: %d\n%s", code, out)
	}
	if _, errb, code := run(t, dir, "token", "revoke", "ci"); code != 0 {
		t.Fatalf("revoke: %s", errb)
	}
	out, _, _ = run(t, dir, "token", "list", "--output", "json")
	var toks []store.Token
	if err := json.Unmarshal([]byte(out), &toks); err != nil || len(toks) != 1 || toks[0].RevokedAt == nil {
		t.Fatalf("token list json: %v %s", err, out)
	}

	out, _, code = run(t, dir, "audit", "--action", "token")
	if code != 0 || !strings.Contains(out, "token.create") || !strings.Contains(out, "token.revoke") || !strings.Contains(out, "token/ci") {
		t.Fatalf("audit: %d\n%s", code, out)
	}
	// The token's secret is nowhere: not in the audit log, not in the store.
	for _, args := range [][]string{{"audit", "--output", "json"}, {"audit", "export"}, {"token", "list", "--output", "json"}} {
		out, _, _ := run(t, dir, args...)
		if strings.Contains(out, secret) || strings.Contains(out, secret[len(secret)-20:]) {
			t.Errorf("%v prints the token's secret", args)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, ".gantry", store.FileName))
	if strings.Contains(string(raw), secret[len(secret)-20:]) {
		t.Error("the database file holds the secret")
	}

	out, _, code = run(t, dir, "audit", "verify")
	if code != 0 || !strings.Contains(out, "verified: 2 events") {
		t.Fatalf("verify: %d %s", code, out)
	}
	out, _, code = run(t, dir, "audit", "export")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("export: %d %q", code, out)
	}

	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, ".gantry", store.FileName))
	defer db.Close()
	var actor string
	db.QueryRow(`SELECT actor FROM audit_events WHERE id=1`).Scan(&actor)
	if _, err := db.Exec(`UPDATE audit_events SET actor='someone' WHERE id=1`); err != nil {
		t.Fatal(err)
	}
	out, errb, code = run(t, dir, "audit", "verify")
	if code != ExitError || !strings.Contains(errb, "event 1 is edited") {
		t.Fatalf("verify after edit: %d %s %s", code, out, errb)
	}
	db.Exec(`UPDATE audit_events SET actor=? WHERE id=1`, actor)
	// Prune everything older than now: the prune's own event remains and verifies.
	if _, errb, code := run(t, dir, "audit", "prune", "--before", "2100-01-01"); code != 0 {
		t.Fatalf("prune: %s", errb)
	}
	out, errb, code = run(t, dir, "audit", "verify")
	if code != 0 || !strings.Contains(out, "verified: 1 events") || !strings.Contains(out, "2 older events pruned") {
		t.Fatalf("verify after prune: %d %s %s", code, out, errb)
	}
}

// TestAuditPruneThroughServer: gantry audit prune against a server cuts
// through POST /api/v1/audit/prune, with an admin token only, and prints
// what the local command prints; the log still verifies from the
// checkpoint, and the prune's own event, written after the cut, stays.
func TestAuditPruneThroughServer(t *testing.T) {
	dir := tokenProject(t)
	for _, name := range []string{"a", "b", "c"} {
		if _, errb, code := run(t, dir, "token", "create", "--name", name, "--role", "viewer"); code != 0 {
			t.Fatalf("token create %s: %s", name, errb)
		}
	}
	cut := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)
	url, st := serveProject(t, dir)
	admin, _, err := auth.New(st).Create(context.Background(), auth.CreateOptions{Name: "root", Role: auth.Admin})
	if err != nil {
		t.Fatal(err)
	}
	editor, _, err := auth.New(st).Create(context.Background(), auth.CreateOptions{Name: "ci", Role: auth.Editor})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GANTRY_SERVER", url)
	before := cut.Format(time.RFC3339Nano)

	t.Setenv("GANTRY_TOKEN", editor)
	if _, errb, code := run(t, dir, "audit", "prune", "--before", before); code != ExitUsage || !strings.Contains(errb, "needs admin") {
		t.Fatalf("prune as an editor: exit %d %s", code, errb)
	}
	t.Setenv("GANTRY_TOKEN", admin)
	out, errb, code := run(t, dir, "audit", "prune", "--before", before, "--output", "json")
	var res pruneResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("prune as an admin: exit %d %s%s", code, out, errb)
	}
	if res.Cut != 3 || res.Checkpoint.ID != 3 || res.Checkpoint.Pruned != 3 || !res.Before.Equal(cut.Truncate(time.Microsecond)) && !res.Before.Equal(cut) {
		t.Fatalf("prune: %+v, want the 3 token events cut before %s", res, before)
	}
	out, errb, code = run(t, dir, "audit", "verify")
	if code != 0 || !strings.Contains(out, "from the checkpoint after event 3 (3 older events pruned)") {
		t.Fatalf("verify after the prune: exit %d %s%s", code, out, errb)
	}
	var evs []audit.Event
	out, _, _ = run(t, dir, "audit", "--output", "json")
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) == 0 {
		t.Fatalf("audit: %v %s", err, out)
	}
	if e := evs[0]; e.Action != "audit.prune" || e.Actor != "root" || e.Detail["cut"] != "3" || e.Detail["checkpoint_id"] != "3" {
		t.Fatalf("the newest event is not the prune: %+v", e)
	}
	for _, e := range evs {
		if e.ID <= 3 {
			t.Fatalf("event %d is still listed after the cut", e.ID)
		}
	}
	out, _, code = run(t, dir, "audit", "prune", "--before", "2000-01-01")
	if code != 0 || !strings.HasPrefix(out, "pruned 0 audit events older than 2000-01-01") {
		t.Fatalf("prune of nothing: exit %d %s", code, out)
	}
}
