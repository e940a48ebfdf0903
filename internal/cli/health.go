package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/health"
)

func newHealthCmd(g *globals) *cobra.Command {
	var asJSON bool
	var service string
	cmd := &cobra.Command{
		Use:   "health ENV",
		Short: "Show the health view: startup, liveness and readiness of every serving service",
		Long: `Show, per service of the release serving in ENV, three checks read from its
container and gantry's probe of it (health.probes in gantry.yaml):

  startup    the container started and its healthcheck left "starting"
  liveness   the process runs, does not restart, its healthcheck is not unhealthy
  readiness  it should take traffic: live, started, healthcheck healthy and
             gantry's probe passing

The command exits 0 when every service is ready and 1 when one is not (or
nothing is deployed), so scripts can wait on it.

Against a server (GANTRY_SERVER or gantry context) the answer comes from the
server's /health/ENV, cached for environments.ENV.health.cache (default 30s)
so that many pollers cost the services one probe per period. Locally it
checks the containers now.`,
		Example: `  gantry health staging
  gantry health production --json
  gantry health staging --service web && echo web is ready`,
		Args: envArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				g.output = "json"
			}
			v, err := healthView(cmd.Context(), g, args[0], service)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if err := g.printJSON(v); err != nil {
					return err
				}
			} else {
				printHealth(g.stdout, v, time.Now())
			}
			return v.Problem()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the view as JSON (as --output json)")
	cmd.Flags().StringVar(&service, "service", "", "only this service")
	return cmd
}

// healthView is the environment's health view, from the server in remote
// mode and checked here otherwise.
func healthView(ctx context.Context, g *globals, env, service string) (*health.View, error) {
	c, err := g.remote()
	if err != nil {
		return nil, err
	}
	if c != nil {
		path := "/health/" + url.PathEscape(env)
		if service != "" {
			path += "?service=" + url.QueryEscape(service)
		}
		var v health.View
		if _, err := c.GetAllowing(ctx, path, &v, http.StatusServiceUnavailable); err != nil {
			return nil, err
		}
		return &v, nil
	}
	s, err := g.open(env, nil)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.engine.Health(ctx, s.file.Project, s.env, service)
}

// printHealth prints a view as a table.
func printHealth(w io.Writer, v *health.View, now time.Time) {
	checked := now.Sub(v.CheckedAt).Round(time.Second)
	cache := "checked now"
	if v.CacheSeconds > 0 {
		cache = fmt.Sprintf("checked %s ago, cached for %s", checked, time.Duration(v.CacheSeconds*float64(time.Second)))
	}
	if v.Status == health.StatusEmpty {
		fmt.Fprintf(w, "%s: nothing deployed (%s)\n", v.Env, cache)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %s, release %s (%s)\n", v.Env, v.Status, v.Release, cache)
	fmt.Fprintln(tw, "  SERVICE\tSTARTUP\tLIVENESS\tREADINESS\tPROBE\tDETAIL")
	for _, s := range v.Services {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Service, s.Startup, s.Liveness, s.Readiness, dash(s.Probe), dash(s.Detail))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
