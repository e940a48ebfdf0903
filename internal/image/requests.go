package image

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
)

// Requests are the builds of a project's services: services.<svc>.build
// of gantry.yaml, else the compose file's build: section. dir is what
// relative paths are relative to (gantry.yaml's directory when empty).
// With no services named, every service that has a build; a named service
// without one is an error that names it.
func Requests(ctx context.Context, f *config.File, dir string, services []string, platforms []string, labels map[string]string) ([]BuildRequest, error) {
	if dir == "" {
		dir = f.Dir
	}
	builds := map[string]*config.Build{}
	for svc, ref := range f.Services {
		if ref.Build != nil {
			builds[svc] = ref.Build
		}
	}
	needCompose := len(services) == 0
	for _, svc := range services {
		if builds[svc] == nil {
			needCompose = true
		}
	}
	var composeErr error
	if needCompose && len(f.Compose) > 0 {
		p, err := loadCompose(ctx, f, dir)
		if err != nil {
			composeErr = err
		} else {
			for name, svc := range p.Services {
				if builds[name] == nil && svc.Build != nil {
					builds[name] = composeBuild(svc.Build)
				}
			}
		}
	}
	if len(services) == 0 {
		if composeErr != nil {
			return nil, composeErr
		}
		for svc := range builds {
			services = append(services, svc)
		}
		sort.Strings(services)
		if len(services) == 0 {
			return nil, inputErr("no service has a build: give one a build: section in the compose file, or services.<name>.build in gantry.yaml (a context directory, or binaries per platform)")
		}
	}
	var missing []string
	var reqs []BuildRequest
	for _, svc := range services {
		b := builds[svc]
		if b == nil {
			missing = append(missing, svc)
			continue
		}
		reqs = append(reqs, BuildRequest{Service: svc, Dir: dir, Build: b, Platforms: platforms, Labels: labels})
	}
	if len(missing) > 0 {
		if composeErr != nil {
			return nil, composeErr
		}
		return nil, inputErr("no build for %s: give %s a build: section in the compose file, or services.%s.build in gantry.yaml",
			strings.Join(missing, ", "), plural(missing, "it", "them"), missing[0])
	}
	return reqs, nil
}

func plural(xs []string, one, many string) string {
	if len(xs) == 1 {
		return one
	}
	return many
}

// loadCompose reads the project's compose files for their build sections.
func loadCompose(ctx context.Context, f *config.File, dir string) (*types.Project, error) {
	var paths []string
	for _, c := range f.Compose {
		p := c
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, c)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, &config.Error{File: filepath.Base(f.Path), Field: "compose",
				Msg: fmt.Sprintf("compose file %s not found; create it or fix the path (relative to %s)", c, dir)}
		}
		paths = append(paths, p)
	}
	po, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(dir),
		cli.WithName(f.Project),
		cli.WithOsEnv,
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, &config.Error{File: strings.Join(f.Compose, ", "), Msg: "compose: " + err.Error()}
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, &config.Error{File: strings.Join(f.Compose, ", "), Msg: "compose file: " + err.Error() + "; `docker compose config` shows the same model"}
	}
	return p, nil
}

func composeBuild(b *types.BuildConfig) *config.Build {
	out := &config.Build{Context: b.Context, Dockerfile: b.Dockerfile, Target: b.Target}
	if len(b.Args) > 0 {
		out.Args = map[string]string{}
		for k, v := range b.Args {
			if v != nil {
				out.Args[k] = *v
			}
		}
	}
	if b.Dockerfile != "" && !filepath.IsAbs(b.Dockerfile) && b.Context != "" {
		out.Dockerfile = filepath.Join(b.Context, b.Dockerfile)
	}
	return out
}
