// Package auth is gantry's API authentication and roles: tokens that are
// shown once and stored as a hash, revocable, optionally limited to
// environments and to a lifetime, and the three roles (viewer, editor,
// admin) that every API route is checked against.
//
// A token is gnt_<id>_<secret>: the id finds the record, the secret (256
// random bits) proves possession. Only sha256(secret) is stored. A slow
// password hash (bcrypt, argon2) protects low-entropy passwords against
// guessing after a database leak; a 256-bit random secret cannot be guessed
// either way, and a fast hash keeps every API request cheap.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/store"
)

// Role is what a token may do.
type Role string

// The roles, from least to most.
const (
	Viewer Role = "viewer"
	Editor Role = "editor"
	Admin  Role = "admin"
)

var rank = map[Role]int{Viewer: 1, Editor: 2, Admin: 3}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if rank[r] == 0 {
		return "", fmt.Errorf("%w: role %q: use viewer (reads), editor (deploys, rolls back) or admin (everything, tokens and audit)", ErrInput, s)
	}
	return r, nil
}

// AtLeast says whether r includes what o may do.
func (r Role) AtLeast(o Role) bool { return rank[r] > 0 && rank[r] >= rank[o] }

func (r Role) String() string { return string(r) }

// Errors of authentication; match with errors.Is.
var (
	ErrInput     = errors.New("invalid input")
	ErrNoToken   = errors.New("no token")
	ErrBadToken  = errors.New("invalid token")
	ErrExpired   = errors.New("token expired")
	ErrRevoked   = errors.New("token revoked")
	ErrForbidden = errors.New("forbidden")
)

// Prefix starts every gantry token, so that secret scanners and Redact
// recognise one.
const Prefix = "gnt_"

// Identity is who a request authenticated as.
type Identity struct {
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
	Role    Role   `json:"role"`
	// Envs limits the token to these environments; empty means all.
	Envs []string `json:"envs,omitempty"`
}

// CanEnv says whether the identity may act on env.
func (i *Identity) CanEnv(env string) bool {
	return len(i.Envs) == 0 || slices.Contains(i.Envs, env)
}

// Tokens creates, checks and revokes API tokens kept in a store.
type Tokens struct {
	st  *store.Store
	now func() time.Time
	// touched remembers when each token's last use was written, so a busy
	// client costs one write a minute, not one per request.
	mu      sync.Mutex
	touched map[string]time.Time
	// verified remembers tokens that authenticated, for CacheFor, so that
	// a busy client costs no database read per request.
	verified map[[32]byte]verified
}

type verified struct {
	ident   Identity
	expires *time.Time
	at      time.Time
}

// CacheFor is how long a verified token is trusted without reading the
// store again: a token revoked through these Tokens stops at once, one
// revoked by another process (a local gantry token revoke next to a
// server) within CacheFor.
const CacheFor = 2 * time.Second

// TouchEvery is how often a token's last-used time is written at most.
const TouchEvery = time.Minute

// New returns the tokens kept in st.
func New(st *store.Store) *Tokens {
	return &Tokens{st: st, now: time.Now, touched: map[string]time.Time{}, verified: map[[32]byte]verified{}}
}

// CreateOptions describe a new token.
type CreateOptions struct {
	Name string
	Role Role
	Envs []string
	// TTL is the token's lifetime; 0 means it never expires.
	TTL time.Duration
	// CreatedBy names who made it, for the record.
	CreatedBy string
	// KnownEnvs, when set, are the environments Envs may name.
	KnownEnvs []string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Create makes a token and returns its secret, which is never shown again,
// with its record.
func (t *Tokens) Create(ctx context.Context, o CreateOptions) (string, *store.Token, error) {
	if !nameRE.MatchString(o.Name) {
		return "", nil, fmt.Errorf("%w: token name %q: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", ErrInput, o.Name)
	}
	if _, err := ParseRole(string(o.Role)); err != nil {
		return "", nil, err
	}
	if o.TTL < 0 {
		return "", nil, fmt.Errorf("%w: a token's lifetime must be positive", ErrInput)
	}
	envs := []string{}
	for _, e := range o.Envs {
		for _, e := range strings.Split(e, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if o.KnownEnvs != nil && !slices.Contains(o.KnownEnvs, e) {
				return "", nil, fmt.Errorf("%w: environment %q is not in gantry.yaml (it has %s)", ErrInput, e, strings.Join(o.KnownEnvs, ", "))
			}
			if !slices.Contains(envs, e) {
				envs = append(envs, e)
			}
		}
	}
	id, secret := randomID(), randomSecret()
	rec := &store.Token{ID: id, Name: o.Name, Role: string(o.Role), Envs: envs, Hash: hashSecret(secret), CreatedBy: o.CreatedBy}
	if o.TTL > 0 {
		exp := t.now().Add(o.TTL).UTC()
		rec.ExpiresAt = &exp
	}
	if err := t.st.CreateToken(ctx, rec); err != nil {
		if errors.Is(err, store.ErrTokenExists) {
			return "", nil, fmt.Errorf("%w: %v; revoke it first (gantry token revoke %s) or choose another name", ErrInput, err, o.Name)
		}
		return "", nil, err
	}
	return Prefix + id + "_" + secret, rec, nil
}

func randomID() string {
	b := make([]byte, 5)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// split reads gnt_<id>_<secret>.
func split(token string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, Prefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 8 || len(secret) != 43 {
		return "", "", false
	}
	return id, secret, true
}

// Authenticate checks a presented token. The error says which way it
// failed (ErrBadToken, ErrExpired, ErrRevoked) for the audit log; a client
// should be told only that it is not authenticated. The returned identity
// names the token even when it is expired or revoked, for the audit log.
func (t *Tokens) Authenticate(ctx context.Context, token string) (*Identity, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	key := sha256.Sum256([]byte(token))
	now := t.now()
	t.mu.Lock()
	v, ok := t.verified[key]
	t.mu.Unlock()
	if ok && now.Sub(v.at) < CacheFor && (v.expires == nil || now.Before(*v.expires)) {
		ident := v.ident
		t.touch(ctx, ident.TokenID, now)
		return &ident, nil
	}
	id, secret, ok := split(token)
	if !ok {
		return nil, ErrBadToken
	}
	rec, err := t.st.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, err
	}
	want, _ := hex.DecodeString(rec.Hash)
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(want, got[:]) != 1 {
		return nil, ErrBadToken
	}
	ident := &Identity{TokenID: rec.ID, Name: rec.Name, Role: Role(rec.Role), Envs: rec.Envs}
	switch {
	case rec.RevokedAt != nil:
		return ident, ErrRevoked
	case rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt):
		return ident, ErrExpired
	}
	t.mu.Lock()
	if len(t.verified) > 10000 {
		clear(t.verified) // bounded: tokens are few, a flood of them is not kept
	}
	t.verified[key] = verified{ident: *ident, expires: rec.ExpiresAt, at: now}
	t.mu.Unlock()
	t.touch(ctx, rec.ID, now)
	return ident, nil
}

func (t *Tokens) touch(ctx context.Context, id string, now time.Time) {
	t.mu.Lock()
	last, ok := t.touched[id]
	if ok && now.Sub(last) < TouchEvery {
		t.mu.Unlock()
		return
	}
	t.touched[id] = now
	t.mu.Unlock()
	// Best effort: a busy database must not fail the request.
	_ = t.st.TouchToken(context.WithoutCancel(ctx), id, now)
}

// List returns every token, revoked ones included.
func (t *Tokens) List(ctx context.Context) ([]*store.Token, error) {
	l, err := t.st.Tokens(ctx)
	if l == nil {
		l = []*store.Token{}
	}
	return l, err
}

// Revoke revokes the token named nameOrID (its name or its id).
func (t *Tokens) Revoke(ctx context.Context, nameOrID string) (*store.Token, error) {
	rec, err := t.st.RevokeToken(ctx, nameOrID)
	if err == nil {
		t.mu.Lock()
		clear(t.verified)
		t.mu.Unlock()
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v; gantry token list shows the tokens", ErrInput, err)
	}
	return rec, err
}

// ParseDuration reads a lifetime or an age: Go durations (12h, 90m) and
// days (90d, 1d12h is not allowed: use 36h).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 36500 {
			return 0, fmt.Errorf("%w: %q: write days as a whole number like 90d, or a duration like 12h", ErrInput, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: %q is not a duration; write it like 90d, 12h or 30m", ErrInput, s)
	}
	return d, nil
}

// Status is a token's state for listings: active, expired or revoked.
func Status(t *store.Token, now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired"
	}
	return "active"
}
