package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Model is an environment resolved against the compose files: what gantry
// deploys there.
type Model struct {
	File *File
	Env  *Environment
	// Compose is the compose project, named <project>-<env> so that the
	// networks and volumes of two environments on one host never meet.
	Compose *types.Project
	// Order lists the services in dependency order (dependencies first).
	Order []string
}

// ComposeName is the compose project name of an environment.
func ComposeName(project, env string) string { return project + "-" + env }

// Resolve loads the compose files of an environment with compose-go
// (interpolation, .env, profiles, extends, override files) and applies
// gantry.yaml's image overrides.
func (f *File) Resolve(ctx context.Context, envName string) (*Model, error) {
	project, env, err := f.ComposeProject(ctx, envName)
	if err != nil {
		return nil, err
	}
	for name := range env.Health.Probes {
		if _, ok := project.Services[name]; !ok {
			return nil, &Error{File: filepath.Base(f.Path), Field: "environments." + envName + ".health.probes." + name,
				Msg: fmt.Sprintf("no service %q in the compose files; known: %s", name, strings.Join(project.ServiceNames(), ", "))}
		}
	}
	for _, name := range sortedKeys(env.Routes) {
		if _, ok := project.Services[name]; !ok {
			return nil, &Error{File: filepath.Base(f.Path), Field: "environments." + envName + ".routes." + name,
				Msg: fmt.Sprintf("no service %q in the compose files to route to; known: %s", name, strings.Join(project.ServiceNames(), ", "))}
		}
	}
	if env.IsSwarm() {
		if err := SwarmProblems(project); err != nil {
			return nil, err
		}
	}
	for name, svc := range project.Services {
		if svc.Image == "" {
			return nil, &Error{File: filepath.Base(f.Path), Field: "services." + name + ".image",
				Msg: fmt.Sprintf("service %q has no image; set `image:` in the compose file or under services.%s in gantry.yaml (gantry deploys images; `gantry build` comes with releases)", name, name)}
		}
	}
	order, err := DependencyOrder(project)
	if err != nil {
		return nil, err
	}
	return &Model{File: f, Env: env, Compose: project, Order: order}, nil
}

// ComposeProject loads an environment's compose files with compose-go
// (interpolation, .env, profiles, extends, override files) and applies
// gantry.yaml's image overrides, without requiring what a deploy needs (an
// image for every service): what `gantry lint` checks. project.ComposeFiles
// names the files read.
func (f *File) ComposeProject(ctx context.Context, envName string) (*types.Project, *Environment, error) {
	env, err := f.Env(envName)
	if err != nil {
		return nil, nil, err
	}
	files := []string(f.Compose)
	if len(env.ComposeFiles) > 0 {
		files = env.ComposeFiles
	}
	var paths []string
	for _, c := range files {
		p := c
		if !filepath.IsAbs(p) {
			p = filepath.Join(f.Dir, c)
		}
		if _, err := os.Stat(p); err != nil {
			field := "compose"
			if len(env.ComposeFiles) > 0 {
				field = "environments." + envName + ".compose_files"
			}
			return nil, nil, &Error{File: filepath.Base(f.Path), Field: field,
				Msg: fmt.Sprintf("compose file %s not found; create it or fix the path (relative to %s)", c, f.Dir)}
		}
		paths = append(paths, p)
	}
	// env_files replace the project's .env, as --env-file does for docker
	// compose; with none, WithEnvFiles() picks up <dir>/.env. WithDotEnv
	// reads only what WithEnvFiles selected, and never overrides a value
	// already set, so it runs once, after the selection.
	var envFiles []string
	for _, e := range env.EnvFiles {
		p := e
		if !filepath.IsAbs(p) {
			p = filepath.Join(f.Dir, e)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, nil, &Error{File: filepath.Base(f.Path), Field: "environments." + envName + ".env_files",
				Msg: fmt.Sprintf("env file %s not found; create it or fix the path (relative to %s)", e, f.Dir)}
		}
		envFiles = append(envFiles, p)
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(f.Dir),
		cli.WithName(ComposeName(f.Project, envName)),
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles(env.Profiles),
		cli.WithResolvedPaths(true),
	}
	po, err := cli.NewProjectOptions(paths, opts...)
	if err != nil {
		return nil, nil, &Error{File: strings.Join(files, ", "), Msg: "compose: " + err.Error()}
	}
	project, err := po.LoadProject(ctx)
	if err != nil {
		return nil, nil, &Error{File: strings.Join(files, ", "), Msg: "compose file: " + err.Error() + "; `docker compose config` shows the same model"}
	}
	for name, ref := range f.Services {
		svc, ok := project.Services[name]
		if !ok {
			return nil, nil, &Error{File: filepath.Base(f.Path), Line: 0, Field: "services." + name,
				Msg: fmt.Sprintf("no service %q in the compose files; known: %s", name, strings.Join(project.ServiceNames(), ", "))}
		}
		if ref.Image != "" {
			svc.Image = ref.Image
			project.Services[name] = svc
		}
	}
	return project, env, nil
}

// IsJob says whether a service is a one-shot job that must exit 0.
func (m *Model) IsJob(service string) bool {
	if ref, ok := m.File.Services[service]; ok && ref.Job {
		return true
	}
	for _, s := range m.Compose.Services {
		if d, ok := s.DependsOn[service]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
			return true
		}
	}
	return false
}

// DependencyOrder sorts services so that every service comes after those it
// depends on; ties are broken by name so plans are stable.
func DependencyOrder(p *types.Project) ([]string, error) {
	names := p.ServiceNames()
	sort.Strings(names)
	const (
		unseen = iota
		visiting
		done
	)
	state := map[string]int{}
	var order []string
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return &Error{File: "compose file", Field: "services." + name + ".depends_on", Msg: "depends_on forms a cycle: " + strings.Join(append(path, name), " -> ")}
		}
		state[name] = visiting
		svc := p.Services[name]
		deps := make([]string, 0, len(svc.DependsOn))
		for d := range svc.DependsOn {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if _, ok := p.Services[d]; !ok {
				if svc.DependsOn[d].Required {
					return &Error{File: "compose file", Field: "services." + name + ".depends_on", Msg: fmt.Sprintf("%q is not defined, or not enabled by the selected profiles", d)}
				}
				continue
			}
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, name)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Strategy is how a service is replaced in this environment: "job" for
// one-shot jobs, "blue-green" for a routed service, else "stop-first" or
// "start-first". With strategy auto,
// a service that holds a fixed host port is stop-first: its old and new
// containers cannot bind the port side by side.
func (m *Model) Strategy(service string) Strategy {
	if m.IsJob(service) {
		return "job"
	}
	if r := m.Env.Routes[service]; r != nil {
		// Routed by the gantry proxy: started beside the old container,
		// then switched (deploy/bluegreen.go), or stepped as a canary
		// (deploy/canary.go; its first deploy is blue/green).
		if r.Canary != nil {
			return StrategyCanary
		}
		return StrategyBlueGreen
	}
	switch m.Env.Strategy {
	case StrategyStopFirst, StrategyStartFirst:
		return m.Env.Strategy
	}
	if m.FixedHostPort(service) {
		return StrategyStopFirst
	}
	return StrategyStartFirst
}

// FixedHostPort says whether a service publishes a port on a fixed host
// port, which its old and new containers cannot bind at the same time.
func (m *Model) FixedHostPort(service string) bool {
	for _, p := range m.Compose.Services[service].Ports {
		if p.Published != "" && p.Published != "0" && !strings.Contains(p.Published, "-") {
			return true
		}
	}
	return false
}

// ProbeString describes a probe in one line.
func ProbeString(p Probe) string {
	switch {
	case p.HTTP != nil:
		return fmt.Sprintf("http GET :%d%s expects %d", p.HTTP.Port, p.HTTP.Path, p.HTTP.Status)
	case p.TCP != nil:
		return fmt.Sprintf("tcp :%d", p.TCP.Port)
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " ")
	}
	return "none"
}
