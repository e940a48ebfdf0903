package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/notify"
	"github.com/gantryhq/gantry/internal/store"
)

// notifyBudget bounds the deliveries a command makes before it exits, the
// retries of an unreachable receiver included.
const notifyBudget = 2 * time.Minute

// notifier is the alert manager of gantry.yaml's notify section, nil when
// alerts go nowhere. A receiver whose secret cannot be read is reported
// and alerts are off for the command: a deploy does not wait on it.
func (g *globals) notifier(f *config.File, st *store.Store) *notify.Manager {
	if !f.Notify.Enabled() {
		return nil
	}
	m, err := notify.New(&f.Notify, st, f.Project, notify.WithLogger(g.log))
	if err != nil {
		fmt.Fprintf(g.stderr, "gantry: alerts are off for this command: %v\n", err)
		return nil
	}
	return m
}

// alertOnFinish sends the alerts of a finished deployment (deploy.WithFinished).
func alertOnFinish(m *notify.Manager) deploy.Option {
	return deploy.WithFinished(func(res *deploy.Result) {
		ctx, cancel := context.WithTimeout(context.Background(), notifyBudget)
		defer cancel()
		m.DeploymentFinished(ctx, res)
	})
}

// tickAlerts brings approval alerts up to date after a promotion command.
func tickAlerts(m *notify.Manager) {
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyBudget)
	defer cancel()
	m.Tick(ctx)
}

func newAlertsCmd(g *globals) *cobra.Command {
	var all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List gantry's alerts; ack one so that it is not escalated",
		Long: `List the alerts gantry raised: deployments that failed or were rolled back,
failed analyses, promotions waiting for approval, services unhealthy after a
successful deploy. Without --all only the firing ones.

Alerts go where gantry.yaml's notify section says: to an Alertmanager, or
through gantry's own routes to webhook, Slack, PagerDuty and email receivers.
gantry server sends firing alerts again on each route's repeat interval and
escalates the ones nobody acknowledged; "gantry alerts ack ID" stops that.`,
		Example: `  gantry alerts
  gantry alerts --all --output json | jq '.[] | {id, name, env, ends_at}'
  gantry alerts ack 12
  gantry alerts show 12          # the alert and every delivery attempt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var as []*store.Alert
			err := g.viaServerOrStore(func(c *client.Client) error {
				path := "/api/v1/alerts?limit=" + strconv.Itoa(limit)
				if all {
					path += "&all=1"
				}
				return c.Get(cmd.Context(), path, &as)
			}, func(st *store.Store) (err error) {
				as, err = st.Alerts(cmd.Context(), all, limit)
				return err
			})
			if err != nil {
				return err
			}
			if as == nil {
				as = []*store.Alert{}
			}
			if g.output == "json" {
				return g.printJSON(as)
			}
			if len(as) == 0 {
				fmt.Fprintln(g.stdout, "no alerts")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tSEVERITY\tALERT\tWHERE\tSINCE\tSUMMARY")
			for _, a := range as {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, alertState(a), a.Severity, a.Name, alertWhere(a), a.StartsAt.Local().Format("2006-01-02 15:04:05"), a.Summary)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "resolved alerts too")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many, newest first")
	cmd.AddCommand(newAlertsAckCmd(g), newAlertsShowCmd(g))
	return cmd
}

func alertID(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q is not an alert id; `gantry alerts` lists them", errUsage, arg)
	}
	return id, nil
}

func newAlertsAckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ack ID",
		Short:   "Acknowledge an alert: someone is on it, do not escalate it",
		Example: `  gantry alerts ack 12`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertID(args[0])
			if err != nil {
				return err
			}
			var a *store.Alert
			err = g.viaServerOrStore(func(c *client.Client) error {
				return c.Post(cmd.Context(), fmt.Sprintf("/api/v1/alerts/%d/ack", id), nil, &a)
			}, func(st *store.Store) (err error) {
				if a, err = notify.Ack(cmd.Context(), st, id, localActor()); err != nil {
					return notFoundIsInput(err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(a)
			}
			fmt.Fprintf(g.stdout, "alert %d (%s) acknowledged by %s\n", a.ID, a.Name, a.AckedBy)
			return nil
		},
	}
}

// AlertWithDeliveries is what gantry alerts show prints.
type AlertWithDeliveries struct {
	*store.Alert
	Deliveries []store.Delivery `json:"deliveries"`
}

func newAlertsShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "An alert and every attempt to deliver it",
		Example: `  gantry alerts show 12`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertID(args[0])
			if err != nil {
				return err
			}
			_, st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			a, err := st.GetAlert(cmd.Context(), id)
			if err != nil {
				return notFoundIsInput(err)
			}
			ds, err := st.Deliveries(cmd.Context(), id)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(AlertWithDeliveries{a, ds})
			}
			fmt.Fprintf(g.stdout, "alert %d %s (%s) in %s, release %s, %s\n%s\n", a.ID, a.Name, a.Severity, alertWhere(a), a.Release, alertState(a), a.Summary)
			if a.Description != "" {
				fmt.Fprintln(g.stdout, strings.TrimSpace(a.Description))
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "\nAT\tRECEIVER\tKIND\tATTEMPT\tRESULT")
			for _, d := range ds {
				r := "ok"
				if !d.OK {
					r = "failed: " + d.Error
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", d.At.Local().Format("15:04:05.000"), d.Receiver, d.Kind, d.Attempt, r)
			}
			return tw.Flush()
		},
	}
}

// notFoundIsInput makes an unknown alert exit with code 2 (bad input).
func notFoundIsInput(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func alertState(a *store.Alert) string {
	switch {
	case !a.Firing():
		return "resolved"
	case a.AckedBy != "":
		return "acked by " + a.AckedBy
	}
	return "firing"
}

func alertWhere(a *store.Alert) string {
	if a.Service != "" {
		return a.Env + "/" + a.Service
	}
	return a.Env
}

// printAnalysisAndNotify adds the environment's analysis and where alerts
// go to gantry config's text; receivers' secrets print as <secret>, with
// where they are read from.
func printAnalysisAndNotify(w io.Writer, m *config.Model) {
	if a := m.Env.Analysis; a != nil {
		fmt.Fprintf(w, "analysis: %s, interval %s, watch %s after the switch\n", a.Prometheus, a.Interval.D(), a.Watch.D())
		for _, c := range a.Checks {
			var conds []string
			if c.SuccessIf != nil {
				conds = append(conds, "success_if "+c.SuccessIf.Source)
			}
			if c.FailIf != nil {
				conds = append(conds, "fail_if "+c.FailIf.Source)
			}
			fmt.Fprintf(w, "  %s: %s\n", c.Name, strings.Join(conds, ", "))
		}
	}
	n := m.File.Notify
	switch {
	case n.Alertmanager != "":
		fmt.Fprintf(w, "alerts: to Alertmanager %s\n", n.Alertmanager)
	case len(n.Routes) > 0:
		fmt.Fprintln(w, "alerts:")
		for _, r := range n.Routes {
			sev := r.Severity
			if sev == "" {
				sev = "any"
			}
			line := fmt.Sprintf("  %s -> %s, repeat %s", sev, strings.Join(r.To, ", "), r.Repeat.D())
			if len(r.EscalateTo) > 0 {
				line += fmt.Sprintf(", escalate after %s to %s", r.EscalateAfter.D(), strings.Join(r.EscalateTo, ", "))
			}
			fmt.Fprintln(w, line)
		}
		for _, name := range slices.Sorted(maps.Keys(n.Receivers)) {
			r := n.Receivers[name]
			from := r.Secret.File
			if r.Secret.Env != "" {
				from = "$" + r.Secret.Env
			}
			if from != "" {
				from = " " + r.Secret.String() + " from " + from
			}
			fmt.Fprintf(w, "  receiver %s: %s%s\n", name, r.Type, from)
		}
	}
}
