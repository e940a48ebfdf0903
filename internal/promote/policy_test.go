package promote

import (
	"context"
	"errors"
	"strings"
	"testing"

	composetypes "github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// TestApprovalRules is the role and name matrix of who may approve and
// reject a request made by alice.
func TestApprovalRules(t *testing.T) {
	var (
		alice  = Actor{Name: "alice", Role: auth.Admin}
		bob    = Actor{Name: "bob", Role: auth.Editor}
		carol  = Actor{Name: "carol", Role: auth.Admin}
		victor = Actor{Name: "victor", Role: auth.Viewer}
	)
	tests := []struct {
		approvers []string
		actor     Actor
		approve   error // nil: allowed
		reject    error
	}{
		{nil, alice, ErrSelfApproval, nil}, // the requester withdraws, never approves
		{nil, bob, nil, nil},
		{nil, carol, nil, nil},
		{nil, victor, ErrForbidden, ErrForbidden},
		{[]string{"role:admin"}, bob, ErrForbidden, ErrForbidden},
		{[]string{"role:admin"}, carol, nil, nil},
		{[]string{"role:admin"}, alice, ErrSelfApproval, nil},
		{[]string{"role:editor", "carol"}, bob, nil, nil},
		{[]string{"role:editor", "carol"}, carol, nil, nil},
		{[]string{"bob"}, carol, ErrForbidden, ErrForbidden},
		{[]string{"bob"}, bob, nil, nil},
		{[]string{"victor"}, victor, ErrForbidden, ErrForbidden}, // a viewer never approves, even named
		{[]string{"role:viewer"}, victor, ErrForbidden, ErrForbidden},
	}
	for _, tt := range tests {
		r := &store.ApprovalRequest{DeploymentID: 7, Env: "production", RequestedBy: "alice", Required: 1, Approvers: tt.approvers}
		check := func(what string, err, want error) {
			t.Helper()
			switch {
			case want == nil && err != nil:
				t.Errorf("%s by %s with approvers %v: refused: %v", what, tt.actor, tt.approvers, err)
			case want != nil && !errors.Is(err, want):
				t.Errorf("%s by %s with approvers %v: got %v, want %v", what, tt.actor, tt.approvers, err, want)
			case want != nil && !errors.Is(err, deploy.ErrInput):
				t.Errorf("%s by %s: refusal %v is not bad input (exit code 2)", what, tt.actor, err)
			}
		}
		check("approve", checkApprove(r, tt.actor), tt.approve)
		check("reject", checkReject(r, tt.actor), tt.reject)
	}
}

func TestReachable(t *testing.T) {
	env := func(required int, from ...string) *config.Environment {
		return &config.Environment{Name: "production", Protected: true, Approvals: &config.Approvals{Required: required, From: from}}
	}
	tests := []struct {
		env       *config.Environment
		requester string
		ok        bool
	}{
		{env(1), "alice", true},
		{env(2, "alice", "bob"), "carol", true},
		{env(2, "alice", "bob"), "alice", false}, // only bob is left
		{env(1, "alice", "bob"), "alice", true},
		{env(1, "alice"), "alice", false},
		{env(3, "alice", "role:admin"), "alice", true}, // roles may hold anyone
	}
	for _, tt := range tests {
		err := reachable(tt.env, tt.requester)
		if (err == nil) != tt.ok {
			t.Errorf("%v requested by %s: %v", tt.env.Approvals, tt.requester, err)
		}
	}
}

func TestWaitingFor(t *testing.T) {
	r := &store.ApprovalRequest{RequestedBy: "alice", Required: 2, Approvers: []string{"role:admin", "bob"}}
	if got, want := waitingFor(r), "2 more approvals from role:admin or bob, not alice (requester)"; got != want {
		t.Errorf("waitingFor = %q, want %q", got, want)
	}
	r.Decisions = []store.Approval{{Actor: "bob", Decision: store.Approve}}
	if got, want := waitingFor(r), "1 more approval from role:admin or bob, not alice (requester), bob"; got != want {
		t.Errorf("waitingFor = %q, want %q", got, want)
	}
	r.Decisions = append(r.Decisions, store.Approval{Actor: "carol", Decision: store.Approve})
	if got := waitingFor(r); got != "" || remaining(r) != 0 {
		t.Errorf("complete: %q, remaining %d", got, remaining(r))
	}
}

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestRefs(t *testing.T) {
	tests := []struct {
		ref, repo, tag, digest string
		pinned                 bool
	}{
		{"127.0.0.1:5000/shop/web:1.4@" + dA, "127.0.0.1:5000/shop/web", "1.4", dA, true},
		{"127.0.0.1:5000/shop/web@" + dA, "127.0.0.1:5000/shop/web", "", dA, true},
		{"127.0.0.1:5000/shop/web:latest", "127.0.0.1:5000/shop/web", "latest", "", false},
		{"127.0.0.1:5000/shop/web", "127.0.0.1:5000/shop/web", "", "", false},
		{"web@sha256:short", "web", "", "sha256:short", false},
	}
	for _, tt := range tests {
		repo, tag, digest := splitRef(tt.ref)
		if repo != tt.repo || tag != tt.tag || digest != tt.digest || pinnedRef(tt.ref) != tt.pinned {
			t.Errorf("%s: %q %q %q pinned=%t", tt.ref, repo, tag, digest, pinnedRef(tt.ref))
		}
	}
}

// TestPin: each service gets exactly the digest its source ran, copied to
// the target's repository when that is another one; a tag never passes.
func TestPin(t *testing.T) {
	source := &runtime.Plan{Services: map[string]*runtime.Service{
		"web":    {Name: "web", ImageRef: "reg/shop/web@" + dA},
		"api":    {Name: "api", ImageRef: "reg/shop/api:1.4", Digest: dB}, // a tag, resolved by the host
		"local":  {Name: "local", ImageRef: "shop/local:dev"},             // built on the host, no digest
		"debug":  {Name: "debug", ImageRef: "reg/shop/debug@" + dA},       // not in production
		"worker": {Name: "worker", ImageRef: "reg/shop/worker@" + dB},
	}}
	model := func(images map[string]string) *config.Model {
		m := &config.Model{Env: &config.Environment{Name: "production"}, Compose: &composetypes.Project{Services: composetypes.Services{}}}
		for name, img := range images {
			m.Order = append(m.Order, name)
			sc := composetypes.ServiceConfig{Name: name}
			sc.Image = img // a field of an embedded struct
			m.Compose.Services[name] = sc
		}
		return m
	}
	var copies []string
	copier := func(_ context.Context, src, dst string) error {
		copies = append(copies, src+" -> "+dst)
		return nil
	}
	got, err := pin(context.Background(), copier, "staging", source, model(map[string]string{
		"web":     "reg/shop/web:latest",
		"api":     "reg/prod/api",
		"worker":  "reg/shop/worker:whatever",
		"metrics": "reg/ops/metrics@" + dA, // production's own, pinned
	}), "1.4.0")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web": "reg/shop/web@" + dA, "api": "reg/prod/api@" + dB, "worker": "reg/shop/worker@" + dB}
	if len(got) != len(want) {
		t.Errorf("images %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	if len(copies) != 1 || copies[0] != "reg/shop/api@"+dB+" -> reg/prod/api" {
		t.Errorf("copies %v", copies)
	}

	for name, m := range map[string]*config.Model{
		"a service built on the host": model(map[string]string{"local": "shop/local:dev"}),
		"a tag the source never ran":  model(map[string]string{"metrics": "reg/ops/metrics:latest"}),
	} {
		if _, err := pin(context.Background(), copier, "staging", source, m, "1.4.0"); !errors.Is(err, ErrNotPromotable) || !errors.Is(err, deploy.ErrInput) {
			t.Errorf("%s: %v", name, err)
		}
	}
	failing := func(context.Context, string, string) error { return errors.New("registry down") }
	if _, err := pin(context.Background(), failing, "staging", source, model(map[string]string{"api": "reg/prod/api"}), "1.4.0"); err == nil ||
		!strings.Contains(err.Error(), "registry down") || !strings.Contains(err.Error(), "reg/prod/api") {
		t.Errorf("failed copy: %v", err)
	}
}

func TestActorValidate(t *testing.T) {
	for _, a := range []Actor{{Name: "", Role: auth.Admin}, {Name: "a b", Role: auth.Admin}, {Name: "alice", Role: "root"}} {
		if err := a.validate(); !errors.Is(err, deploy.ErrInput) {
			t.Errorf("%+v: %v", a, err)
		}
	}
	if err := (Actor{Name: "alice@example.com", Role: auth.Viewer}).validate(); err != nil {
		t.Error(err)
	}
}

// FuzzSplitRef: any reference splits without panicking into a repository
// without digest, a tag without a slash, and pieces that add up again.
func FuzzSplitRef(f *testing.F) {
	for _, s := range []string{"reg:5000/shop/web:1.4@" + dA, "web", "a:b:c", "a@b@c", ":", "@", "reg:5000/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		repo, tag, digest := splitRef(ref)
		if strings.Contains(repo, "@") || strings.Contains(tag, "/") {
			t.Fatalf("%q: repo %q tag %q", ref, repo, tag)
		}
		if len(repo)+len(tag)+len(digest) > len(ref) {
			t.Fatalf("%q split into more than it holds: %q %q %q", ref, repo, tag, digest)
		}
		if pinnedRef(ref) && !strings.HasPrefix(digest, "sha256:") {
			t.Fatalf("%q pinned without a sha256 digest", ref)
		}
	})
}
