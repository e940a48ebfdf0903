package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status [ENV]",
		Short: "Show what serves in an environment (all environments without ENV)",
		Long: `Show, per service, the release, image, health and uptime of what serves in
ENV, straight from the Docker host. A deployment that a killed gantry left
unfinished is recovered first.`,
		Example: `  gantry status staging
  gantry status --output json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return remoteStatus(cmd, g, c, args)
			}
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			envs := f.EnvNames()
			if len(args) == 1 {
				envs = args[:1]
			}
			var all []any
			for _, name := range envs {
				s, err := g.open(name, newReporter(g.stderr))
				if err != nil {
					return err
				}
				st, err := s.engine.Status(cmd.Context(), f.Project, name)
				s.Close()
				if err != nil {
					return err
				}
				if g.output == "json" {
					all = append(all, st)
					continue
				}
				printStatus(g, st)
			}
			if g.output == "json" {
				if len(args) == 1 {
					return g.printJSON(all[0])
				}
				return g.printJSON(all)
			}
			return nil
		},
	}
}

// printStatus prints one environment's status as a table.
func printStatus(g *globals, st *deploy.Status) {
	name := st.Env
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if st.Release == "" {
		fmt.Fprintf(w, "%s: nothing deployed yet (%s)\n", name, st.Host)
	} else {
		fmt.Fprintf(w, "%s: release %s (deployment %d) since %s\n", name, st.Release, st.Deployment, ago(st.Since))
	}
	if swarmStatus(st) {
		printSwarmServices(w, st)
	} else if len(st.Services) > 0 {
		fmt.Fprintln(w, "  SERVICE\tRELEASE\tIMAGE\tSTATE\tHEALTH\tSINCE")
		for _, s := range st.Services {
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Release, s.Image, s.State, s.Health, ago(s.Since))
		}
	}
	if st.Kept > 0 {
		fmt.Fprintf(w, "  %d stopped container(s) of earlier releases kept for rollback\n", st.Kept)
	}
	if a := st.LastAnalysis; a != nil && a.Deployment == st.Deployment && a.State == store.Succeeded && a.Analysis != nil && !a.Analysis.Phase.Done() {
		fmt.Fprintf(w, "  watch window: its analysis is watching release %s; gantry rollback %s rolls it back now\n", a.Release, name)
	}
	if c := st.Canary; c != nil {
		next := fmt.Sprintf("gantry promote --abort %s (or gantry rollback %s) stops it", name, name)
		if c.Manual {
			next = fmt.Sprintf("waiting for gantry promote --step %s (or --abort)", name)
		}
		fmt.Fprintf(w, "  canary: %s release %s at %d%% (step %d/%d), deployment %d; %s\n", c.Service, c.Release, c.Weight, c.Step, c.Steps, c.Deployment, next)
	}
	w.Flush()
}

func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := time.Since(*t).Round(time.Second)
	return d.String() + " ago"
}

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history ENV",
		Short: "List an environment's deployments, newest first",
		Long: `List every deployment of ENV that gantry recorded: release, kind (deploy or
rollback), final state, how long it took and why it ended as it did.`,
		Example: `  gantry history staging
  gantry history staging --limit 5 --output json`,
		Args: envArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return remoteHistory(cmd, g, c, args[0], limit)
			}
			s, err := g.open(args[0], newReporter(g.stderr))
			if err != nil {
				return err
			}
			defer s.Close()
			hs, err := s.engine.History(cmd.Context(), s.file.Project, args[0], limit)
			if err != nil {
				return err
			}
			return printHistory(g, args[0], hs)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many deployments (0: all)")
	return cmd
}

// printHistory prints an environment's deployments as a table.
func printHistory(g *globals, env string, hs []deploy.HistoryEntry) error {
	if g.output == "json" {
		if hs == nil {
			hs = []deploy.HistoryEntry{}
		}
		return g.printJSON(hs)
	}
	if len(hs) == 0 {
		fmt.Fprintf(g.stdout, "%s: no deployments yet\n", env)
		return nil
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tRELEASE\tKIND\tSTATE\tSTARTED\tTOOK\tREASON")
	for _, h := range hs {
		state := string(h.State)
		if h.Serving {
			state += " (serving)"
		}
		took := "-"
		if h.DurationSeconds > 0 {
			took = fmt.Sprintf("%.1fs", h.DurationSeconds)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Release, h.Kind, state,
			h.CreatedAt.Local().Format("2006-01-02 15:04:05"), took, truncate(oneLine(h.Reason), 120))
	}
	return w.Flush()
}
