package e2e

import (
	"strings"
	"testing"
)

// Bad input gets a clear error, a non-zero exit code, and changes nothing:
// each case runs against an environment that serves release 1.0.0, and the
// containers and the history must be exactly as before.
func TestBadInputChangesNothing(t *testing.T) {
	p := newProject(t, "bad", gantryStaging, webFixed)
	p.deploy(0, "staging", "--release", "1.0.0")
	p.write("gantry-bad.yaml", `project: PROJECT
environments:
  staging:
    health:
      window: 5x
`)
	p.write("gantry-typo.yaml", `project: PROJECT
environments:
  staging:
    helth: { window: 5m }
`)
	p.write("gantry-badcompose.yaml", `project: PROJECT
compose: compose-bad.yaml
environments:
  staging: {}
`)
	p.write("compose-bad.yaml", `services:
  web:
    image: IMG_healthy
    ports: 8080
`)
	p.write("gantry-nosecret.yaml", `project: PROJECT
compose: compose-secret.yaml
environments:
  staging: {}
`)
	p.write("compose-secret.yaml", `services:
  web:
    image: IMG_healthy
    secrets: [db_password]
secrets:
  db_password: { file: ./missing.txt }
`)
	p.write("gantry-cycle.yaml", `project: PROJECT
compose: compose-cycle.yaml
environments:
  staging: {}
`)
	p.write("compose-cycle.yaml", `services:
  a: { image: IMG_healthy, depends_on: [b] }
  b: { image: IMG_healthy, depends_on: [a] }
`)

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"malformed gantry.yaml", nil, []string{"-f", "gantry-bad.yaml", "deploy", "staging"}, 2,
			[]string{"gantry-bad.yaml:5", "environments.staging.health.window", "not a duration"}},
		{"unknown field", nil, []string{"-f", "gantry-typo.yaml", "deploy", "staging"}, 2,
			[]string{"gantry-typo.yaml:4", "helth", "allowed:", "health"}},
		{"malformed compose file", nil, []string{"-f", "gantry-badcompose.yaml", "deploy", "staging"}, 2,
			[]string{"compose", "ports"}},
		{"dependency cycle", nil, []string{"-f", "gantry-cycle.yaml", "deploy", "staging"}, 2,
			[]string{"cycle"}},
		{"unknown environment", nil, []string{"deploy", "prod"}, 2,
			[]string{`no environment "prod"`, "known: staging"}},
		{"no environment given", nil, []string{"deploy"}, 2,
			[]string{"needs the environment's name"}},
		{"unknown service", nil, []string{"deploy", "staging", "--image", "api=IMG_healthy"}, 2,
			[]string{`no service "api"`, "known: web"}},
		{"release name with a space", nil, []string{"deploy", "staging", "--release", "1.0 final"}, 2,
			[]string{"release name", "without spaces"}},
		{"malformed --image", nil, []string{"deploy", "staging", "--image", "web"}, 2,
			[]string{"SERVICE=IMAGE"}},
		{"missing secret file", nil, []string{"-f", "gantry-nosecret.yaml", "deploy", "staging"}, 2,
			[]string{"secret db_password", "missing.txt does not exist"}},
		{"image that does not exist", nil, []string{"deploy", "staging", "--image", "web=127.0.0.1:1/nope/app:9.9.9"}, 2,
			[]string{"127.0.0.1:1/nope/app:9.9.9", "pulling it failed"}},
		{"invalid image reference", nil, []string{"deploy", "staging", "--image", "web=NOT A REF"}, 2,
			[]string{"not a valid image reference"}},
		{"unreachable Docker daemon", []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, []string{"deploy", "staging"}, 6,
			[]string{"cannot reach the Docker daemon", "/nonexistent/docker.sock", "DOCKER_HOST"}},
		{"rollback with nothing earlier", nil, []string{"rollback", "staging"}, 2,
			[]string{"nothing earlier to roll back to"}},
		{"rollback to an unknown release", nil, []string{"rollback", "staging", "--to", "0.0.1"}, 2,
			[]string{`release "0.0.1" never succeeded`}},
		{"unknown flag", nil, []string{"deploy", "staging", "--bogus"}, 2,
			[]string{"unknown flag", "--help"}},
		{"bad output format", nil, []string{"status", "--output", "yaml"}, 2,
			[]string{"--output", "text or json"}},
	}
	before, history := p.snapshot(), len(p.history("staging"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.env = tc.env
			defer func() { p.env = nil }()
			r := p.run(tc.args...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %s", tc.code, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, p.expand(w)) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "panic") {
				t.Fatalf("panic: %s", r.stderr)
			}
			if after := p.snapshot(); after != before {
				t.Fatalf("containers changed:\nbefore %s\nafter  %s", before, after)
			}
			if n := len(p.history("staging")); n != history {
				t.Fatalf("history grew from %d to %d entries", history, n)
			}
		})
	}
	if v := p.version(); v != "1.0.0" {
		t.Fatalf("serving %q after bad input, want 1.0.0", v)
	}
}
