package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// TestSecretsNeverInAPIAnswers deploys a service with a secret through the
// server, the secrets test app printing it to its log, fails a deploy on
// the health gate and another on bad input, then searches the value in
// every answer of the API, the audit log, the server's log and the store's
// bytes.
func TestSecretsNeverInAPIAnswers(t *testing.T) {
	b := make([]byte, 12)
	rand.Read(b)
	value := "srv-secret-" + hex.EncodeToString(b)
	compose := `services:
  web:
    image: IMG
    ports: ["127.0.0.1:PORT:8080"]
    read_only: true
    secrets: [db_password]
secrets:
  db_password: { file: ./db_password.txt }
`
	f := newFixtureWith(t, fixtureGantry, testenv.SecretApp(t, testenv.SecretAppHealthy),
		map[string]string{"compose.yaml": compose, "db_password.txt": value + "\n"})
	var answers []string
	keep := func(r response) response {
		answers = append(answers, fmt.Sprintf("%d %v %s", r.status, r.header, r.body))
		return r
	}

	v1 := f.deploy("staging", `{"release":"1.0.0"}`)
	if v1.State != store.Succeeded {
		t.Fatalf("deploy: %s %s", v1.State, v1.Reason)
	}
	v2 := f.deploy("staging", fmt.Sprintf(`{"release":"2.0.0","images":{"web":%q}}`, testenv.SecretApp(t, testenv.SecretAppUnhealthy)))
	var res deploy.Result
	if err := jsonUnmarshal(v2.Result, &res); err != nil || v2.State != store.RolledBack || res.Failure == nil ||
		!strings.Contains(res.Failure.Logs, "secretapp: db_password=<redacted>") {
		t.Fatalf("the failed deploy's result should hold the app's log, masked: %v %s %s", err, v2.State, v2.Result)
	}
	// An error that quotes what it was given, the secret among it.
	bad := keep(f.post("editor", "/api/v1/envs/staging/deploy", fmt.Sprintf(`{"images":{"web":"NOT A REF %s"}}`, value)))
	var e Error
	bad.json(t, &e)
	if bad.status != http.StatusUnprocessableEntity || !strings.Contains(e.Message, "NOT A REF <redacted>") {
		t.Fatalf("bad input: %d %s", bad.status, bad.body)
	}

	for _, path := range []string{
		fmt.Sprintf("/api/v1/deployments/%d", v1.ID), fmt.Sprintf("/api/v1/deployments/%d", v2.ID), "/api/v1/deployments",
		"/api/v1/envs/staging/status", "/api/v1/envs/staging/history", "/api/v1/status",
		"/api/v1/audit?limit=0", "/api/v1/audit/export",
	} {
		if r := keep(f.get("admin", path)); r.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	for i, a := range answers {
		if strings.Contains(a, value) {
			t.Errorf("API answer #%d shows the secret: %s", i, a)
		}
	}
	if strings.Contains(f.logs.String(), value) {
		t.Errorf("the server's log shows the secret")
	}
	filepath.Walk(filepath.Join(f.dir, ".gantry"), func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), value) {
				t.Errorf("state file %s holds the secret", path)
			}
		}
		return nil
	})
}
