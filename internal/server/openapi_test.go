package server

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/api"
)

type openapiDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		Security   []map[string]any `json:"security"`
		Parameters []struct {
			Name string `json:"name"`
			In   string `json:"in"`
		} `json:"parameters"`
		Responses map[string]any `json:"responses"`
	} `json:"paths"`
}

// TestOpenAPIMatchesRouter: every route of the router is in api/openapi.json
// and every operation there is a route, with its path parameters, and the
// document marks exactly the public routes as needing no token.
func TestOpenAPIMatchesRouter(t *testing.T) {
	var doc openapiDoc
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	s, err := New(Options{ConfigPath: writeConfig(t), Store: openStore(t)})
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			inDoc[strings.ToUpper(method)+" "+path] = true
		}
	}
	param := regexp.MustCompile(`\{(\w+)\}`)
	for _, rt := range s.Routes() {
		key := rt.Method + " " + rt.Path
		if !inDoc[key] {
			t.Errorf("route %s is not in api/openapi.json", key)
			continue
		}
		delete(inDoc, key)
		op := doc.Paths[rt.Path][strings.ToLower(rt.Method)]
		public := len(op.Security) == 1 && len(op.Security[0]) == 0
		if public != (rt.Rule.Public && rt.Path != "/metrics") {
			t.Errorf("%s: the document says public=%t, the rule %+v", key, public, rt.Rule)
		}
		for _, m := range param.FindAllStringSubmatch(rt.Path, -1) {
			found := false
			for _, p := range op.Parameters {
				found = found || (p.In == "path" && p.Name == m[1])
			}
			if !found {
				t.Errorf("%s: path parameter %s is not documented", key, m[1])
			}
		}
		if len(op.Responses) == 0 {
			t.Errorf("%s: no responses documented", key)
		}
	}
	var extra []string
	for k := range inDoc {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		t.Errorf("api/openapi.json documents %s, which the router does not have", k)
	}
}
