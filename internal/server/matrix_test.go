package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/testenv"
)

// sample is a well-formed request to a route and the status it gets from
// an identity the rule allows.
type sample struct {
	path string
	body string
	ok   int
	// role is the least role the route should need ("" for public), and
	// env whether it acts on one environment: written here independently of
	// the router's rules, so that a wrong rule fails too.
	role auth.Role
	env  bool
	// view: the route's error statuses answer with a body of its own
	// (the health view's 503), not an Error.
	view bool
}

// seed records a staging deployment and a release, for the routes that
// read one.
func seed(t testing.TB, f *fixture) (deploymentID int64) {
	t.Helper()
	ctx := context.Background()
	d := &store.Deployment{Project: f.project, Env: "staging", Release: "seed", Kind: "deploy"}
	if err := f.st.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := f.st.Transition(ctx, d.ID, store.Failed, "seeded for a test"); err != nil {
		t.Fatal(err)
	}
	r := &store.Release{Project: f.project, Version: "0.9.0-seed", Commit: strings.Repeat("a", 40), Tags: []string{"0.9.0-seed"},
		Images: map[string]store.ReleaseImage{"web": {Repository: "127.0.0.1:1/web", Digest: "sha256:" + strings.Repeat("0", 64)}}}
	if err := f.st.BeginRelease(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := f.st.FinishRelease(ctx, r, store.ReleaseReleased, ""); err != nil {
		t.Fatal(err)
	}
	// Alert 1, in staging, for the alert routes.
	if _, _, err := f.st.FireAlert(ctx, &store.Alert{Fingerprint: "seed", Name: "GantryRolledBack", Severity: "warning", Project: f.project, Env: "staging", Summary: "seeded"}); err != nil {
		t.Fatal(err)
	}
	return d.ID
}

func samples(t *testing.T, deploymentID int64) map[string]sample {
	closed := testenv.ClosedPort(t)
	return map[string]sample{
		"GET /livez":                            {path: "/livez", ok: 200},
		"GET /readyz":                           {path: "/readyz", ok: 200},
		"GET /startupz":                         {path: "/startupz", ok: 200},
		"GET /metrics":                          {path: "/metrics", ok: 200, role: auth.Viewer},
		"GET /health/{env}":                     {path: "/health/staging", ok: 503, role: auth.Viewer, env: true, view: true},
		"GET /api/openapi.json":                 {path: "/api/openapi.json", ok: 200, role: auth.Viewer},
		"GET /api/v1/status":                    {path: "/api/v1/status", ok: 200, role: auth.Viewer},
		"GET /api/v1/envs/{env}/status":         {path: "/api/v1/envs/staging/status", ok: 200, role: auth.Viewer, env: true},
		"GET /api/v1/envs/{env}/history":        {path: "/api/v1/envs/staging/history", ok: 200, role: auth.Viewer, env: true},
		"POST /api/v1/envs/{env}/deploy":        {path: "/api/v1/envs/staging/deploy", body: `{"release":"matrix","images":{"web":"` + closed + `/nope:1"}}`, ok: 422, role: auth.Editor, env: true},
		"POST /api/v1/envs/{env}/rollback":      {path: "/api/v1/envs/staging/rollback", body: `{}`, ok: 422, role: auth.Editor, env: true},
		"POST /api/v1/envs/{env}/canary":        {path: "/api/v1/envs/staging/canary", body: `{"action":"step"}`, ok: 422, role: auth.Editor, env: true},
		"GET /api/v1/deployments/{id}":          {path: fmt.Sprintf("/api/v1/deployments/%d", deploymentID), ok: 200, role: auth.Viewer, env: true},
		"GET /api/v1/deployments":               {path: "/api/v1/deployments", ok: 200, role: auth.Viewer},
		"POST /api/v1/envs/{env}/promote":       {path: "/api/v1/envs/staging/promote", body: `{"from":"production"}`, ok: 422, role: auth.Editor, env: true},
		"POST /api/v1/deployments/{id}/approve": {path: fmt.Sprintf("/api/v1/deployments/%d/approve", deploymentID), body: `{}`, ok: 404, role: auth.Editor, env: true},
		"POST /api/v1/deployments/{id}/reject":  {path: fmt.Sprintf("/api/v1/deployments/%d/reject", deploymentID), body: `{"comment":"no"}`, ok: 404, role: auth.Editor, env: true},
		"GET /api/v1/releases":                  {path: "/api/v1/releases", ok: 200, role: auth.Viewer},
		"GET /api/v1/releases/{version}":        {path: "/api/v1/releases/0.9.0-seed", ok: 200, role: auth.Viewer},
		"GET /api/v1/tokens":                    {path: "/api/v1/tokens", ok: 200, role: auth.Admin},
		"POST /api/v1/tokens":                   {path: "/api/v1/tokens", body: `{"name":"matrix-WHO","role":"viewer"}`, ok: 201, role: auth.Admin},
		"DELETE /api/v1/tokens/{token}":         {path: "/api/v1/tokens/nobody", ok: 404, role: auth.Admin},
		"GET /api/v1/audit":                     {path: "/api/v1/audit", ok: 200, role: auth.Admin},
		"GET /api/v1/audit/verify":              {path: "/api/v1/audit/verify", ok: 200, role: auth.Admin},
		"GET /api/v1/audit/export":              {path: "/api/v1/audit/export", ok: 200, role: auth.Admin},
		"POST /api/v1/audit/prune":              {path: "/api/v1/audit/prune", body: `{"before":"2000-01-01"}`, ok: 200, role: auth.Admin},
		"GET /api/v1/alerts":                    {path: "/api/v1/alerts?all=1", ok: 200, role: auth.Viewer},
		"POST /api/v1/alerts/{id}/ack":          {path: "/api/v1/alerts/1/ack", ok: 200, role: auth.Editor, env: true},
	}
}

// identities of the matrix and their roles; "" cannot authenticate.
var identities = []struct {
	who  string
	role auth.Role
}{
	{"none", ""}, {"wrong", ""}, {"expired", ""}, {"revoked", ""},
	{"viewer", auth.Viewer}, {"editor", auth.Editor}, {"admin", auth.Admin},
	{"other-env", auth.Editor}, // an editor limited to production; the samples act on staging
}

func expected(s sample, who string, role auth.Role) int {
	switch {
	case s.role == "":
		return s.ok
	case role == "":
		return http.StatusUnauthorized
	case !role.AtLeast(s.role):
		return http.StatusForbidden
	case who == "other-env" && s.env:
		return http.StatusForbidden
	}
	return s.ok
}

// TestRoleMatrix walks every route of the router's own table, times every
// kind of caller, against the status the route's rule implies; a route
// without a sample request here fails, so a new route cannot go untested.
func TestRoleMatrix(t *testing.T) {
	f := newFixture(t)
	id := seed(t, f)
	smp := samples(t, id)
	type sent struct {
		reqID, key, who string
		status          int
	}
	var all []sent
	for _, rt := range f.srv.Routes() {
		key := rt.Method + " " + rt.Path
		s, ok := smp[key]
		if !ok {
			t.Errorf("route %s has no sample request in the role matrix: add one", key)
			continue
		}
		delete(smp, key)
		for _, id := range identities {
			want := expected(s, id.who, id.role)
			reqID := fmt.Sprintf("matrix-%s-%s-%s", id.who, rt.Method, strings.NewReplacer("/", "_", "{", "", "}", "").Replace(rt.Path))
			var body *strings.Reader
			if s.body != "" {
				body = strings.NewReader(strings.ReplaceAll(s.body, "WHO", id.who))
			}
			var r response
			if body != nil {
				r = f.do(id.who, rt.Method, s.path, body, "X-Request-Id", reqID)
			} else {
				r = f.do(id.who, rt.Method, s.path, nil, "X-Request-Id", reqID)
			}
			if r.status != want {
				t.Errorf("%s as %s: %d, want %d: %s", key, id.who, r.status, want, r.body)
				continue
			}
			if r.header.Get("X-Request-Id") != reqID {
				t.Errorf("%s as %s: X-Request-Id %q, want %q", key, id.who, r.header.Get("X-Request-Id"), reqID)
			}
			if r.status >= 400 && !(s.view && r.status == s.ok) {
				var e Error
				r.json(t, &e)
				if e.Message == "" || e.Code == "" || e.RequestID != reqID {
					t.Errorf("%s as %s: error body %s", key, id.who, r.body)
				}
			}
			if r.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s as %s: 401 without WWW-Authenticate", key, id.who)
			}
			all = append(all, sent{reqID, key, id.who, r.status})
		}
	}
	for key := range smp {
		t.Errorf("the matrix has a sample for %s, which the router does not have", key)
	}

	// A limited token sees only its environments in the all-environments status.
	var sts []struct{ Env string }
	f.get("other-env", "/api/v1/status").json(t, &sts)
	if len(sts) != 1 || sts[0].Env != "production" {
		t.Errorf("status for a token limited to production: %+v", sts)
	}

	// Every refused, denied and state-changing request is in the audit log
	// with its request id and the client's address.
	evs, err := f.srv.audit.List(context.Background(), audit.Filter{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	byReq := map[string]audit.Event{}
	for _, e := range evs {
		byReq[e.RequestID] = e
	}
	for _, s := range all {
		rt := routeByKey(f.srv, s.key)
		e, ok := byReq[s.reqID]
		var want audit.Outcome
		switch {
		case s.status == 401:
			want = audit.LoginFailed
		case s.status == 403:
			want = audit.Denied
		case rt.Action != "" && s.status < 400:
			want = audit.OK
		case rt.Action != "":
			want = audit.Failed
		default:
			if ok {
				t.Errorf("%s as %s (%d), a read, was audited: %+v", s.key, s.who, s.status, e)
			}
			continue
		}
		if !ok {
			t.Errorf("%s as %s (%d) is not in the audit log", s.key, s.who, s.status)
			continue
		}
		if e.Outcome != want || !strings.HasPrefix(e.Client, "127.0.0.1:") {
			t.Errorf("%s as %s (%d): audit event %+v, want outcome %s", s.key, s.who, s.status, e, want)
		}
		if (s.who == "expired" || s.who == "revoked") && e.Actor != s.who {
			t.Errorf("a login with the %s token is recorded as %q", s.who, e.Actor)
		}
	}
	// No token's secret anywhere: not in the log, not in the audit log, not
	// in any answer but the one that created it.
	var export strings.Builder
	f.srv.audit.Export(context.Background(), &export, time.Time{})
	list := f.get("admin", "/api/v1/tokens")
	for _, secret := range f.secrets {
		_, tail, _ := strings.Cut(strings.TrimPrefix(secret, "gnt_"), "_")
		for what, s := range map[string]string{"server log": f.logs.String(), "audit log": export.String(), "token list": string(list.body)} {
			if strings.Contains(s, tail) {
				t.Errorf("the %s holds a token's secret", what)
			}
		}
	}
	if rep, _ := f.srv.audit.Verify(context.Background()); rep.Problem != nil {
		t.Errorf("audit log does not verify: %v", rep.Problem)
	}
}

func routeByKey(s *Server, key string) Route {
	for _, r := range s.Routes() {
		if r.Method+" "+r.Path == key {
			return r
		}
	}
	return Route{}
}

func TestTableRefusesRoutesWithoutRules(t *testing.T) {
	h := func(*call) (int, any, error) { return 200, nil, nil }
	for _, rs := range [][]*route{
		{{Method: "GET", Path: "/x", handle: h}},
		{{Method: "POST", Path: "/x", Rule: Rule{Role: auth.Admin}, handle: h}},
		{{Method: "GET", Path: "/x", Rule: Rule{Role: auth.Admin, Scope: ScopeEnv}, handle: h}},
		{{Method: "GET", Path: "/x", Rule: Rule{Public: true, Role: auth.Viewer}, handle: h}},
		{{Method: "GET", Path: "/x", Rule: Rule{Public: true}}},
		{{Method: "GET", Path: "/x", Rule: Rule{Public: true}, handle: h}, {Method: "GET", Path: "/x", Rule: Rule{Public: true}, handle: h}},
	} {
		if err := checkTable(rs); err == nil {
			b, _ := json.Marshal(rs[0])
			t.Errorf("table %s accepted", b)
		}
	}
}
