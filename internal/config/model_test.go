package config

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// loadProject loads a gantry file of testdata/project, the compose fixture:
// compose.yaml with an override file, a per-environment file, .env
// interpolation, a profile and an `extends`.
func loadProject(t *testing.T, name string) *File {
	t.Helper()
	f, err := Load(filepath.Join("testdata", "project", name))
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	return f
}

func resolve(t *testing.T, f *File, env string) *Model {
	t.Helper()
	m, err := f.Resolve(context.Background(), env)
	if err != nil {
		t.Fatalf("Resolve %s: %v", env, err)
	}
	return m
}

func TestResolve(t *testing.T) {
	f := loadProject(t, "gantry.yaml")
	m := resolve(t, f, "staging")

	if got, want := strings.Join(m.Compose.ServiceNames(), ","), "db,debug,migrate,web,worker"; got != want {
		t.Errorf("services = %s, want %s (debug comes with the staging profile)", got, want)
	}
	if m.Env.Name != "staging" || m.File != f {
		t.Errorf("Model.Env = %q, Model.File = %p", m.Env.Name, m.File)
	}

	web := m.Compose.Services["web"]
	// .env interpolation, and SHOP_TAG's default (dev) not used.
	if web.Image != "registry.example.com/shop/web:1.2.3" {
		t.Errorf("web image = %q, want registry.example.com/shop/web:1.2.3 (from .env)", web.Image)
	}
	// gantry.yaml's services.worker.image wins over the compose file.
	if got := m.Compose.Services["worker"].Image; got != "registry.example.com/shop/worker:pinned" {
		t.Errorf("worker image = %q, want the gantry.yaml override", got)
	}
	// extends: from common.yaml; override: from compose.override.yaml.
	if v := web.Environment["LOG_LEVEL"]; v == nil || *v != "info" {
		t.Errorf("web LOG_LEVEL = %v, want info (from extends)", v)
	}
	if web.Labels["shop.extended"] != "true" {
		t.Errorf("web labels = %v, want shop.extended from extends", web.Labels)
	}
	if v := web.Environment["OVERRIDE"]; v == nil || *v != "yes" {
		t.Errorf("web OVERRIDE = %v, want yes (from compose.override.yaml)", v)
	}
	if _, ok := web.Environment["APP_ENV"]; ok {
		t.Error("staging has APP_ENV, which only compose.production.yaml sets")
	}

	// The compose project is <project>-<env>, so two environments on one
	// host never share a network or a volume.
	if m.Compose.Name != "shop-staging" || ComposeName("shop", "staging") != "shop-staging" {
		t.Errorf("compose project = %q, want shop-staging", m.Compose.Name)
	}
	if n := m.Compose.Networks["default"].Name; n != "shop-staging_default" {
		t.Errorf("default network = %q, want shop-staging_default", n)
	}
	if v := m.Compose.Volumes["data"].Name; v != "shop-staging_data" {
		t.Errorf("data volume = %q, want shop-staging_data", v)
	}

	if got, want := strings.Join(m.Order, ","), "db,debug,migrate,web,worker"; got != want {
		t.Errorf("Order = %s, want %s", got, want)
	}

	for svc, want := range map[string]Strategy{
		"web":     StrategyStopFirst,  // 8080:8080 holds a fixed host port
		"worker":  StrategyStartFirst, // 127.0.0.1::8080 is ephemeral
		"db":      StrategyStartFirst, // no ports
		"migrate": "job",              // web waits for service_completed_successfully
	} {
		if got := m.Strategy(svc); got != want {
			t.Errorf("staging Strategy(%s) = %s, want %s", svc, got, want)
		}
	}
	if !m.IsJob("migrate") || m.IsJob("web") || m.IsJob("db") {
		t.Errorf("IsJob: migrate %v, web %v, db %v; want only migrate", m.IsJob("migrate"), m.IsJob("web"), m.IsJob("db"))
	}
}

func TestResolvePerEnvironmentComposeFiles(t *testing.T) {
	f := loadProject(t, "gantry.yaml")
	m := resolve(t, f, "production")

	if got, want := strings.Join(m.Compose.ServiceNames(), ","), "db,migrate,web,worker"; got != want {
		t.Errorf("services = %s, want %s (no debug profile in production)", got, want)
	}
	if m.Compose.Name != "shop-production" {
		t.Errorf("compose project = %q", m.Compose.Name)
	}
	if v := m.Compose.Volumes["data"].Name; v != "shop-production_data" {
		t.Errorf("data volume = %q, want shop-production_data", v)
	}
	web := m.Compose.Services["web"]
	if v := web.Environment["APP_ENV"]; v == nil || *v != "production" {
		t.Errorf("web APP_ENV = %v, want production from compose.production.yaml", v)
	}
	if _, ok := web.Environment["OVERRIDE"]; ok {
		t.Error("production uses compose_files, so compose.override.yaml must not apply")
	}
	// Explicit start-first applies even to a fixed host port; jobs stay jobs.
	if got := m.Strategy("web"); got != StrategyStartFirst {
		t.Errorf("production Strategy(web) = %s, want start-first", got)
	}
	if got := m.Strategy("migrate"); got != "job" {
		t.Errorf("production Strategy(migrate) = %s, want job", got)
	}
}

// TestResolveEnvFiles checks that an environment's env_files replace the
// project's .env, as docker compose --env-file does.
func TestResolveEnvFiles(t *testing.T) {
	m := resolve(t, loadProject(t, "gantry.yaml"), "qa")
	if got := m.Compose.Services["web"].Image; got != "qa.example.com/shop/web:qa-7" {
		t.Errorf("web image = %q, want qa.example.com/shop/web:qa-7 from qa.env", got)
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		file, env string
		field     string
		msg       []string
	}{
		{"unknown-service.gantry.yaml", "staging", "services.wbe",
			[]string{`no service "wbe" in the compose files`, "known: db, migrate, web, worker"}},
		{"unknown-probe.gantry.yaml", "staging", "environments.staging.health.probes.api",
			[]string{`no service "api"`, "known: db, migrate, web, worker"}},
		{"unknown-route.gantry.yaml", "staging", "environments.staging.routes.api",
			[]string{`no service "api" in the compose files to route to`, "known: db, migrate, web, worker"}},
		{"missing-compose.gantry.yaml", "staging", "compose",
			[]string{"compose file compose.missing.yaml not found", "create it or fix the path"}},
		{"missing-compose.gantry.yaml", "production", "environments.production.compose_files",
			[]string{"compose file compose.prod.yaml not found"}},
		{"missing-env-file.gantry.yaml", "staging", "environments.staging.env_files",
			[]string{"env file nope.env not found", "create it or fix the path"}},
		{"gantry.yaml", "prod", "environments",
			[]string{`no environment "prod"`, "known: production, qa, staging"}},
	} {
		t.Run(tc.file+"/"+tc.env, func(t *testing.T) {
			f := loadProject(t, tc.file)
			_, err := f.Resolve(context.Background(), tc.env)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Resolve = %v (%T), want *config.Error", err, err)
			}
			if ce.Field != tc.field {
				t.Errorf("Field = %q, want %q", ce.Field, tc.field)
			}
			for _, sub := range tc.msg {
				if !strings.Contains(ce.Msg, sub) {
					t.Errorf("Msg = %q; want it to contain %q", ce.Msg, sub)
				}
			}
		})
	}
}

// TestResolveBrokenCompose checks that what compose-go rejects comes back
// as a configuration error that points at `docker compose config`.
func TestResolveBrokenCompose(t *testing.T) {
	for _, tc := range []struct {
		file string
		msg  []string
	}{
		{"invalid.gantry.yaml", []string{"compose file:", "docker compose config"}},
		{"cycle.gantry.yaml", []string{"cycle"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", "broken", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Resolve(context.Background(), "staging")
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Resolve = %v (%T); want *config.Error", err, err)
			}
			for _, sub := range tc.msg {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q; want it to contain %q", err, sub)
				}
			}
		})
	}
}

func TestResolveServiceWithoutImage(t *testing.T) {
	f, err := Load(filepath.Join("testdata", "noimage", "gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Resolve(context.Background(), "staging")
	var ce *Error
	if !errors.As(err, &ce) || ce.Field != "services.app.image" || !strings.Contains(ce.Msg, "has no image") {
		t.Fatalf("Resolve = %v; want a services.app.image error", err)
	}

	f, err = Load(filepath.Join("testdata", "noimage", "with-image.gantry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := resolve(t, f, "staging")
	if got := m.Compose.Services["app"].Image; got != "registry.example.com/app:1.0.0" {
		t.Errorf("app image = %q, want the gantry.yaml image", got)
	}
}

// project builds a compose project by hand: DependencyOrder and Strategy
// are rules over it, and compose-go itself rejects some of the broken
// graphs these tests need.
func project(services ...types.ServiceConfig) *types.Project {
	p := &types.Project{Name: "shop-staging", Services: types.Services{}}
	for _, s := range services {
		p.Services[s.Name] = s
	}
	return p
}

func svc(name string, deps ...string) types.ServiceConfig {
	s := types.ServiceConfig{Name: name}
	s.Image = name + ":1"
	if len(deps) > 0 {
		s.DependsOn = types.DependsOnConfig{}
		for _, d := range deps {
			s.DependsOn[d] = types.ServiceDependency{Condition: types.ServiceConditionStarted, Required: true}
		}
	}
	return s
}

func TestDependencyOrder(t *testing.T) {
	optional := svc("web")
	optional.DependsOn = types.DependsOnConfig{"cache": {Condition: types.ServiceConditionStarted, Required: false}}

	for _, tc := range []struct {
		name     string
		p        *types.Project
		want     string
		errField string
		wantErr  []string
	}{
		{name: "empty", p: project(), want: ""},
		{name: "independent services sort by name", p: project(svc("c"), svc("a"), svc("b")), want: "a,b,c"},
		{name: "dependencies first", p: project(svc("web", "db", "cache"), svc("db"), svc("cache"), svc("api", "web")),
			want: "cache,db,web,api"},
		{name: "diamond", p: project(svc("d", "b", "c"), svc("b", "a"), svc("c", "a"), svc("a")), want: "a,b,c,d"},
		{name: "optional missing dependency is skipped", p: project(optional), want: "web"},
		{name: "cycle", p: project(svc("a", "b"), svc("b", "c"), svc("c", "a")),
			errField: "services.a.depends_on", wantErr: []string{"depends_on forms a cycle: a -> b -> c -> a"}},
		{name: "self cycle", p: project(svc("a", "a")),
			errField: "services.a.depends_on", wantErr: []string{"cycle: a -> a"}},
		{name: "missing dependency", p: project(svc("web", "db")),
			errField: "services.web.depends_on", wantErr: []string{`"db" is not defined, or not enabled by the selected profiles`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, err := DependencyOrder(tc.p)
			if tc.wantErr != nil {
				// A broken graph is a configuration error (exit code 2).
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("order = %v, error %v (%T); want a *config.Error", order, err, err)
				}
				if ce.Field != tc.errField {
					t.Errorf("Field = %q, want %q", ce.Field, tc.errField)
				}
				for _, sub := range tc.wantErr {
					if !strings.Contains(ce.Msg, sub) {
						t.Errorf("Msg %q; want it to contain %q", ce.Msg, sub)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(order, ","); got != tc.want {
				t.Errorf("order = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestStrategy(t *testing.T) {
	port := func(published string) types.ServiceConfig {
		s := svc("web")
		s.Ports = []types.ServicePortConfig{{Target: 8080, Published: published, Protocol: "tcp"}}
		return s
	}
	jobDep := svc("app", "migrate")
	jobDep.DependsOn["migrate"] = types.ServiceDependency{Condition: types.ServiceConditionCompletedSuccessfully, Required: true}

	for _, tc := range []struct {
		name     string
		strategy Strategy
		p        *types.Project
		refs     map[string]ServiceRef
		service  string
		want     Strategy
	}{
		{"auto, fixed host port", StrategyAuto, project(port("8080")), nil, "web", StrategyStopFirst},
		{"auto, ephemeral host port", StrategyAuto, project(port("")), nil, "web", StrategyStartFirst},
		{"auto, published 0", StrategyAuto, project(port("0")), nil, "web", StrategyStartFirst},
		{"auto, port range", StrategyAuto, project(port("8000-8010")), nil, "web", StrategyStartFirst},
		{"auto, no ports", StrategyAuto, project(svc("web")), nil, "web", StrategyStartFirst},
		{"explicit start-first, fixed port", StrategyStartFirst, project(port("8080")), nil, "web", StrategyStartFirst},
		{"explicit stop-first, no ports", StrategyStopFirst, project(svc("web")), nil, "web", StrategyStopFirst},
		{"job from gantry.yaml", StrategyStopFirst, project(port("8080")), map[string]ServiceRef{"web": {Job: true}}, "web", "job"},
		{"job from service_completed_successfully", StrategyStartFirst, project(jobDep, svc("migrate")), nil, "migrate", "job"},
		{"dependant of a job is no job", StrategyAuto, project(jobDep, svc("migrate")), nil, "app", StrategyStartFirst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Model{File: &File{Services: tc.refs}, Env: &Environment{Strategy: tc.strategy}, Compose: tc.p}
			if got := m.Strategy(tc.service); got != tc.want {
				t.Errorf("Strategy(%s) = %s, want %s", tc.service, got, tc.want)
			}
		})
	}
}
