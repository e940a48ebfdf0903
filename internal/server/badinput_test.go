package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

type bad struct {
	name        string
	method      string // default: the route's
	path        string
	body        string
	contentType string
	want        int
}

// TestBadInputChangesNothing sends every route with a body (and every
// route with parameters) malformed JSON, unknown fields, bodies over 1 MiB,
// wrong types and bad parameters: each gets a 4xx JSON error that says what
// is wrong, and the record is the same afterwards. A route that takes a body
// and has no cases here fails the test.
func TestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t)
	seed(t, f)
	huge := `{"release":"` + strings.Repeat("x", MaxBody+10) + `"}`
	bodyCases := func(path string, typed ...bad) []bad {
		out := []bad{
			{name: "malformed", path: path, body: `{"release": `, want: 400},
			{name: "not json", path: path, body: `release=1`, want: 400},
			{name: "array", path: path, body: `[]`, want: 400},
			{name: "two objects", path: path, body: `{} {}`, want: 400},
			{name: "unknown field", path: path, body: `{"nope": 1}`, want: 400},
			{name: "huge", path: path, body: huge, want: 413},
			{name: "text/plain", path: path, body: `{}`, contentType: "text/plain", want: 415},
		}
		return append(out, typed...)
	}
	cases := map[string][]bad{
		"POST /api/v1/envs/{env}/deploy": bodyCases("/api/v1/envs/staging/deploy",
			bad{name: "release a number", path: "/api/v1/envs/staging/deploy", body: `{"release": 5}`, want: 400},
			bad{name: "images a string", path: "/api/v1/envs/staging/deploy", body: `{"images": "web=x"}`, want: 400},
			bad{name: "image a number", path: "/api/v1/envs/staging/deploy", body: `{"images": {"web": 1}}`, want: 400},
			bad{name: "unknown service", path: "/api/v1/envs/staging/deploy", body: `{"images": {"nope": "127.0.0.1:1/x:1"}}`, want: 422},
			bad{name: "empty image", path: "/api/v1/envs/staging/deploy", body: `{"images": {"web": ""}}`, want: 422},
			bad{name: "control character", path: "/api/v1/envs/staging/deploy", body: `{"release": "a\u0007b"}`, want: 422},
			bad{name: "unknown env", path: "/api/v1/envs/nope/deploy", body: `{}`, want: 404},
		),
		"POST /api/v1/envs/{env}/rollback": bodyCases("/api/v1/envs/staging/rollback",
			bad{name: "to a number", path: "/api/v1/envs/staging/rollback", body: `{"to": 1}`, want: 400},
			bad{name: "never deployed", path: "/api/v1/envs/staging/rollback", body: `{"to": "9.9.9"}`, want: 422},
		),
		"POST /api/v1/envs/{env}/canary": bodyCases("/api/v1/envs/staging/canary",
			bad{name: "action a number", path: "/api/v1/envs/staging/canary", body: `{"action": 1}`, want: 400},
			bad{name: "action unknown", path: "/api/v1/envs/staging/canary", body: `{"action": "promote"}`, want: 422},
			bad{name: "no canary running", path: "/api/v1/envs/staging/canary", body: `{"action": "abort"}`, want: 422},
		),
		"POST /api/v1/tokens": bodyCases("/api/v1/tokens",
			bad{name: "role unknown", path: "/api/v1/tokens", body: `{"name": "x", "role": "root"}`, want: 422},
			bad{name: "no name", path: "/api/v1/tokens", body: `{"role": "viewer"}`, want: 422},
			bad{name: "empty", path: "/api/v1/tokens", body: ``, want: 422},
			bad{name: "envs a string", path: "/api/v1/tokens", body: `{"name": "x", "role": "viewer", "envs": "staging"}`, want: 400},
			bad{name: "env unknown", path: "/api/v1/tokens", body: `{"name": "x", "role": "viewer", "envs": ["qa"]}`, want: 422},
			bad{name: "expires bad", path: "/api/v1/tokens", body: `{"name": "x", "role": "viewer", "expires": "soon"}`, want: 422},
			bad{name: "name taken", path: "/api/v1/tokens", body: `{"name": "viewer", "role": "viewer"}`, want: 422},
		),
		"POST /api/v1/envs/{env}/promote": bodyCases("/api/v1/envs/staging/promote",
			bad{name: "from a number", path: "/api/v1/envs/staging/promote", body: `{"from": 1}`, want: 400},
			bad{name: "no from", path: "/api/v1/envs/staging/promote", body: `{}`, want: 422},
			bad{name: "unknown from", path: "/api/v1/envs/staging/promote", body: `{"from": "qa"}`, want: 422},
			bad{name: "to itself", path: "/api/v1/envs/staging/promote", body: `{"from": "staging"}`, want: 422},
		),
		"POST /api/v1/deployments/{id}/approve": bodyCases("/api/v1/deployments/1/approve",
			bad{name: "comment a number", path: "/api/v1/deployments/1/approve", body: `{"comment": 1}`, want: 400},
			bad{name: "bad id", path: "/api/v1/deployments/x/approve", body: `{}`, want: 400},
			bad{name: "unknown id", path: "/api/v1/deployments/99999/approve", body: `{}`, want: 404},
			bad{name: "not a promotion", path: "/api/v1/deployments/1/approve", body: `{}`, want: 404},
		),
		"POST /api/v1/deployments/{id}/reject": bodyCases("/api/v1/deployments/1/reject",
			bad{name: "no comment", path: "/api/v1/deployments/1/reject", body: `{}`, want: 422},
			bad{name: "comment a list", path: "/api/v1/deployments/1/reject", body: `{"comment": ["x"]}`, want: 400},
		),
		"GET /api/v1/deployments": {
			{name: "pending word", path: "/api/v1/deployments?pending=maybe", want: 400},
			{name: "unknown env", path: "/api/v1/deployments?env=nope", want: 404},
			{name: "limit", path: "/api/v1/deployments?limit=-5", want: 400},
		},
		"DELETE /api/v1/tokens/{token}": {{name: "unknown", path: "/api/v1/tokens/nobody", want: 404}},
		"GET /api/v1/deployments/{id}": {
			{name: "not a number", path: "/api/v1/deployments/abc", want: 400},
			{name: "zero", path: "/api/v1/deployments/0", want: 400},
			{name: "unknown", path: "/api/v1/deployments/999999", want: 404},
		},
		"GET /api/v1/envs/{env}/history": {
			{name: "limit word", path: "/api/v1/envs/staging/history?limit=many", want: 400},
			{name: "limit negative", path: "/api/v1/envs/staging/history?limit=-1", want: 400},
			{name: "unknown env", path: "/api/v1/envs/nope/history", want: 404},
		},
		"GET /api/v1/envs/{env}/status":  {{name: "unknown env", path: "/api/v1/envs/nope/status", want: 404}},
		"GET /api/v1/releases":           {{name: "limit word", path: "/api/v1/releases?limit=x", want: 400}},
		"GET /api/v1/releases/{version}": {{name: "unknown", path: "/api/v1/releases/9.9.9", want: 404}},
		"GET /api/v1/audit": {
			{name: "since", path: "/api/v1/audit?since=yesterday", want: 400},
			{name: "until", path: "/api/v1/audit?until=later", want: 400},
			{name: "outcome", path: "/api/v1/audit?outcome=maybe", want: 400},
			{name: "limit", path: "/api/v1/audit?limit=1e9", want: 400},
			{name: "before_id", path: "/api/v1/audit?before_id=x", want: 400},
		},
		"GET /api/v1/audit/export": {{name: "since", path: "/api/v1/audit/export?since=x", want: 400}},
		"POST /api/v1/audit/prune": bodyCases("/api/v1/audit/prune",
			bad{name: "no before", path: "/api/v1/audit/prune", body: `{}`, want: 422},
			bad{name: "before a number", path: "/api/v1/audit/prune", body: `{"before": 365}`, want: 400},
			bad{name: "before a word", path: "/api/v1/audit/prune", body: `{"before": "last year"}`, want: 422},
		),
		"POST /api/v1/alerts/{id}/ack": {
			{name: "bad id", path: "/api/v1/alerts/x/ack", want: 400},
			{name: "unknown id", path: "/api/v1/alerts/99999/ack", want: 404},
		},
		"GET /api/v1/alerts": {
			{name: "all", path: "/api/v1/alerts?all=maybe", want: 400},
			{name: "limit", path: "/api/v1/alerts?limit=x", want: 400},
		},
		"unrouted": {
			{name: "no such route", method: "GET", path: "/api/v1/nope", want: 404},
			{name: "wrong method", method: "PUT", path: "/api/v1/envs/staging/deploy", body: `{}`, want: 405},
		},
	}
	before := f.record()
	for _, rt := range f.srv.Routes() {
		key := rt.Method + " " + rt.Path
		if rt.Method != http.MethodGet && len(cases[key]) == 0 {
			t.Errorf("route %s takes input and has no bad-input cases: add them", key)
		}
	}
	for key, cs := range cases {
		method, _, _ := strings.Cut(key, " ")
		for _, c := range cs {
			m := c.method
			if m == "" {
				m = method
			}
			who := "admin"
			var r response
			if m == http.MethodGet || (m == http.MethodDelete && c.body == "") {
				r = f.do(who, m, c.path, nil)
			} else {
				hdr := []string{}
				if c.contentType != "" {
					hdr = []string{"Content-Type", c.contentType}
				}
				r = f.do(who, m, c.path, strings.NewReader(c.body), hdr...)
			}
			if r.status != c.want {
				t.Errorf("%s %s: %d, want %d: %.300s", key, c.name, r.status, c.want, r.body)
				continue
			}
			var e Error
			if err := json.Unmarshal(r.body, &e); err != nil || e.Message == "" || e.Code == "" || e.ExitCode != 2 {
				t.Errorf("%s %s: not a clear JSON error: %.300s", key, c.name, r.body)
			}
		}
	}
	if after := f.record(); after != before {
		t.Errorf("bad input changed the record:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
