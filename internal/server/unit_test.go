package server

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/internal/store"
)

// writeConfig writes a gantry.yaml that needs no Docker to load.
func writeConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte("services:\n  web:\n    image: example/web:1\n"), 0o644)
	p := filepath.Join(dir, "gantry.yaml")
	os.WriteFile(p, []byte("project: unit\ncompose: compose.yaml\nenvironments:\n  staging: {}\n  production: {}\n"), 0o644)
	return p
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
