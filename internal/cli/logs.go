package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/logs"
	"github.com/gantryhq/gantry/internal/redact"
	"github.com/gantryhq/gantry/internal/runtime"
)

func newLogsCmd(g *globals) *cobra.Command {
	var o logs.Options
	cmd := &cobra.Command{
		Use:   "logs ENV [SERVICE]",
		Short: "Stream the serving release's container logs, each line prefixed with its service and release",
		Long: `Print the output (stdout and stderr) of the containers of the release serving
in ENV, or of one SERVICE, each line prefixed with "service@release | ".
The lines of several services are merged in time order; with -f (--follow)
new lines are printed as they come until Ctrl-C or until every container
stops. It reads the Docker host of ENV in gantry.yaml; against a server
(GANTRY_SERVER or gantry context) the server says which containers serve.

In this command -f means --follow, as in docker logs; give gantry.yaml with
--file.`,
		Example: `  gantry logs staging
  gantry logs staging web -f --tail 20
  gantry logs production api --since 10m --timestamps`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("%w: %s needs the environment and at most one service, for example `%s staging web`", errUsage, cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			service := ""
			if len(args) == 2 {
				service = args[1]
			}
			err := streamLogs(cmd.Context(), g, args[0], service, o)
			if errors.Is(err, logs.ErrInput) && !errors.Is(err, errUsage) {
				err = fmt.Errorf("%w: %w", errUsage, err)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.Follow, "follow", false, "keep printing new lines (-f)")
	fs.StringVar(&o.Since, "since", "", "only lines since a time (2026-11-29T10:00:00Z) or for a duration back (10m, 2h)")
	fs.StringVar(&o.Tail, "tail", "all", "only the last N lines of each container")
	fs.BoolVarP(&o.Timestamps, "timestamps", "t", false, "print each line's time")
	return cmd
}

// streamLogs finds what serves in env (from the server in remote mode,
// from the record otherwise) and streams its containers' logs from env's
// Docker host.
func streamLogs(ctx context.Context, g *globals, env, service string, o logs.Options) error {
	if err := o.Check(time.Now()); err != nil {
		return err
	}
	f, err := g.loadFile()
	if err != nil {
		return err
	}
	e, err := f.Env(env)
	if err != nil {
		return err
	}
	var st *deploy.Status
	c, err := g.remote()
	if err != nil {
		return err
	}
	if c != nil {
		st = &deploy.Status{}
		if err := c.Get(ctx, "/api/v1/envs/"+url.PathEscape(env)+"/status", st); err != nil {
			return err
		}
	} else {
		s, err := g.open(env, nil)
		if err != nil {
			return err
		}
		st, err = s.engine.Observe(ctx, f.Project, env)
		s.Close()
		if err != nil {
			return err
		}
	}
	targets, err := logs.Targets(st, service)
	if err != nil {
		return err
	}
	rt, err := docker.New(e.Host)
	if err != nil {
		return fmt.Errorf("%w: %v", runtime.ErrUnreachable, err)
	}
	defer rt.Close()
	// The apps may print their secrets: the output is masked with the
	// values kept for the environment's containers on this machine and
	// those of today's sources.
	red := redact.New()
	for _, v := range docker.SecretValues(f.Project, env) {
		red.Add(v)
	}
	if m, err := f.Resolve(ctx, env); err == nil {
		red = deploy.SecretRedactor(m, red)
	}
	w := red.LineWriter(g.stdout)
	err = logs.Stream(ctx, rt.Client(), targets, o, w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// followShorthand turns the -f of `gantry logs ... -f` into --follow, as
// in docker logs: elsewhere -f is the global --file, as before. Only when
// logs is the command (the first argument that is not a global flag or
// its value).
func followShorthand(args []string) []string {
	valued := map[string]bool{"-f": true, "--file": true, "--state-dir": true, "-o": true, "--output": true, "--log-level": true}
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if valued[args[i]] {
			i++
		}
		i++
	}
	if i >= len(args) || args[i] != "logs" {
		return args
	}
	out := append([]string(nil), args...)
	for j := i + 1; j < len(out) && out[j] != "--"; j++ {
		if out[j] == "-f" {
			out[j] = "--follow"
		}
	}
	return out
}
