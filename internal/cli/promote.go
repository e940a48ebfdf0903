package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/notify"
	"github.com/gantryhq/gantry/internal/promote"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/target"
)

// actingAs is who runs gantry locally: $GANTRY_ACTOR, else the OS user.
// Locally everyone is an admin; gantry server enforces real roles.
func actingAs() promote.Actor {
	name := os.Getenv("GANTRY_ACTOR")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = os.Getenv("USER")
	}
	return promote.Actor{Name: name, Role: auth.Admin}
}

// promoteSession is a promoter over the project's store, opening each
// environment's Docker host when a deployment runs there.
type promoteSession struct {
	file  *config.File
	store *store.Store
	p     *promote.Promoter
	rep   progressReporter
	// alerts raises and clears approval alerts; nil without notify.
	alerts *notify.Manager
}

func (s *promoteSession) Close() {
	s.rep.Done()
	tickAlerts(s.alerts) // approval alerts follow the requests
	s.store.Close()
}

func (g *globals) openPromoter() (*promoteSession, error) {
	f, err := g.loadFile()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(g.stateDirFor(f))
	if err != nil {
		return nil, err
	}
	s := &promoteSession{file: f, store: st, rep: newReporter(g.stderr), alerts: g.notifier(f, st)}
	actor := actingAs().Name
	engines := func(ctx context.Context, envName string) (promote.Runner, func(), error) {
		env, err := f.Env(envName)
		if err != nil {
			return nil, nil, err
		}
		rt, err := target.Open(env, f.Registry, s.rep.Note)
		if err != nil {
			return nil, nil, err
		}
		opts := []deploy.Option{deploy.WithReporter(s.rep), deploy.WithLogger(g.log), deploy.WithActor(actor)}
		if s.alerts != nil {
			opts = append(opts, alertOnFinish(s.alerts))
		}
		eng := deploy.New(rt, st, g.stateDirFor(f), opts...)
		return eng, func() { rt.Close() }, nil
	}
	s.p = promote.New(f, st, engines, promote.WithAudit(audit.Open(st)), promote.WithLogger(g.log))
	return s, nil
}

func newPromoteCmd(g *globals) *cobra.Command {
	var release string
	var gf gateFlags
	var step, abort bool
	cmd := &cobra.Command{
		Use:   "promote FROM TO | promote --step ENV | promote --abort ENV",
		Short: "Take a release that succeeded in FROM to TO, by its exact image digests; or advance or abort a canary",
		Long: `Promote a release from environment FROM to environment TO.

With --step ENV, advance the canary running in ENV past its current step, a
step without pause in the route's canary: block (it waits for this); with
--abort ENV, abort the canary at whatever step it is: all traffic goes back
to the stable release at once, the canary's container is removed and the
deployment is rolled back, recorded as aborted by you. Either works from
any shell on the machine where gantry deploy runs the canary (it reads the
signal from the state directory within half a second), and, with a context
of gantry server (gantry context use), for a canary the server runs (an
editor's token). Exit code 2 when no canary runs in ENV, or --step at a step
with a pause. See docs/canary.md.

Only a release whose newest deployment in FROM succeeded can be promoted (and,
when gantry release recorded it, one in state released); TO's requires: list
names further environments it must have succeeded in. TO receives exactly the
image digests that ran in FROM, never a tag; when TO's compose files name
another repository for a service, the image is copied there first (on the
same registry only the manifests move).

When TO is protected (protected: true in gantry.yaml), the deployment waits
for approval: gantry approve ID by people the environment's approvals policy
names, never the requester. With enough approvals it runs with the health
gate and automatic rollback. An unprotected TO is deployed at once.

You act as $GANTRY_ACTOR (default: your user name), as an admin: roles are
enforced by gantry server.

When TO has require_gates: true, the release's gates (gates: in
gantry.yaml) must have run and passed; an admin may promote it anyway with
--override-gate --reason TEXT, which is written to the audit log.

Exit codes: 0 requested or deployed, 2 refused (a release that did not
succeed in FROM or failed its gates, unknown environment, a service not
pinned by digest), 3/4
the deployment to an unprotected TO failed, 5 busy, 6 Docker unreachable.`,
		Example: `  gantry promote staging production                  # the release serving in staging
  gantry promote staging production --release 1.4.0
  GANTRY_ACTOR=alice gantry promote staging production --output json | jq .id
  gantry promote --step production                   # the canary waiting at a manual step goes on
  gantry promote --abort production --output json    # all traffic back to the stable release`,
		Args: func(cmd *cobra.Command, args []string) error {
			if step || abort {
				switch {
				case step && abort:
					return fmt.Errorf("%w: --step and --abort exclude each other: advance the canary or abort it", errUsage)
				case len(args) != 1:
					return fmt.Errorf("%w: --step and --abort take one environment, the one the canary runs in, for example `gantry promote --step production`", errUsage)
				}
				return nil
			}
			if len(args) != 2 {
				return fmt.Errorf("%w: promote needs two environments, FROM and TO, for example `gantry promote staging production`", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if step || abort {
				action := store.CanaryStep
				if abort {
					action = store.CanaryAbort
				}
				return signalCanary(cmd, g, args[0], action)
			}
			override, err := gf.get()
			if err != nil {
				return err
			}
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return remotePromote(cmd, g, c, args[0], args[1], release, override)
			}
			s, err := g.openPromoter()
			if err != nil {
				return err
			}
			defer s.Close()
			var opts []promote.RequestOption
			if override != nil {
				opts = append(opts, promote.OverrideGate(override.Reason))
			}
			d, err := s.p.Request(cmd.Context(), actingAs(), args[0], args[1], release, opts...)
			s.rep.Done()
			if d == nil {
				return err
			}
			e, gerr := s.p.Get(cmd.Context(), d.ID)
			if gerr != nil {
				return gerr
			}
			if g.output == "json" {
				g.printJSON(e)
				return err
			}
			if e.Promotion == nil {
				var res deploy.Result
				if json.Unmarshal(d.Result, &res) == nil && res.Deployment != 0 {
					printResult(g, &res)
				}
				return err
			}
			printAwaiting(g, e)
			return err
		},
	}
	cmd.Flags().StringVar(&release, "release", "", "release to promote (default: the one serving in FROM)")
	cmd.Flags().BoolVar(&step, "step", false, "advance the canary waiting at a manual step in ENV")
	cmd.Flags().BoolVar(&abort, "abort", false, "abort the canary running in ENV: all traffic back to the stable release")
	gf.bind(cmd)
	return cmd
}

// printAwaiting says that a promotion waits, for whom, and what to do.
func printAwaiting(g *globals, e *promote.Entry) {
	fmt.Fprintf(g.stdout, "deployment %d: release %s from %s to %s awaits approval\n", e.ID, e.Release, e.Promotion.From, e.Env)
	printPromotion(g, e.Promotion)
	fmt.Fprintf(g.stdout, "approve: gantry approve %d   reject: gantry reject %d --comment WHY\n", e.ID, e.ID)
}

func printPromotion(g *globals, p *promote.Promotion) {
	w := g.stdout
	if p.WaitingFor != "" {
		fmt.Fprintf(w, "  waiting for %s\n", p.WaitingFor)
	}
	fmt.Fprintf(w, "  requested by %s, %d of %d approval(s)", p.RequestedBy, p.Approved, p.Required)
	if p.ApprovedAt == nil {
		fmt.Fprintf(w, ", expires %s (in %s)", p.ExpiresAt.Local().Format(time.DateTime), time.Until(p.ExpiresAt).Round(time.Second))
	}
	fmt.Fprintln(w)
	for _, a := range p.Decisions {
		c := ""
		if a.Comment != "" {
			c = ": " + a.Comment
		}
		fmt.Fprintf(w, "  %sd by %s (%s) at %s%s\n", a.Decision, a.Actor, a.Role, a.At.Local().Format(time.DateTime), c)
	}
}

// deploymentID reads the ID argument of approve and reject.
func deploymentID(cmd *cobra.Command, args []string) (int64, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("%w: %s needs the deployment's ID, for example `%s 12`; gantry deployments --pending lists them", errUsage, cmd.CommandPath(), cmd.CommandPath())
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: %q is not a deployment ID; gantry deployments --pending lists them", errUsage, args[0])
	}
	return id, nil
}

func newApproveCmd(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "approve ID",
		Short: "Approve a deployment waiting for approval; the last approval needed runs it",
		Long: `Approve deployment ID, a promotion waiting for approval (gantry deployments
--pending lists them, with whom each waits for).

The requester can never approve their own request; you must match the
environment's approvals.from (a role like role:admin, or your name); a request
past its expiry is cancelled instead. The approval that completes the number
required runs the deployment at once, with the health gate and automatic
rollback; approvals given at the same moment are all recorded and start it
exactly once.

If the deployment could not start (another deployment held the environment,
Docker was unreachable, gantry was killed), gantry approve ID again starts it.

You act as $GANTRY_ACTOR (default: your user name), as an admin: roles are
enforced by gantry server.

Exit codes: 0 approved (and deployed, when it ran), 2 refused (your own
request, not an approver, expired, unknown ID, decided already), 3/4 the
deployment ran and failed, 5 busy.`,
		Example: `  gantry approve 12
  GANTRY_ACTOR=bob gantry approve 12 --comment "checked the staging dashboards"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecision(cmd, g, args, store.Approve, comment)
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why, for the record")
	return cmd
}

func newRejectCmd(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "reject ID --comment WHY",
		Short: "Reject a deployment waiting for approval (or withdraw your own request)",
		Long: `Reject deployment ID, a promotion waiting for approval: it is cancelled with
your comment as the reason. Approvers may reject; the requester may withdraw
the request the same way. An approved deployment can no longer be rejected:
roll it back with gantry rollback instead.`,
		Example: `  gantry reject 12 --comment "error rate too high in staging"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecision(cmd, g, args, store.Reject, comment)
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why (required)")
	return cmd
}

func runDecision(cmd *cobra.Command, g *globals, args []string, decision store.Decision, comment string) error {
	id, err := deploymentID(cmd, args)
	if err != nil {
		return err
	}
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		return remoteDecision(cmd, g, c, id, decision, comment)
	}
	s, err := g.openPromoter()
	if err != nil {
		return err
	}
	defer s.Close()
	actor := actingAs()
	var dec *promote.Decision
	if decision == store.Approve {
		dec, err = s.p.Approve(cmd.Context(), actor, id, comment)
	} else {
		dec, err = s.p.Reject(cmd.Context(), actor, id, comment)
	}
	s.rep.Done()
	if dec == nil || (err != nil && !dec.Started) {
		return err
	}
	if g.output == "json" {
		g.printJSON(dec)
		return err
	}
	printDecision(g, dec, decision, actor.Name)
	return err
}

// printDecision says what an approval or a rejection did.
func printDecision(g *globals, dec *promote.Decision, decision store.Decision, actor string) {
	d := dec.Deployment
	switch {
	case decision == store.Reject:
		fmt.Fprintf(g.stdout, "deployment %d (release %s to %s) is cancelled: %s\n", d.ID, d.Release, d.Env, d.Reason)
		return
	case dec.Started && dec.Result != nil:
		printResult(g, dec.Result)
		return
	case dec.Started:
		return
	}
	p := dec.Promotion
	verb := "approved"
	if !dec.Recorded {
		verb = "already approved"
	}
	fmt.Fprintf(g.stdout, "%s deployment %d (release %s from %s to %s) as %s\n", verb, d.ID, d.Release, p.From, d.Env, actor)
	if p.ApprovedAt != nil {
		fmt.Fprintf(g.stdout, "  the approvals are complete; another approval's gantry (pid %d) started it: it is %s (gantry history %s)\n", p.StarterPID, d.State, d.Env)
	}
	printPromotion(g, p)
}

func newDeploymentsCmd(g *globals) *cobra.Command {
	var pending bool
	var limit int
	cmd := &cobra.Command{
		Use:   "deployments [ENV]",
		Short: "List deployments of every environment (or ENV), and what waits for approval",
		Long: `List the deployments of every environment, or of ENV, newest first, with
the promotion each came from. With --pending, only those waiting for
approval: how many more approvals each needs, from whom, and when the request
expires. Requests that expired are cancelled first, with the reason.`,
		Example: `  gantry deployments --pending
  gantry deployments production --limit 5
  gantry deployments --pending --output json | jq '.[].promotion.remaining'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return remoteDeployments(cmd, g, c, args, pending, limit)
			}
			s, err := g.openPromoter()
			if err != nil {
				return err
			}
			defer s.Close()
			env := ""
			if len(args) == 1 {
				if _, err := s.file.Env(args[0]); err != nil {
					return err
				}
				env = args[0]
			}
			var es []promote.Entry
			if pending {
				all, err := s.p.Pending(cmd.Context(), s.file.Project)
				if err != nil {
					return err
				}
				for _, e := range all {
					if env == "" || e.Env == env {
						es = append(es, e)
					}
				}
			} else if es, err = s.p.List(cmd.Context(), s.file.Project, env, limit); err != nil {
				return err
			}
			return printEntries(g, es, pending)
		},
	}
	cmd.Flags().BoolVar(&pending, "pending", false, "only deployments waiting for approval")
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many deployments (0: all)")
	return cmd
}

// printEntries prints deployments with their promotions; pending: the
// table of what waits for whom.
func printEntries(g *globals, es []promote.Entry, pending bool) error {
	if es == nil {
		es = []promote.Entry{}
	}
	if g.output == "json" {
		return g.printJSON(es)
	}
	if len(es) == 0 {
		what := "deployments"
		if pending {
			what = "deployments waiting for approval"
		}
		fmt.Fprintf(g.stdout, "no %s\n", what)
		return nil
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if pending {
		fmt.Fprintln(w, "ID\tENV\tRELEASE\tFROM\tREQUESTED BY\tAPPROVALS\tWAITING FOR\tEXPIRES")
		for _, e := range es {
			p := e.Promotion
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", e.ID, e.Env, e.Release, p.From, p.RequestedBy, p.Approved, p.Required,
				waitingText(p), p.ExpiresAt.Local().Format(time.DateTime))
		}
		return w.Flush()
	}
	fmt.Fprintln(w, "ID\tENV\tRELEASE\tSTATE\tFROM\tBY\tAPPROVED BY\tCREATED\tREASON")
	for _, e := range es {
		from, by := "-", e.Actor
		if by == "" {
			by = "-"
		}
		approvers := "-"
		if p := e.Promotion; p != nil {
			from, by = p.From, p.RequestedBy
			var l []string
			for _, a := range p.Decisions {
				if a.Decision == store.Approve {
					l = append(l, a.Actor)
				}
			}
			if len(l) > 0 {
				approvers = strings.Join(l, ",")
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Env, e.Release, e.State, from, by, approvers,
			e.CreatedAt.Local().Format(time.DateTime), truncate(oneLine(e.Reason), 80))
	}
	return w.Flush()
}

func waitingText(p *promote.Promotion) string {
	if p.WaitingFor == "" {
		return "approved, starting"
	}
	return p.WaitingFor
}

// signalCanary asks the canary running in env to advance (--step) or abort
// (--abort), and says whether the deploying gantry took the request.
func signalCanary(cmd *cobra.Command, g *globals, env, action string) error {
	var sig *deploy.CanarySignal
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		// The server passes it to the deployment it runs, the same way.
		if err := c.Post(cmd.Context(), "/api/v1/envs/"+url.PathEscape(env)+"/canary", map[string]string{"action": action}, &sig); err != nil {
			return err
		}
	} else {
		f, err := g.loadFile()
		if err != nil {
			return err
		}
		if _, err := f.Env(env); err != nil {
			return err
		}
		st, err := store.Open(g.stateDirFor(f))
		if err != nil {
			return err
		}
		defer st.Close()
		if sig, err = deploy.SignalCanary(cmd.Context(), st, f.Project, env, action, actingAs().Name, 5*time.Second); err != nil {
			return err
		}
	}
	if g.output == "json" {
		return g.printJSON(sig)
	}
	what := fmt.Sprintf("the canary of %s (release %s, deployment %d) goes on past %d%% (step %d/%d)", sig.Service, sig.Release, sig.Deployment, sig.Weight, sig.Step, sig.Steps)
	if action == store.CanaryAbort {
		what = fmt.Sprintf("the canary of %s (release %s, deployment %d) is aborted at %d%% (step %d/%d): all traffic goes back to the stable release", sig.Service, sig.Release, sig.Deployment, sig.Weight, sig.Step, sig.Steps)
	}
	if !sig.Taken {
		fmt.Fprintf(g.stdout, "%s: requested (%s), but the deploying gantry (pid %d) has not taken it yet; it does within half a second while it runs (gantry status %s)\n",
			env, action, sig.PID, env)
		return nil
	}
	fmt.Fprintf(g.stdout, "%s: %s\n", env, what)
	return nil
}
