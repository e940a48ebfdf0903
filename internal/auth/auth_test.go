package auth

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/store"
)

func newTokens(t *testing.T) (*Tokens, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return New(st), dir
}

func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	tk, dir := newTokens(t)
	secret, rec, err := tk.Create(ctx, CreateOptions{Name: "ci", Role: Editor, Envs: []string{"staging"}, TTL: time.Hour, CreatedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "gnt_"+rec.ID+"_") || len(secret) != len("gnt_")+8+1+43 {
		t.Fatalf("token %q (id %s)", secret, rec.ID)
	}
	id, err := tk.Authenticate(ctx, secret)
	if err != nil || id.Name != "ci" || id.Role != Editor || !id.CanEnv("staging") || id.CanEnv("production") {
		t.Fatalf("authenticate: %+v, %v", id, err)
	}
	// Only the hash is stored: the secret appears nowhere in the database.
	db, _ := sql.Open("sqlite", "file:"+filepath.Join(dir, store.FileName))
	defer db.Close()
	var stored string
	db.QueryRow(`SELECT id||name||role||envs||hash||created_by FROM tokens`).Scan(&stored)
	if _, s, _ := split(secret); strings.Contains(stored, s) || stored == "" {
		t.Fatalf("stored row %q holds the secret", stored)
	}
	l, _ := tk.List(ctx)
	if len(l) != 1 || l[0].LastUsed == nil {
		t.Fatalf("list %+v: last used not recorded", l)
	}

	// Same name again: refused while the first is active.
	if _, _, err := tk.Create(ctx, CreateOptions{Name: "ci", Role: Viewer}); !errors.Is(err, ErrInput) {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := tk.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := tk.Revoke(ctx, rec.ID); !errors.Is(err, ErrInput) {
		t.Fatalf("revoking twice: %v", err)
	}
	// The name is free again.
	if _, _, err := tk.Create(ctx, CreateOptions{Name: "ci", Role: Viewer}); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	ctx := context.Background()
	tk, _ := newTokens(t)
	clock := time.Now()
	tk.now = func() time.Time { return clock }
	secret, _, err := tk.Create(ctx, CreateOptions{Name: "short", Role: Admin, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	wrong := secret[:len(secret)-1] + map[bool]string{true: "A", false: "B"}[secret[len(secret)-1] != 'A']
	for _, tc := range []struct {
		token string
		want  error
	}{
		{"", ErrNoToken},
		{"nonsense", ErrBadToken},
		{"gnt_", ErrBadToken},
		{"gnt_abcdefgh_" + strings.Repeat("x", 43), ErrBadToken},
		{wrong, ErrBadToken},
		{secret + "x", ErrBadToken},
	} {
		if _, err := tk.Authenticate(ctx, tc.token); !errors.Is(err, tc.want) {
			t.Errorf("token %q: %v, want %v", tc.token, err, tc.want)
		}
	}
	clock = clock.Add(2 * time.Minute)
	if id, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrExpired) || id == nil || id.Name != "short" {
		t.Errorf("expired: %+v %v", id, err)
	}
}

func TestCreateRefusesBadInput(t *testing.T) {
	tk, _ := newTokens(t)
	for _, o := range []CreateOptions{
		{Name: "", Role: Viewer},
		{Name: "has space", Role: Viewer},
		{Name: "x", Role: "root"},
		{Name: "x", Role: Viewer, TTL: -time.Hour},
		{Name: "x", Role: Viewer, Envs: []string{"prod"}, KnownEnvs: []string{"staging"}},
	} {
		if _, _, err := tk.Create(context.Background(), o); !errors.Is(err, ErrInput) {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if l, _ := tk.List(context.Background()); len(l) != 0 {
		t.Errorf("refused tokens were stored: %+v", l)
	}
}

func TestRoles(t *testing.T) {
	if !Admin.AtLeast(Editor) || !Editor.AtLeast(Viewer) || Viewer.AtLeast(Editor) || Role("x").AtLeast(Viewer) {
		t.Error("role order")
	}
	if r, err := ParseRole("Editor"); err != nil || r != Editor {
		t.Errorf("%v %v", r, err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "30m": 30 * time.Minute} {
		if d, err := ParseDuration(in); err != nil || d != want {
			t.Errorf("%s: %v %v", in, d, err)
		}
	}
	for _, in := range []string{"", "d", "-1d", "0d", "1.5d", "forever", "-5m", "0s"} {
		if _, err := ParseDuration(in); !errors.Is(err, ErrInput) {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRevokedElsewhereStopsWithinCacheFor(t *testing.T) {
	ctx := context.Background()
	tk, dir := newTokens(t)
	clock := time.Now()
	tk.now = func() time.Time { return clock }
	secret, _, err := tk.Create(ctx, CreateOptions{Name: "ci", Role: Editor})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// Another process revokes it in the same store.
	st2, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := New(st2).Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(CacheFor)
	if _, err := tk.Authenticate(ctx, secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked elsewhere, after CacheFor: %v", err)
	}
}
