package config

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestApprovalsPolicy: an environment is unprotected unless it says so; a
// protected one needs one approval that expires after 24 hours, unless its
// approvals section says otherwise.
func TestApprovalsPolicy(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.protected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env       string
		protected bool
		approvals *Approvals
		requires  []string
	}{
		{env: "staging"},
		{env: "production", protected: true, requires: []string{"staging"},
			approvals: &Approvals{Required: 2, From: []string{"role:admin", "alice", "bob.smith"}, Expire: Duration(8 * time.Hour)}},
		{env: "demo", protected: true, approvals: &Approvals{Required: 1, Expire: Duration(24 * time.Hour)}},
	}
	for _, tt := range tests {
		e, err := f.Env(tt.env)
		if err != nil {
			t.Fatal(err)
		}
		if e.Protected != tt.protected || !slices.Equal(e.Requires, tt.requires) {
			t.Errorf("%s: protected %t requires %v, want %t %v", tt.env, e.Protected, e.Requires, tt.protected, tt.requires)
		}
		switch {
		case tt.approvals == nil && e.Approvals != nil:
			t.Errorf("%s: approvals %+v on an unprotected environment", tt.env, e.Approvals)
		case tt.approvals != nil && (e.Approvals == nil || e.Approvals.Required != tt.approvals.Required ||
			!slices.Equal(e.Approvals.From, tt.approvals.From) || e.Approvals.Expire != tt.approvals.Expire):
			t.Errorf("%s: approvals %+v, want %+v", tt.env, e.Approvals, tt.approvals)
		}
	}
}
