package lint

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
)

// Options says what gantry lint reads.
type Options struct {
	// Paths are Dockerfiles, compose files, gantry.yaml files or
	// directories. A directory is searched: a gantry.yaml in it is linted as
	// a project, and Dockerfiles and compose files outside any project on
	// their own. Empty: the project of File.
	Paths []string
	// File is the project's gantry.yaml (nil when there is none). Without
	// Paths its Dockerfiles (services.<svc>.build and the compose files'
	// build sections) and its compose model in each environment are linted;
	// with Paths, only its lint section applies.
	File *config.File
	// Envs limits the environments linted; empty means all.
	Envs []string
	// FailOn overrides the threshold of File's lint section (default error).
	FailOn Severity
	// BaseDir is what findings' paths are relative to (default: the
	// working directory).
	BaseDir string
}

// Protected reports whether an environment is protected, where a floating
// image tag is an error (GL2009): `protected: true` in gantry.yaml (releases
// reach it only through gantry promote), or named production or prod, with
// or without it. The seed notes' "never deploy :latest to production"
// should not depend on remembering the flag.
func Protected(e *config.Environment) bool {
	return e.Protected || e.Name == "production" || e.Name == "prod"
}

// run is one lint run's state.
type run struct {
	ctx      context.Context
	base     string
	findings []Finding
	files    map[string]bool
}

// Run lints what opts names and returns the report; err is for input that
// cannot be read (ErrInput, *config.Error), not for findings: see
// Report.Err.
func Run(ctx context.Context, opts Options) (*Report, error) {
	base := opts.BaseDir
	if base == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		base = wd
	}
	r := &run{ctx: ctx, base: base, files: map[string]bool{}}
	failOn := SeverityError
	if opts.File != nil && opts.File.Lint.FailOn != "" {
		failOn = Severity(opts.File.Lint.FailOn)
	}
	if opts.FailOn != "" {
		failOn = opts.FailOn
	}
	var err error
	switch {
	case len(opts.Paths) > 0:
		var st *settings
		if opts.File != nil {
			if st, err = newSettings(&opts.File.Lint, opts.File.Path); err != nil {
				return nil, err
			}
		} else {
			st, _ = newSettings(nil, "")
		}
		err = r.paths(opts.Paths, st)
	case opts.File != nil:
		err = r.project(opts.File, opts.Envs)
	default:
		return nil, fmt.Errorf("%w: nothing to lint: no gantry.yaml here and no paths given; run `gantry lint Dockerfile compose.yaml` or `gantry lint .`", ErrInput)
	}
	if err != nil {
		return nil, err
	}
	rep := &Report{FailOn: failOn, Findings: sortFindings(r.findings)}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	for f := range r.files {
		rep.Files = append(rep.Files, f)
	}
	sort.Strings(rep.Files)
	return rep, nil
}

// rel names a file for findings: relative to the base directory, with
// forward slashes.
func (r *run) rel(p string) string {
	if rp, err := filepath.Rel(r.base, p); err == nil && !strings.HasPrefix(rp, "..") {
		return filepath.ToSlash(rp)
	}
	return filepath.ToSlash(p)
}

// dockerfile lints one Dockerfile.
func (r *run) dockerfile(p string, hasHealth bool, st *settings) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInput, r.rel(p), unwrapPathError(err))
	}
	r.files[r.rel(p)] = true
	fs, err := lintDockerfile(r.rel(p), data, hasHealth)
	if err != nil {
		return err
	}
	r.findings = append(r.findings, st.apply(fs)...)
	return nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such file")
		}
		return pe.Err
	}
	return err
}

// dockerfileUse is a Dockerfile a project builds, and whether every service
// that runs its image has a health check of its own.
type dockerfileUse struct {
	services   int
	allHealthy bool
}

// project lints a gantry project: its compose model in each environment and
// the Dockerfiles it builds.
func (r *run) project(f *config.File, envs []string) error {
	st, err := newSettings(&f.Lint, f.Path)
	if err != nil {
		return err
	}
	if len(envs) == 0 {
		envs = f.EnvNames()
	}
	dockerfiles := map[string]*dockerfileUse{}
	use := func(p string, healthy bool) {
		u, ok := dockerfiles[p]
		if !ok {
			u = &dockerfileUse{allHealthy: true}
			dockerfiles[p] = u
		}
		u.services++
		u.allHealthy = u.allHealthy && healthy
	}
	// gantry.yaml's own builds: a Dockerfile unless built from binaries.
	for _, name := range slices.Sorted(maps.Keys(f.Services)) {
		b := f.Services[name].Build
		if b == nil || b.Daemonless() {
			continue
		}
		ctxDir := filepath.Join(f.Dir, b.Context)
		if _, ok := dockerfiles[dockerfilePath(ctxDir, b.Dockerfile)]; !ok {
			dockerfiles[dockerfilePath(ctxDir, b.Dockerfile)] = &dockerfileUse{allHealthy: true}
		}
	}
	for _, env := range envs {
		project, e, err := f.ComposeProject(r.ctx, env)
		if err != nil {
			return err
		}
		for _, cf := range project.ComposeFiles {
			r.files[r.rel(cf)] = true
		}
		m := &composeModel{project: project, env: env, protected: Protected(e),
			probes: map[string]bool{}, jobs: jobs(f, project), rel: r.rel}
		if e.Protected {
			m.pinned = map[string]bool{}
			for name := range f.Services {
				m.pinned[name] = true
			}
		}
		for svc := range e.Health.Probes {
			m.probes[svc] = true
		}
		r.findings = append(r.findings, st.apply(lintCompose(m))...)
		for name, svc := range project.Services {
			healthy := hasHealth(svc) || m.probes[name] || m.jobs[name]
			if ref, ok := f.Services[name]; ok && ref.Build != nil {
				if !ref.Build.Daemonless() {
					use(dockerfilePath(filepath.Join(f.Dir, ref.Build.Context), ref.Build.Dockerfile), healthy)
				}
				continue
			}
			if svc.Build != nil && svc.Build.DockerfileInline == "" {
				use(dockerfilePath(svc.Build.Context, svc.Build.Dockerfile), healthy)
			}
		}
	}
	paths := make([]string, 0, len(dockerfiles))
	for p := range dockerfiles {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		u := dockerfiles[p]
		// GL1006 holds unless some service runs the image and every one
		// that does has a health check of its own.
		if err := r.dockerfile(p, u.services > 0 && u.allHealthy, st); err != nil {
			return err
		}
	}
	return nil
}

// dockerfilePath is a build's Dockerfile: relative to its context, default
// Dockerfile.
func dockerfilePath(ctxDir, dockerfile string) string {
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if filepath.IsAbs(dockerfile) {
		return filepath.Clean(dockerfile)
	}
	return filepath.Join(ctxDir, dockerfile)
}

// jobs are a project's one-shot services: marked job in gantry.yaml or
// depended on with service_completed_successfully.
func jobs(f *config.File, p *types.Project) map[string]bool {
	out := map[string]bool{}
	m := &config.Model{File: f, Compose: p}
	for name := range p.Services {
		if f == nil {
			for _, s := range p.Services {
				if d, ok := s.DependsOn[name]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
					out[name] = true
				}
			}
			continue
		}
		out[name] = m.IsJob(name)
	}
	return out
}

// Kinds of files a path search recognises.
func isDockerfileName(name string) bool {
	l := strings.ToLower(name)
	return l == "dockerfile" || strings.HasPrefix(l, "dockerfile.") || strings.HasSuffix(l, ".dockerfile") || strings.HasPrefix(l, "containerfile")
}

func isComposeName(name string) bool {
	l := strings.ToLower(name)
	if !strings.HasSuffix(l, ".yaml") && !strings.HasSuffix(l, ".yml") {
		return false
	}
	return strings.HasPrefix(l, "compose") || strings.HasPrefix(l, "docker-compose")
}

func isGantryName(name string) bool {
	return name == config.DefaultFileName || name == "gantry.yml"
}

// baseComposeNames are the files docker compose reads by default, in its
// order of preference.
var baseComposeNames = []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"}

// skipDirs are never searched.
var skipDirs = map[string]bool{".git": true, "node_modules": true, "vendor": true, ".gantry": true}

// paths lints the given files and directories.
func (r *run) paths(paths []string, st *settings) error {
	var dockerfiles []string
	composeDirs := map[string][]string{} // dir -> compose files in it
	var projects []string
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		info, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInput, p, unwrapPathError(err))
		}
		if !info.IsDir() {
			name := filepath.Base(abs)
			switch {
			case isGantryName(name):
				projects = append(projects, abs)
			case strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml"):
				// A compose file named on the command line is read alone.
				if err := r.composeFiles(filepath.Dir(abs), []string{abs}, st); err != nil {
					return err
				}
			default:
				dockerfiles = append(dockerfiles, abs)
			}
			continue
		}
		var inProject []string
		err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != abs && (skipDirs[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			switch name := d.Name(); {
			case isGantryName(name):
				projects = append(projects, p)
				inProject = append(inProject, filepath.Dir(p))
			case isDockerfileName(name):
				dockerfiles = append(dockerfiles, p)
			case isComposeName(name):
				composeDirs[filepath.Dir(p)] = append(composeDirs[filepath.Dir(p)], p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInput, p, err)
		}
		// A project's own compose files are read through its gantry.yaml.
		for _, dir := range inProject {
			delete(composeDirs, dir)
		}
	}
	linted := map[string]bool{}
	for _, p := range projects {
		f, err := config.Load(p)
		if err != nil {
			return err
		}
		sub := &run{ctx: r.ctx, base: r.base, files: r.files}
		if err := sub.project(f, nil); err != nil {
			return err
		}
		r.findings = append(r.findings, sub.findings...)
		for fp := range sub.files {
			linted[fp] = true
		}
	}
	for _, p := range dockerfiles {
		if linted[r.rel(p)] {
			continue // the project that builds it linted it
		}
		linted[r.rel(p)] = true
		if err := r.dockerfile(p, false, st); err != nil {
			return err
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(composeDirs)) {
		if err := r.composeDir(dir, composeDirs[dir], st); err != nil {
			return err
		}
	}
	return nil
}

// composeDir lints the compose files of a directory outside any gantry
// project the way docker compose would read them: the base file (with
// compose.override.yaml), and every other compose file as an override of
// the base.
func (r *run) composeDir(dir string, files []string, st *settings) error {
	sort.Strings(files)
	var base string
	for _, n := range baseComposeNames {
		for _, f := range files {
			if filepath.Base(f) == n && base == "" {
				base = f
			}
		}
	}
	if base == "" {
		for _, f := range files {
			if err := r.composeFiles(dir, []string{f}, st); err != nil {
				return err
			}
		}
		return nil
	}
	set := []string{base}
	for _, f := range files {
		if n := filepath.Base(f); n == "compose.override.yaml" || n == "compose.override.yml" || n == "docker-compose.override.yml" || n == "docker-compose.override.yaml" {
			set = append(set, f)
		}
	}
	if err := r.composeFiles(dir, set, st); err != nil {
		return err
	}
	for _, f := range files {
		if slices.Contains(set, f) {
			continue
		}
		if err := r.composeFiles(dir, []string{base, f}, st); err != nil {
			return err
		}
	}
	return nil
}

// composeFiles lints compose files read on their own, with every profile.
func (r *run) composeFiles(dir string, files []string, st *settings) error {
	name := loader.NormalizeProjectName(filepath.Base(dir))
	if name == "" {
		name = "lint"
	}
	po, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(dir), cli.WithName(name), cli.WithOsEnv, cli.WithEnvFiles(), cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}), cli.WithResolvedPaths(true))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInput, r.rel(files[len(files)-1]), err)
	}
	project, err := po.LoadProject(r.ctx)
	if err != nil {
		var rels []string
		for _, f := range files {
			rels = append(rels, r.rel(f))
		}
		return fmt.Errorf("%w: %s: %v; `docker compose config` shows the same", ErrInput, strings.Join(rels, " + "), err)
	}
	for _, cf := range project.ComposeFiles {
		r.files[r.rel(cf)] = true
	}
	m := &composeModel{project: project, jobs: jobs(nil, project), probes: map[string]bool{}, rel: r.rel}
	r.findings = append(r.findings, st.apply(lintCompose(m))...)
	return nil
}
