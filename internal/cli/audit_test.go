package cli

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
