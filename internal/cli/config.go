package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/swarm"
)

func newConfigCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "config ENV",
		Short: "Print the resolved model gantry deploys to an environment",
		Long: `Load gantry.yaml and the environment's compose files exactly as
` + "`docker compose config`" + ` would (interpolation, .env, profiles, extends,
override files), apply gantry.yaml's images, and print the result: the
environment's policy, the services in deploy order with their strategy, and
the compose model. Nothing is changed; nothing is contacted.`,
		Example: `  gantry config staging
  gantry config production --output json | jq '.services'`,
		Args: envArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			m, err := f.Resolve(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			// The model may hold a secret's value (an environment entry
			// interpolated from the same variable): it prints masked.
			out := g.stdout
			defer func() { g.stdout = out }()
			g.stdout = deploy.SecretRedactor(m, nil).Writer(out)
			return printModel(g, m)
		},
	}
}

type modelService struct {
	Name     string `json:"name"`
	Image    string `json:"image"`
	Strategy string `json:"strategy"`
	Job      bool   `json:"job,omitempty"`
}

func printModel(g *globals, m *config.Model) error {
	var svcs []modelService
	for _, name := range m.Order {
		sc := m.Compose.Services[name]
		strategy := string(m.Strategy(name))
		if m.Env.IsSwarm() && !m.IsJob(name) {
			strategy = swarm.UpdateOrder(sc, string(m.Env.Strategy))
		}
		svcs = append(svcs, modelService{Name: name, Image: sc.Image, Strategy: strategy, Job: m.IsJob(name)})
	}
	if g.output == "json" {
		compose, err := m.Compose.MarshalJSON()
		if err != nil {
			return err
		}
		return g.printJSON(map[string]any{
			"project":     m.File.Project,
			"environment": m.Env,
			"services":    svcs,
			"notify":      m.File.Notify,
			"compose":     rawJSON(compose),
		})
	}
	w := g.stdout
	fmt.Fprintf(w, "project: %s\nenvironment: %s\n", m.File.Project, m.Env.Name)
	host := m.Env.Host
	if host == "" {
		host = "$DOCKER_HOST or unix:///var/run/docker.sock"
	}
	if m.Env.IsSwarm() {
		// Swarm rolls each service out itself (update_config, see docs/swarm.md).
		fmt.Fprintf(w, "swarm: %s (Swarm services; the order below is each one's update_config order)\n", host)
	} else {
		fmt.Fprintf(w, "host: %s\n", host)
	}
	fmt.Fprintf(w, "health: window %s, min_healthy %s\nkeep_releases: %d\n", m.Env.Health.Window.D(), m.Env.Health.MinHealthy.D(), m.Env.Keep())
	fmt.Fprintln(w, "deploy order:")
	for i, s := range svcs {
		probe := ""
		if p, ok := m.Env.Health.Probes[s.Name]; ok {
			probe = "  probe: " + config.ProbeString(p)
		}
		routed := ""
		if r := m.Env.Routes[s.Name]; r != nil && m.Env.IsSwarm() && !s.Job {
			routed = fmt.Sprintf("  routed by gantry proxy to its tasks' port %d", r.Port)
		}
		fmt.Fprintf(w, "  %d. %-12s %-11s %s%s%s\n", i+1, s.Name, s.Strategy, s.Image, probe, routed)
	}
	printAnalysisAndNotify(w, m)
	y, err := m.Compose.MarshalYAML()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "compose model (%s):\n%s", m.Compose.Name, y)
	return nil
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

func newInitCmd(g *globals) *cobra.Command {
	var opts config.InitOptions
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write a starter gantry.yaml from an existing compose file",
		Long: `Read the compose file in the current directory (or --compose) and write a
gantry.yaml beside it with the project, the services' images, and two
environments, staging and production, with health gates and an HTTP probe
for every service that publishes a port. Edit it, then run
` + "`gantry config staging`" + ` to check it.`,
		Example: `  gantry init
  gantry init --compose docker-compose.yml --project shop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := g.file
			if _, err := os.Stat(out); err == nil && !force {
				return fmt.Errorf("%w: %s already exists; pass --force to overwrite it", errUsage, out)
			}
			if opts.Dir == "" {
				opts.Dir = filepath.Dir(out)
			}
			data, err := config.Init(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "wrote %s; check it with `gantry config staging`\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Compose, "compose", "", "compose file to read (default: compose.yaml, docker-compose.yml, ... in the directory)")
	cmd.Flags().StringVar(&opts.Project, "project", "", "project name (default: the directory's name)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite an existing gantry.yaml")
	return cmd
}
