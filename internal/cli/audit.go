package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/store"
)

type auditFlags struct {
	actor, action, object, outcome, since, until string
	limit                                        int
}

func newAuditCmd(g *globals) *cobra.Command {
	var fl auditFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List the audit log; verify it; export it",
		Long: `The audit log records every state-changing request to gantry server, every
failed login and every denied request (who, role, what, on which object,
outcome, time, request id, client address), and the token commands run
locally. Each event's hash covers the previous event's hash, so that an
edited, deleted or reordered event shows: gantry audit verify finds it.

Without a subcommand, list events newest first. --since and --until take
an age (24h, 7d) or a time (2026-01-02, 2026-01-02T15:04:05Z).`,
		Example: `  gantry audit --limit 20
  gantry audit --actor ci --action deploy --since 7d
  gantry audit --outcome denied
  gantry audit verify
  gantry audit export --since 30d > audit.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := fl.filter(time.Now())
			if err != nil {
				return err
			}
			var evs []audit.Event
			err = g.viaServerOrStore(func(c *client.Client) error {
				return c.Get(cmd.Context(), "/api/v1/audit?"+fl.query().Encode(), &evs)
			}, func(st *store.Store) (err error) {
				evs, err = audit.Open(st).List(cmd.Context(), f)
				return err
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				if evs == nil {
					evs = []audit.Event{}
				}
				return g.printJSON(evs)
			}
			if len(evs) == 0 {
				fmt.Fprintln(g.stdout, "no audit events match")
				return nil
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTIME\tACTOR\tROLE\tACTION\tOBJECT\tOUTCOME\tCLIENT\tREQUEST\tDETAIL")
			for _, e := range evs {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format("2006-01-02 15:04:05"), orDash(e.Actor), orDash(e.Role),
					e.Action, orDash(e.Object), e.Outcome, orDash(e.Client), orDash(e.RequestID), truncate(detailString(e.Detail), 80))
			}
			return w.Flush()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&fl.actor, "actor", "", "only events by this actor (a token's name, or local:USER)")
	fs.StringVar(&fl.action, "action", "", "only this action, or actions under it (token matches token.create)")
	fs.StringVar(&fl.object, "object", "", "only events on this object (env/staging, token/ci, deployment/12)")
	fs.StringVar(&fl.outcome, "outcome", "", "only this outcome: ok, denied, failed, login_failed")
	fs.StringVar(&fl.since, "since", "", "only events since an age (7d, 24h) or a time")
	fs.StringVar(&fl.until, "until", "", "only events before an age or a time")
	fs.IntVar(&fl.limit, "limit", audit.DefaultLimit, "show at most this many events (0: all)")
	cmd.AddCommand(newAuditVerifyCmd(g), newAuditExportCmd(g), newAuditPruneCmd(g))
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func detailString(d map[string]string) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sortStrings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+oneLine(d[k]))
	}
	return strings.Join(parts, " ")
}

func (fl auditFlags) filter(now time.Time) (audit.Filter, error) {
	f := audit.Filter{Actor: fl.actor, Action: fl.action, Object: fl.object, Outcome: audit.Outcome(fl.outcome), Limit: fl.limit}
	if fl.limit == 0 {
		f.Limit = -1
	}
	if fl.limit < 0 {
		return f, fmt.Errorf("%w: --limit %d: use a positive count, or 0 for all", errUsage, fl.limit)
	}
	if fl.outcome != "" && !f.Outcome.Valid() {
		return f, fmt.Errorf("%w: --outcome %q: use ok, denied, failed or login_failed", errUsage, fl.outcome)
	}
	var err error
	if f.Since, err = parseWhen("--since", fl.since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseWhen("--until", fl.until, now); err != nil {
		return f, err
	}
	return f, nil
}

// query is the filter as the API's query parameters.
func (fl auditFlags) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"actor": fl.actor, "action": fl.action, "object": fl.object, "outcome": fl.outcome, "since": fl.since, "until": fl.until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	v.Set("limit", strconv.Itoa(fl.limit))
	return v
}

// parseWhen reads an age or a time for flag; see audit.ParseWhen.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	t, err := audit.ParseWhen(s, now)
	if err != nil {
		return t, fmt.Errorf("%w: %s %v", errUsage, flag, err)
	}
	return t, nil
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit event was changed, deleted or reordered",
		Long: `Walk the audit log from its start (or from the checkpoint left by gantry
audit prune) and recompute every event's hash and its link to the event
before. The first event that fails is named, with what is wrong with it:
edited (its content does not match its hash), missing (deleted), or
rewritten (changed and re-hashed, so the next event no longer links to it).

Exit codes: 0 the log verifies, 1 it does not.`,
		Example: "  gantry audit verify\n  gantry audit verify --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rep *audit.Report
			err := g.viaServerOrStore(func(c *client.Client) error {
				return c.Get(cmd.Context(), "/api/v1/audit/verify", &rep)
			}, func(st *store.Store) (err error) {
				rep, err = audit.Open(st).Verify(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				g.printJSON(rep)
			} else if rep.Problem == nil {
				fmt.Fprintf(g.stdout, "audit log verified: %d events", rep.Events)
				if rep.Events > 0 {
					fmt.Fprintf(g.stdout, " (%d to %d)", rep.FirstID, rep.LastID)
				}
				if rep.Pruned > 0 {
					fmt.Fprintf(g.stdout, ", from the checkpoint after event %d (%d older events pruned)", rep.CheckpointID, rep.Pruned)
				}
				fmt.Fprintln(g.stdout)
				if rep.HeadHash != "" {
					fmt.Fprintf(g.stdout, "head hash: %s\n", rep.HeadHash)
				}
			}
			if rep.Problem != nil {
				return fmt.Errorf("audit log does NOT verify: event %d is %s: %s (%d events before it verified)", rep.Problem.ID, rep.Problem.Kind, rep.Problem.Reason, rep.Events)
			}
			return nil
		},
	}
}

func newAuditExportCmd(g *globals) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "export [--since AGE|TIME]",
		Short: "Write the audit log as JSON lines, oldest first",
		Long: `Write audit events as JSON lines on stdout, oldest first, each with its
prev_hash and hash: the chain can be checked from the file alone, and kept
somewhere the server cannot write (an archive, a SIEM).`,
		Example: "  gantry audit export > audit.jsonl\n  gantry audit export --since 30d | gzip > audit-$(date +%F).jsonl.gz",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseWhen("--since", since, time.Now())
			if err != nil {
				return err
			}
			g.printed = true
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				q := url.Values{}
				if since != "" {
					q.Set("since", since)
				}
				return c.Stream(cmd.Context(), "/api/v1/audit/export?"+q.Encode(), g.stdout)
			}
			_, st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := audit.Open(st).Export(cmd.Context(), g.stdout, t)
			if err == nil {
				g.log.Info("exported audit events", "count", n)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only events since an age (30d) or a time (2026-01-02)")
	return cmd
}

// pruneResult is what gantry audit prune cut, locally or through the
// server's POST /api/v1/audit/prune (the same JSON).
type pruneResult struct {
	Before     time.Time        `json:"before"`
	Cut        int64            `json:"cut"`
	Checkpoint audit.Checkpoint `json:"checkpoint"`
}

func newAuditPruneCmd(g *globals) *cobra.Command {
	var before string
	cmd := &cobra.Command{
		Use:   "prune --before AGE|TIME",
		Short: "Cut audit events older than a point, keeping the log verifiable",
		Long: `Delete the audit events older than --before and record a checkpoint: the
hash of the last event cut and how many were cut. gantry audit verify then
checks what remains from that checkpoint. The prune itself is audited.
Export first what you must keep (gantry audit export).

Against a server (GANTRY_SERVER, or a context) it needs an admin token, and
an age is counted from the server's clock.`,
		Example: "  gantry audit export > audit-archive.jsonl && gantry audit prune --before 365d",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if before == "" {
				return fmt.Errorf("%w: --before is required: an age like 365d or a time like 2025-01-01", errUsage)
			}
			t, err := parseWhen("--before", before, time.Now())
			if err != nil {
				return err
			}
			var res pruneResult
			err = g.viaServerOrStore(func(c *client.Client) error {
				return c.Post(cmd.Context(), "/api/v1/audit/prune", map[string]string{"before": before}, &res)
			}, func(st *store.Store) error {
				l := audit.Open(st)
				n, cp, err := l.Prune(cmd.Context(), t)
				if err != nil {
					return err
				}
				if _, err := l.Append(cmd.Context(), audit.Event{Actor: localActor(), Role: string(auth.Admin), Action: "audit.prune", Object: "audit",
					Client: "local", Detail: map[string]string{"before": t.UTC().Format(time.RFC3339), "cut": strconv.FormatInt(n, 10), "checkpoint_id": strconv.FormatInt(cp.ID, 10)}}); err != nil {
					return err
				}
				res = pruneResult{Before: t.UTC(), Cut: n, Checkpoint: cp}
				return nil
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.stdout, "pruned %d audit events older than %s; the log now starts after event %d (%d pruned in all)\n",
				res.Cut, res.Before.Local().Format("2006-01-02 15:04:05"), res.Checkpoint.ID, res.Checkpoint.Pruned)
			return nil
		},
	}
	cmd.Flags().StringVar(&before, "before", "", "cut events older than this age (365d) or time (2025-01-01)")
	return cmd
}
