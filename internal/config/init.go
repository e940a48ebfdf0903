package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"github.com/compose-spec/compose-go/v2/cli"
)

// InitOptions says what `gantry init` reads.
type InitOptions struct {
	Dir     string
	Compose string
	Project string
}

var initTmpl = template.Must(template.New("gantry.yaml").Parse(`# gantry.yaml: what gantry deploys and how. Docs: docs/configuration.md
project: {{.Project}}
compose: {{.Compose}}

# Images come from the compose file. An image set here overrides it, for
# every environment; "gantry deploy --image SERVICE=REF" overrides both.
{{- if .Services}}
services:
{{- range .Services}}
  {{.Name}}:
    image: {{.Image}}
{{- end}}
{{- else}}
# services:
#   {{.Example}}:
#     image: registry.example.com/{{.Project}}/{{.Example}}:1.0.0
{{- end}}

environments:
  staging:
    # host: unix:///var/run/docker.sock   # default: $DOCKER_HOST or the local socket
    strategy: auto            # stop-first for services with a fixed host port, else start-first
    keep_releases: 2          # earlier releases kept stopped for a fast rollback
    health:
      window: 5m              # roll back when not healthy within this
      min_healthy: 10s        # and healthy for at least this long
{{- if .Probes}}
      probes:
{{- range .Probes}}
        {{.Name}}:
          http: { port: {{.Port}}, path: /, status: 200 }   # point path at your health endpoint
{{- end}}
{{- end}}
    # routes:                 # served by the gantry proxy, deployed blue/green (docs/proxy.md)
    #   {{.Routed.Name}}:
    #     host: staging.{{.Project}}.example
    #     port: {{.Routed.Port}}
    #     canary:             # or step a new release in, aborted on errors (docs/canary.md)
    #       steps: [{ weight: 10, pause: 2m }, { weight: 50, pause: 5m }]
    #       abort: { max_error_ratio: 0.05, max_p99: 800ms }
  production:
    # compose_files: [{{.Compose}}, compose.production.yaml]
    health:
      window: 5m
      min_healthy: 30s
`))

type initService struct{ Name, Image string }
type initProbe struct {
	Name string
	Port uint32
}

// Init reads a compose file and returns a starter gantry.yaml.
func Init(ctx context.Context, o InitOptions) ([]byte, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	compose := o.Compose
	if compose == "" {
		for _, c := range []string{"compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"} {
			if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
				compose = c
				break
			}
		}
		if compose == "" {
			return nil, &Error{File: dir, Msg: "no compose file found (compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml); pass --compose"}
		}
	}
	project := o.Project
	if project == "" {
		project = sanitizeName(filepath.Base(dir))
	}
	if !nameRE.MatchString(project) {
		return nil, &Error{File: "gantry.yaml", Field: "project", Msg: fmt.Sprintf("%q is not a valid project name; pass --project with lower case letters, digits, - and _", project)}
	}
	po, err := cli.NewProjectOptions([]string{filepath.Join(dir, compose)}, cli.WithWorkingDirectory(dir), cli.WithName(project), cli.WithOsEnv, cli.WithEnvFiles(), cli.WithDotEnv)
	if err != nil {
		return nil, err
	}
	p, err := po.LoadProject(ctx)
	if err != nil {
		return nil, fmt.Errorf("compose file %s: %w", compose, err)
	}
	data := struct {
		Project, Compose, Example string
		Services                  []initService
		Probes                    []initProbe
		// Routed is the example route's service: the last one with a
		// port (dependencies come first, so rather a front than a database).
		Routed initProbe
	}{Project: project, Compose: compose}
	order, err := DependencyOrder(p)
	if err != nil {
		return nil, err
	}
	for _, name := range order {
		s := p.Services[name]
		if data.Example == "" {
			data.Example = name
		}
		// Only services without an image need one here: copying the
		// compose file's (interpolated) images would pin them, and a
		// later change of ${TAG} in .env would silently stop mattering.
		if s.Image == "" {
			data.Services = append(data.Services, initService{Name: name, Image: project + "/" + name + ":1.0.0   # the image to deploy"})
		}
		if len(s.Ports) > 0 && s.Ports[0].Protocol != "udp" {
			data.Probes = append(data.Probes, initProbe{Name: name, Port: s.Ports[0].Target})
		}
	}
	data.Routed = initProbe{Name: data.Example, Port: 8080}
	if n := len(data.Probes); n > 0 {
		data.Routed = data.Probes[n-1]
	}
	var buf bytes.Buffer
	if err := initTmpl.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var badName = regexp.MustCompile(`[^a-z0-9_-]+`)

func sanitizeName(s string) string {
	s = strings.Trim(badName.ReplaceAllString(strings.ToLower(s), "-"), "-_")
	if s == "" {
		return "app"
	}
	return s
}
