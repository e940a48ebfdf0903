package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadFixtures loads every testdata/{good,bad}.*.yaml: good ones must
// load, bad ones must fail with a *Error that points at the line and field
// and says what is allowed. A fixture without a row in the table fails the
// test, so a new fixture cannot be forgotten.
func TestLoadFixtures(t *testing.T) {
	tests := map[string]struct {
		line  int
		field string
		msg   []string // substrings of Error.Msg
	}{
		"good.minimal.yaml":              {},
		"good.full.yaml":                 {},
		"good.release.yaml":              {},
		"good.release-empty-prefix.yaml": {},
		"good.build.yaml":                {},
		"good.lint.yaml":                 {},
		"good.protected.yaml":            {},
		"good.gates.yaml":                {},
		"good.routes.yaml":               {},
		"good.canary.yaml":               {},
		"good.swarm.yaml":                {},
		"bad.swarm-and-host.yaml": {line: 5, field: "environments.staging.swarm",
			msg: []string{"give the Swarm manager once", "target: swarm"}},
		"bad.target.yaml": {line: 4, field: "environments.staging.target",
			msg: []string{`"kubernetes" is not a target`, "docker", "swarm"}},
		"bad.swarm-url.yaml": {line: 4, field: "environments.staging.swarm",
			msg: []string{`"manager:2377" is not a Swarm manager's Docker host`, "tcp://manager:2376"}},
		"bad.swarm-probes.yaml": {line: 6, field: "environments.staging.health.probes",
			msg: []string{"probes do not run on a swarm", "healthcheck:"}},

		"bad.unknown-field.yaml": {line: 4, field: "environments.staging.helth",
			msg: []string{"unknown field in environment", "allowed: host, compose_files, profiles, env_files, strategy, keep_releases, health"}},
		"bad.unknown-top-field.yaml": {line: 2, field: "enviroments",
			msg: []string{"unknown field in file", "allowed: project, compose, services, environments"}},
		"bad.window.yaml": {line: 5, field: "environments.staging.health.window",
			msg: []string{`"5 minutes" is not a duration`, "30s, 5m or 1h"}},
		"bad.window-zero.yaml": {line: 5, field: "environments.staging.health.window",
			msg: []string{"longer than 0", "default of 5m"}},
		"bad.negative-min-healthy.yaml": {line: 5, field: "environments.staging.health.min_healthy",
			msg: []string{`"-10s" is not a duration`}},
		"bad.health-cache.yaml": {line: 5, field: "environments.staging.health.cache",
			msg: []string{"cache (2h0m0s) may be at most 1h", "default is 30s"}},
		"bad.health-cache-type.yaml": {line: 5, field: "environments.staging.health.cache",
			msg: []string{`"soon" is not a duration`}},
		"bad.strategy.yaml": {line: 4, field: "environments.staging.strategy",
			msg: []string{`"blue-green" is not a strategy`, "auto, start-first, stop-first"}},
		"bad.probe-two-kinds.yaml": {line: 6, field: "environments.staging.health.probes.web",
			msg: []string{"exactly one of http, tcp or exec"}},
		"bad.probe-no-kind.yaml": {line: 6, field: "environments.staging.health.probes.web",
			msg: []string{"exactly one of http, tcp or exec"}},
		"bad.probe-http-port.yaml": {line: 8, field: "environments.staging.health.probes.web.http.port",
			msg: []string{"http probe needs the container port", "port: 8080"}},
		"bad.probe-tcp-port.yaml": {line: 7, field: "environments.staging.health.probes.db.tcp.port",
			msg: []string{"tcp probe needs the container port"}},
		"bad.probe-path.yaml": {line: 9, field: "environments.staging.health.probes.web.http.path",
			msg: []string{"must start with /"}},
		"bad.probe-exec-empty.yaml": {line: 8, field: "environments.staging.health.probes.worker.exec.command",
			msg: []string{"exec probe needs a command"}},
		"bad.min-healthy-over-window.yaml": {line: 6, field: "environments.staging.health.min_healthy",
			msg: []string{"min_healthy (1m0s) must be shorter than the health window (30s)"}},
		// min_healthy is not written, so there is no line; the message names
		// the default that clashes.
		"bad.default-min-healthy-over-window.yaml": {line: 0, field: "environments.staging.health.min_healthy",
			msg: []string{"min_healthy (10s) must be shorter than the health window (5s)"}},
		"bad.not-yaml.yaml": {line: 2, field: "",
			msg: []string{"not valid YAML"}},
		"bad.no-project.yaml": {line: 0, field: "project",
			msg: []string{"missing", "project: shop"}},
		"bad.project-name.yaml": {line: 1, field: "project",
			msg: []string{`"My Shop" is not a valid name`, "lower case letters, digits, - and _"}},
		"bad.no-environments.yaml": {line: 0, field: "environments",
			msg: []string{"no environments", "staging:"}},
		"bad.env-name.yaml": {line: 3, field: "environments.Staging",
			msg: []string{"lower case letters, digits, - and _"}},
		"bad.host.yaml": {line: 4, field: "environments.staging.host",
			msg: []string{`"docker.example.com:2376" is not a Docker host`, "unix:///var/run/docker.sock", "tcp://host:2376", "ssh://user@host"}},
		"bad.keep-releases.yaml": {line: 4, field: "environments.staging.keep_releases",
			msg: []string{"between 0 and 50"}},
		"bad.keep-releases-type.yaml": {line: 4, field: "environments.staging.keep_releases",
			msg: []string{"cannot unmarshal", "into int"}},
		"bad.compose-type.yaml": {line: 3, field: "compose",
			msg: []string{"a file name or a list of file names"}},
		"bad.compose-files-type.yaml": {line: 5, field: "environments.staging.compose_files",
			msg: []string{"a list of file names"}},
		"bad.image.yaml": {line: 4, field: "services.web.image",
			msg: []string{`"shop web" is not an image reference`}},
		"bad.empty.yaml": {line: 0, field: "",
			msg: []string{"empty", "project:", "environments:"}},
		"bad.top-level-list.yaml": {line: 1, field: "",
			msg: []string{"cannot unmarshal !!seq into File"}},
		"bad.duplicate-key.yaml": {line: 5, field: "environments.staging.strategy",
			msg: []string{`"strategy" already defined at line 4`}},
		"bad.release-prefix.yaml": {line: 4, field: "release.tag_prefix",
			msg: []string{`"v1" cannot start a version tag`, "no digit at the end"}},
		"bad.release-initial-version.yaml": {line: 5, field: "release.initial_version",
			msg: []string{`"v1.0" is not a version`, "MAJOR.MINOR.PATCH", "0.1.0"}},
		"bad.release-prerelease.yaml": {line: 4, field: "release.prerelease",
			msg: []string{`"alpha" is not a prerelease style`, "rc", "branch"}},
		"bad.release-bump.yaml": {line: 6, field: "release.bump.deps",
			msg: []string{`"huge" is not a bump`, "none, patch, minor or major"}},
		"bad.release-bump-type.yaml": {line: 5, field: "release.bump.Refactor!",
			msg: []string{`"Refactor!" is not a commit type`}},
		"bad.release-branch.yaml": {line: 4, field: "release.branch",
			msg: []string{`"release candidate" is not a branch name`}},
		"bad.release-unknown-field.yaml": {line: 4, field: "release.prefix",
			msg: []string{"unknown field in release", "allowed: branch, tag_prefix, initial_version, major_on_zero, major_tag_on_zero, prerelease, bump, description, licenses, labels"}},
		"bad.release-major-on-zero-type.yaml": {line: 4, field: "release.major_on_zero",
			msg: []string{"cannot unmarshal", "into bool"}},
		"bad.build-unknown-field.yaml": {line: 5, field: "services.web.build.contxt",
			msg: []string{"unknown field in build", "allowed: context, dockerfile, args, target, binaries, base, path"}},
		"bad.build-binaries-platform.yaml": {line: 6, field: "services.web.build.binaries.amd64",
			msg: []string{`"amd64" is not a platform`, "linux/amd64"}},
		"bad.build-base-without-binaries.yaml": {line: 4, field: "services.web.build",
			msg: []string{"base and path are for images built from binaries"}},
		"bad.registry-immutable.yaml": {line: 5, field: "registry.immutable_tags.0",
			msg: []string{`"^v[0-9+$" is not a regular expression`}},
		"bad.registry-url.yaml": {line: 3, field: "registry.url",
			msg: []string{`"https://ghcr.io/acme" is not a registry`, "127.0.0.1:5000", "embedded"}},
		"bad.release-platform.yaml": {line: 5, field: "release.platforms.1",
			msg: []string{`"arm64" is not a platform`}},
		"bad.release-label.yaml": {line: 5, field: "release.labels.my label",
			msg: []string{`"my label" is not a label key`}},
		"bad.lint-rule-id.yaml": {line: 7, field: "lint.disable.1",
			msg: []string{`"DL3007" is not a rule id`, "GL1001", "gantry lint --rules"}},
		"bad.lint-severity.yaml": {line: 6, field: "lint.severity.GL2006",
			msg: []string{`"high" is not a severity`, "error, warning or info"}},
		"bad.lint-fail-on.yaml": {line: 5, field: "lint.fail_on",
			msg: []string{`"critical" is not a severity`, "error, warning or info"}},
		"bad.lint-unknown-field.yaml": {line: 5, field: "lint.ignore",
			msg: []string{"unknown field in lint", "allowed: disable, severity, fail_on"}},
		"bad.approvals-unprotected.yaml": {line: 4, field: "environments.production.approvals",
			msg: []string{"apply to a protected environment", "protected: true"}},
		"bad.approvals-required.yaml": {line: 6, field: "environments.production.approvals.required",
			msg: []string{"between 1 and 10"}},
		"bad.approvals-role.yaml": {line: 6, field: "environments.production.approvals.from.1",
			msg: []string{`"role:viewer" is not a role that may approve`, "role:admin or role:editor"}},
		"bad.approvals-name.yaml": {line: 6, field: "environments.production.approvals.from.0",
			msg: []string{`"alice smith" is neither a role nor a name`}},
		"bad.approvals-too-few.yaml": {line: 6, field: "environments.production.approvals.required",
			msg: []string{"3 approvals are required but from names only 2 people"}},
		"bad.approvals-expire.yaml": {line: 6, field: "environments.production.approvals.expire",
			msg: []string{`"1 day" is not a duration`}},
		"bad.approvals-expire-zero.yaml": {line: 6, field: "environments.production.approvals.expire",
			msg: []string{"more than 0", "default of 24h"}},
		"bad.approvals-unknown-field.yaml": {line: 6, field: "environments.production.approvals.approvers",
			msg: []string{"unknown field in approvals", "allowed: required, from, expire"}},
		"bad.requires-unknown.yaml": {line: 5, field: "environments.production.requires.0",
			msg: []string{`"stagin" is not an environment`, "known: production, staging"}},
		"bad.requires-self.yaml": {line: 4, field: "environments.production.requires.0",
			msg: []string{"cannot require itself"}},
		"bad.gates-fail-on.yaml": {line: 6, field: "gates.scan.fail_on",
			msg: []string{`"severe" is not a severity`, "critical, high, medium, low or unknown"}},
		"bad.gates-lint-twice.yaml": {line: 7, field: "gates.lint",
			msg: []string{"written once", "gates.lint", "remove one"}},
		"bad.gates-lint-rule-id.yaml": {line: 6, field: "gates.lint.disable.1",
			msg: []string{`"DL3007" is not a rule id`}},
		"bad.gates-server.yaml": {line: 6, field: "gates.scan.server",
			msg: []string{`"127.0.0.1:4954" is not a Trivy server URL`, "http://127.0.0.1:4954"}},
		"bad.gates-unknown-field.yaml": {line: 6, field: "gates.scan.fail-on",
			msg: []string{"unknown field in scan", "allowed: fail_on, ignore_unfixed, ignore_file, server, trivy, cache_dir, offline, timeout"}},
		"bad.gates-timeout-zero.yaml": {line: 6, field: "gates.scan.timeout",
			msg: []string{"longer than 0", "10m"}},
		"bad.require-gates-none.yaml": {line: 5, field: "environments.production.require_gates",
			msg: []string{"require_gates needs a gate", "gates.scan"}},
		"bad.route-host.yaml": {line: 5, field: "environments.staging.routes.web.host",
			msg: []string{`"shop_example.com" is not a valid host name`, "shop.example.com"}},
		"bad.route-host-url.yaml": {line: 5, field: "environments.staging.routes.web.host",
			msg: []string{`"https://shop.example.com" is not a host name`, "without scheme, port or path"}},
		"bad.route-overlap.yaml": {line: 5, field: "environments.staging.routes.web",
			msg: []string{"overlaps the route of api in production (shop.example.com, path /api)", "another host or path"}},
		"bad.route-port.yaml": {line: 5, field: "environments.staging.routes.web",
			msg: []string{"needs the container port", "port: 8080"}},
		"bad.route-path.yaml": {line: 5, field: "environments.staging.routes.web.path",
			msg: []string{`"api" is not a path prefix`, "starts with /"}},
		"bad.route-unknown-field.yaml": {line: 5, field: "environments.staging.routes.web.hostname",
			msg: []string{"unknown field in route", "allowed: host, path, port, canary"}},
		"bad.canary-weight.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.0",
			msg: []string{"weight 0 is not a share of the traffic", "from 1 to 100"}},
		"bad.canary-decreasing.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.1",
			msg: []string{"weight 10 is less than the step before (50)"}},
		"bad.canary-full-early.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.0",
			msg: []string{"only the last step may send all traffic"}},
		"bad.canary-pause-zero.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.0.pause",
			msg: []string{"leave pause out for a step that waits for `gantry promote --step`"}},
		"bad.canary-pause.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.0.pause",
			msg: []string{`"soon" is not a duration`}},
		"bad.canary-no-steps.yaml": {line: 7, field: "environments.staging.routes.web.canary",
			msg: []string{"a canary needs at least one step"}},
		"bad.canary-sticky-both.yaml": {line: 9, field: "environments.staging.routes.web.canary.sticky",
			msg: []string{"a cookie or a header, not both"}},
		"bad.canary-sticky-cookie.yaml": {line: 9, field: "environments.staging.routes.web.canary.sticky.cookie",
			msg: []string{`"my cookie" is not a cookie name`}},
		"bad.canary-ratio.yaml": {line: 9, field: "environments.staging.routes.web.canary.abort.max_error_ratio",
			msg: []string{"max_error_ratio 5 is not a ratio", "from 0 to 1"}},
		"bad.canary-p99-zero.yaml": {line: 9, field: "environments.staging.routes.web.canary.abort.max_p99",
			msg: []string{"max_p99 must be longer than 0"}},
		"bad.canary-min-requests.yaml": {line: 9, field: "environments.staging.routes.web.canary.abort.min_requests",
			msg: []string{"min_requests -1 is negative"}},
		"bad.canary-interval-zero.yaml": {line: 9, field: "environments.staging.routes.web.canary.abort.interval",
			msg: []string{"the interval must be longer than 0"}},
		"bad.canary-unknown-field.yaml": {line: 8, field: "environments.staging.routes.web.canary.steps.0.wait",
			msg: []string{"unknown field in canary step", "allowed: weight, pause"}},
		"bad.proxy-max-body.yaml": {line: 3, field: "proxy.max_body",
			msg: []string{`"lots" is not a size`, "10MB"}},
		"bad.proxy-listen.yaml": {line: 3, field: "proxy.listen",
			msg: []string{`"80" is not a listen address`, ":80"}},
		"bad.proxy-tls.yaml": {line: 3, field: "proxy.tls",
			msg: []string{"needs both cert and key"}},
		"bad.protected-type.yaml": {line: 4, field: "environments.production.protected",
			msg: []string{"cannot unmarshal", "into bool"}},
	}

	good, err := filepath.Glob(filepath.Join("testdata", "good.*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := filepath.Glob(filepath.Join("testdata", "bad.*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := append(good, bad...)
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("fixture %s has no row in the test table", name)
			}
			f, err := Load(path)
			if strings.HasPrefix(name, "good.") {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if f == nil {
					t.Fatal("Load returned nil file and nil error")
				}
				return
			}
			if err == nil {
				t.Fatal("Load succeeded; want an error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is a %T; want *config.Error", err, err)
			}
			if ce.File != path {
				t.Errorf("File = %q, want %q", ce.File, path)
			}
			if ce.Line != want.line {
				t.Errorf("Line = %d, want %d (%v)", ce.Line, want.line, err)
			}
			if ce.Field != want.field {
				t.Errorf("Field = %q, want %q (%v)", ce.Field, want.field, err)
			}
			for _, sub := range want.msg {
				if !strings.Contains(ce.Msg, sub) {
					t.Errorf("Msg = %q; want it to contain %q", ce.Msg, sub)
				}
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("table row %s has no fixture in testdata/", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string(f.Compose); len(got) != 1 || got[0] != "compose.yaml" {
		t.Errorf("Compose = %q, want [compose.yaml]", got)
	}
	abs, _ := filepath.Abs("testdata")
	if f.Dir != abs {
		t.Errorf("Dir = %q, want %q", f.Dir, abs)
	}
	e, err := f.Env("staging")
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "staging" {
		t.Errorf("Name = %q, want staging", e.Name)
	}
	if e.Health.Window.D() != 5*time.Minute {
		t.Errorf("Window = %s, want 5m", e.Health.Window.D())
	}
	if e.Health.MinHealthy.D() != 10*time.Second {
		t.Errorf("MinHealthy = %s, want 10s", e.Health.MinHealthy.D())
	}
	if e.Keep() != 2 {
		t.Errorf("Keep() = %d, want 2", e.Keep())
	}
	if e.Strategy != StrategyAuto {
		t.Errorf("Strategy = %q, want auto", e.Strategy)
	}
	if e.Host != "" {
		t.Errorf("Host = %q, want empty (DOCKER_HOST or the local socket)", e.Host)
	}
}

func TestFullFile(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Project != "shop_2" {
		t.Errorf("Project = %q", f.Project)
	}
	if got := strings.Join(f.Compose, ","); got != "compose.yaml,compose.override.yaml" {
		t.Errorf("Compose = %s", got)
	}
	if f.Services["web"].Image != "registry.example.com/shop/web:1.4.2" || !f.Services["migrate"].Job {
		t.Errorf("Services = %+v", f.Services)
	}
	if got := f.EnvNames(); strings.Join(got, ",") != "production,staging" {
		t.Errorf("EnvNames = %v, want [production staging]", got)
	}

	st := f.Environments["staging"]
	if st.Host != "ssh://deploy@staging.example.com" || st.Strategy != StrategyStartFirst || st.Keep() != 5 {
		t.Errorf("staging = host %q strategy %q keep %d", st.Host, st.Strategy, st.Keep())
	}
	if strings.Join(st.Profiles, ",") != "debug" || strings.Join(st.EnvFiles, ",") != "staging.env" {
		t.Errorf("staging profiles %v env_files %v", st.Profiles, st.EnvFiles)
	}
	if st.Health.Window.D() != 2*time.Minute {
		t.Errorf("staging window = %s", st.Health.Window.D())
	}
	// An explicit 0s is kept, not replaced by the default.
	if st.Health.MinHealthy != 0 {
		t.Errorf("staging min_healthy = %s, want 0s as written", st.Health.MinHealthy.D())
	}
	probes := st.Health.Probes
	web := probes["web"]
	if web.HTTP == nil || web.HTTP.Port != 8080 || web.HTTP.Path != "/" || web.HTTP.Status != 200 {
		t.Errorf("web probe = %+v; want port 8080 and the defaults path / and status 200", web.HTTP)
	}
	if web.Interval.D() != DefaultProbeEvery || web.Timeout.D() != DefaultProbeTimeout {
		t.Errorf("web probe interval %s timeout %s; want defaults %s, %s", web.Interval.D(), web.Timeout.D(), DefaultProbeEvery, DefaultProbeTimeout)
	}
	db := probes["db"]
	if db.TCP == nil || db.TCP.Port != 5432 || db.Interval.D() != 5*time.Second || db.Timeout.D() != 500*time.Millisecond {
		t.Errorf("db probe = %+v", db)
	}
	if w := probes["worker"]; w.Exec == nil || strings.Join(w.Exec.Command, " ") != "/app/worker check" {
		t.Errorf("worker probe = %+v", w)
	}

	if st.Health.Cache.D() != DefaultHealthCache || f.Environments["production"].Health.Cache.D() != 5*time.Second {
		t.Errorf("health view cache: staging %s (want the default %s), production %s (want 5s as written)", st.Health.Cache.D(), DefaultHealthCache, f.Environments["production"].Health.Cache.D())
	}
	pr := f.Environments["production"]
	if pr.Host != "tcp://prod.example.com:2376" || pr.Strategy != StrategyStopFirst || pr.Keep() != 0 {
		t.Errorf("production = host %q strategy %q keep %d", pr.Host, pr.Strategy, pr.Keep())
	}
	if strings.Join(pr.ComposeFiles, ",") != "compose.yaml" {
		t.Errorf("production compose_files = %v (a single string is a one-element list)", pr.ComposeFiles)
	}
	if pr.Health.Window.D() != 90*time.Minute || pr.Health.MinHealthy.D() != 30*time.Second {
		t.Errorf("production health = %s / %s", pr.Health.Window.D(), pr.Health.MinHealthy.D())
	}
	if h := pr.Health.Probes["web"].HTTP; h == nil || h.Path != "/healthz" || h.Status != 204 || h.Port != 8443 {
		t.Errorf("production web probe = %+v", h)
	}
}

func TestReleaseDefaults(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Release{Branch: "main", TagPrefix: "v", InitialVersion: "0.0.0", Prerelease: "rc"}
	for name, got := range map[string]Release{"good.minimal.yaml": f.Release, "DefaultRelease()": DefaultRelease()} {
		if got.Branch != want.Branch || got.TagPrefix != want.TagPrefix || got.InitialVersion != want.InitialVersion ||
			got.Prerelease != want.Prerelease || got.MajorOnZero || got.MajorTagOnZero || len(got.Bump) != 0 {
			t.Errorf("%s: release = %+v, want the defaults %+v", name, got, want)
		}
	}
	// tag_prefix written empty is kept: tags like 1.4.0.
	f, err = Load(filepath.Join("testdata", "good.release-empty-prefix.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Release.TagPrefix != "" || f.Release.Branch != "main" {
		t.Errorf("release = %+v, want an empty tag prefix and the other defaults", f.Release)
	}
}

func TestReleaseFull(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.release.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Release
	if r.Branch != "trunk" || r.TagPrefix != "release/" || r.InitialVersion != "1.0.0" || !r.MajorOnZero ||
		!r.MajorTagOnZero || r.Prerelease != "branch" {
		t.Errorf("release = %+v", r)
	}
	if len(r.Bump) != 4 || r.Bump["refactor"] != "patch" || r.Bump["perf"] != "minor" || r.Bump["docs"] != "none" {
		t.Errorf("bump = %v", r.Bump)
	}
	if r.Description != "The shop's web front end" || r.Licenses != "Apache-2.0" || r.Labels["org.opencontainers.image.vendor"] != "Acme" {
		t.Errorf("labels: description %q licenses %q labels %v", r.Description, r.Licenses, r.Labels)
	}
}

func TestValidBranch(t *testing.T) {
	for b, want := range map[string]bool{
		"main": true, "release/1.x": true, "feature/Login_Page": true, "v1.2": true,
		"": false, "-x": false, "a..b": false, "a b": false, "a~1": false, "a:b": false, "x.lock": false,
		"a/": false, ".hidden": false, "a/.b": false, "a@{1}": false, "a\\b": false, "@": false,
	} {
		if got := validBranch(b); got != want {
			t.Errorf("validBranch(%q) = %v, want %v", b, got, want)
		}
	}
}

func TestEnvUnknown(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "good.full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Env("prod")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Env(prod) error = %v (%T), want *Error", err, err)
	}
	if ce.Field != "environments" || !strings.Contains(ce.Msg, `no environment "prod"; known: production, staging`) {
		t.Errorf("Env(prod) = %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gantry.yaml")
	_, err := Load(path)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(missing) = %v (%T), want *Error", err, err)
	}
	if ce.File != path || !strings.Contains(ce.Msg, "gantry init") {
		t.Errorf("Load(missing) = %v; want the path and a hint to run gantry init", err)
	}
}

// TestComposeDefaultDiscovery checks that without `compose:` Parse picks the
// compose file that exists in the directory, in docker compose's order.
func TestComposeDefaultDiscovery(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{nil, "compose.yaml"},
		{[]string{"docker-compose.yml"}, "docker-compose.yml"},
		{[]string{"docker-compose.yml", "compose.yml"}, "compose.yml"},
		{[]string{"docker-compose.yaml", "compose.yaml"}, "compose.yaml"},
	} {
		dir := t.TempDir()
		for _, name := range tc.files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("services: {}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "gantry.yaml")
		f, err := Parse("gantry.yaml", path, []byte("project: shop\nenvironments: {staging: }\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.Compose, ","); got != tc.want {
			t.Errorf("with %v: Compose = %s, want %s", tc.files, got, tc.want)
		}
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		err  Error
		want string
	}{
		{Error{File: "gantry.yaml", Line: 4, Field: "environments.staging.strategy", Msg: "bad"}, "gantry.yaml:4: environments.staging.strategy: bad"},
		{Error{File: "gantry.yaml", Field: "project", Msg: "missing"}, "gantry.yaml: project: missing"},
		{Error{File: "gantry.yaml", Msg: "empty"}, "gantry.yaml: empty"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(struct{ W Duration }{Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"W":"1m30s"}` {
		t.Errorf("json = %s", b)
	}
}

func TestProbeString(t *testing.T) {
	for _, tc := range []struct {
		p    Probe
		want string
	}{
		{Probe{HTTP: &HTTPProbe{Port: 8080, Path: "/healthz", Status: 200}}, "http GET :8080/healthz expects 200"},
		{Probe{TCP: &TCPProbe{Port: 5432}}, "tcp :5432"},
		{Probe{Exec: &ExecProbe{Command: []string{"pg_isready", "-q"}}}, "exec pg_isready -q"},
		{Probe{}, "none"},
	} {
		if got := ProbeString(tc.p); got != tc.want {
			t.Errorf("ProbeString = %q, want %q", got, tc.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that every error it returns is
// a *Error, and that what it accepts is valid by the rules it enforces.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("testdata", "project", "*.yaml"))
	for _, p := range append(files, more...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("project: a\nenvironments: {s: {health: {window: 1s, min_healthy: 0s}}}"))
	f.Add([]byte("project: a\nenvironments: &e {s: *e}"))
	f.Add([]byte("---\n---\n"))
	dir := f.TempDir()
	abs := filepath.Join(dir, "gantry.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("gantry.yaml", abs, data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is a %T; want *config.Error", err, err)
			}
			if file != nil {
				t.Fatal("Parse returned a file and an error")
			}
			_ = err.Error()
			return
		}
		if !nameRE.MatchString(file.Project) {
			t.Fatalf("accepted project name %q", file.Project)
		}
		if len(file.Environments) == 0 || len(file.Compose) == 0 {
			t.Fatalf("accepted a file without environments or compose files: %+v", file)
		}
		if r := file.Release; !validBranch(r.Branch) || !semverCoreRE.MatchString(r.InitialVersion) ||
			!tagPrefixRE.MatchString(r.TagPrefix) || (r.Prerelease != PrereleaseRC && r.Prerelease != PrereleaseBranch) {
			t.Fatalf("accepted release section %+v", r)
		}
		for name, e := range file.Environments {
			if e == nil || e.Name != name || !nameRE.MatchString(name) {
				t.Fatalf("environment %q = %+v", name, e)
			}
			if e.Health.Window <= 0 || e.Health.MinHealthy < 0 || e.Health.MinHealthy >= e.Health.Window {
				t.Fatalf("environment %s: window %s, min_healthy %s", name, e.Health.Window.D(), e.Health.MinHealthy.D())
			}
			if !contains(strategies, e.Strategy) {
				t.Fatalf("environment %s: strategy %q", name, e.Strategy)
			}
			if k := e.Keep(); k < 0 || k > 50 {
				t.Fatalf("environment %s: keep_releases %d", name, k)
			}
			for svc, p := range e.Health.Probes {
				n := 0
				if p.HTTP != nil {
					n++
					if p.HTTP.Status == 0 || !strings.HasPrefix(p.HTTP.Path, "/") {
						t.Fatalf("probe %s: http %+v", svc, p.HTTP)
					}
				}
				if p.TCP != nil {
					n++
				}
				if p.Exec != nil {
					n++
				}
				if n != 1 || p.Interval <= 0 || p.Timeout <= 0 {
					t.Fatalf("probe %s accepted: %+v", svc, p)
				}
			}
		}
	})
}
