package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
)

type deployFlags struct {
	release string
	images  []string
	gate    gateFlags
}

// gateFlags are --override-gate and --reason of deploy and promote.
type gateFlags struct {
	override bool
	reason   string
}

func (gf *gateFlags) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&gf.override, "override-gate", false, "deploy even though the environment requires gates and the release's failed or never ran (admins only; needs --reason; audited)")
	cmd.Flags().StringVar(&gf.reason, "reason", "", "why the release may skip its gates, for the audit log (with --override-gate)")
}

// get is the override asked for, nil for none.
func (gf *gateFlags) get() (*deploy.GateOverride, error) {
	switch {
	case gf.reason != "" && !gf.override:
		return nil, fmt.Errorf("%w: --reason goes with --override-gate; leave it out, or add --override-gate", errUsage)
	case !gf.override:
		return nil, nil
	case strings.TrimSpace(gf.reason) == "":
		return nil, fmt.Errorf("%w: --override-gate needs --reason: say why this release may skip its gates; the reason goes to the audit log", errUsage)
	}
	return &deploy.GateOverride{Reason: gf.reason}, nil
}

func newDeployCmd(g *globals) *cobra.Command {
	var fl deployFlags
	cmd := &cobra.Command{
		Use:   "deploy ENV",
		Short: "Deploy a release to an environment, gate its health, roll back on failure",
		Long: `Deploy the services of gantry.yaml's compose files to ENV.

gantry resolves every image to its immutable ID, records the deployment, then
applies the services in dependency order. Each new container must pass the
health gate: running, its Docker healthcheck healthy, and the probes of
gantry.yaml passing, for health.min_healthy (default 10s) within
health.window (default 5m). It fails at once when the container exits,
restarts, is OOM-killed or turns unhealthy.

Services with a fixed host port are replaced stop-first (the old container
is stopped, not removed); others start-first (the new one starts beside the
old one). If any service fails, gantry rolls the whole release back on its
own: the new containers go and the previous release serves again.

An environment with require_gates: true takes only a release made by gantry
release whose gates (gates: in gantry.yaml: lint, the Trivy scan) ran and
passed, and no --image replacements. An admin may deploy it anyway with
--override-gate --reason TEXT, which is written to the audit log. Locally
you act as $GANTRY_ACTOR (default: your user name), as an admin; gantry
server enforces the token's role.

Exit codes: 0 deployed, 3 failed and rolled back, 4 failed with nothing to
roll back to, 5 environment busy, 6 Docker unreachable, 2 bad input or
refused by the gates.`,
		Example: `  gantry deploy staging
  gantry deploy staging --release 1.4.0 --image web=registry.example.com/shop/web:1.4.0
  gantry deploy staging --output json | jq .state
  gantry deploy production --release 1.4.0 --override-gate --reason "CVE-2022-32149 is not reachable; fix in 1.4.1"`,
		Args: envArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd, g, args[0], fl)
		},
	}
	cmd.Flags().StringVar(&fl.release, "release", "", "release to deploy: a version from gantry releases is pulled by its digests; any other name just names the deployment (default: derived from the image IDs)")
	cmd.Flags().StringArrayVar(&fl.images, "image", nil, "SERVICE=IMAGE: deploy this image for a service (repeatable)")
	fl.gate.bind(cmd)
	return cmd
}

func runDeploy(cmd *cobra.Command, g *globals, envName string, fl deployFlags) error {
	images, err := deploy.ParseImages(fl.images)
	if err != nil {
		return err
	}
	override, err := fl.gate.get()
	if err != nil {
		return err
	}
	if c, err := g.remote(); c != nil || err != nil {
		if err != nil {
			return err
		}
		body := map[string]any{"release": fl.release, "images": images}
		if override != nil {
			body["override_gate"], body["reason"] = true, override.Reason
		}
		return remoteDeploy(cmd, g, c, "/api/v1/envs/"+urlPathEscape(envName)+"/deploy", body)
	}
	rep := newReporter(g.stderr)
	s, err := g.open(envName, rep)
	if err != nil {
		return err
	}
	defer s.Close()
	who := actingAs()
	if err := deploy.Admit(cmd.Context(), s.store, audit.Open(s.store), deploy.Admission{Project: s.file.Project, Env: s.env,
		Gates: s.file.Gates, Release: fl.release, Images: images, Override: override,
		Who: audit.Event{Actor: who.Name, Role: string(who.Role)}}); err != nil {
		return err
	}
	m, err := s.file.Resolve(cmd.Context(), envName)
	if err != nil {
		return err
	}
	if fl.release != "" {
		if images, err = releasedImages(cmd, s, m, fl.release, images); err != nil {
			return err
		}
	}
	res, err := s.engine.Deploy(cmd.Context(), m, fl.release, images)
	rep.Done()
	if res != nil {
		printResult(g, res)
	}
	return err
}

// releasedImages pins the services of a recorded release to its digests;
// see deploy.PinRelease.
func releasedImages(cmd *cobra.Command, s *session, m *config.Model, version string, images map[string]string) (map[string]string, error) {
	return deploy.PinRelease(cmd.Context(), s.store, m, s.file.Project, version, images)
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "rollback ENV",
		Short: "Return an environment to an earlier release",
		Long: `Return ENV to the release that served before the current one, or to
--to RELEASE, any release that once succeeded there.

Containers of the last releases are kept stopped (keep_releases, default 2),
so a rollback to one of them is a restart, not a re-creation. The rollback
passes the same health gate as a deploy; if it fails, the current release
keeps serving.

While a deploy holds ENV (in its health gates, its canary, or the watch
window of its analysis), the rollback asks that deploy to roll back now
(its gates end, a canary is aborted, a routed service switches back to the
containers that kept running), waits for it and exits 0; the deploy exits
3. --to can then name only the release before.

Exit codes: 0 rolled back, 3 the rollback failed its gate and the current
release serves again, 4 it failed and could not be undone, 5 environment
busy (another rollback runs), 6 Docker unreachable, 2 bad input.`,
		Example: `  gantry rollback staging
  gantry rollback staging --to 1.3.2`,
		Args: envArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				var a client.Accepted
				if err := c.Post(cmd.Context(), "/api/v1/envs/"+urlPathEscape(args[0])+"/rollback", map[string]any{"to": to}, &a); err != nil {
					return err
				}
				// A deploy under way (gates, canary, watch window) rolls back when
				// asked: the server answers with that deployment.
				return follow(cmd, g, c, a, a.Kind == "deploy")
			}
			rep := newReporter(g.stderr)
			s, err := g.open(args[0], rep)
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := s.engine.Rollback(cmd.Context(), s.file.Project, s.env, to)
			rep.Done()
			if res != nil {
				printOutcome(g, res, res.Kind == "deploy")
			}
			return err
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "release to return to (default: the one before the serving one)")
	return cmd
}

func printResult(g *globals, res *deploy.Result) { printOutcome(g, res, false) }

// printOutcome prints a deployment's result; asked: a rollback that the
// deploy holding the environment made when `gantry rollback` asked it to,
// the outcome that command wanted.
func printOutcome(g *globals, res *deploy.Result, asked bool) {
	if g.output == "json" {
		g.printJSON(res)
		return
	}
	w := g.stdout
	verb := "deployed"
	if res.Kind == "rollback" {
		verb = "rolled back to"
	}
	check := ""
	if res.Failure != nil {
		check = res.Failure.Check
	}
	switch {
	case res.State == "succeeded":
		fmt.Fprintf(w, "%s %s to %s in %.1fs (deployment %d)\n", verb, res.Release, res.Env, res.DurationSeconds, res.Deployment)
	case res.State == "rolled_back" && asked:
		fmt.Fprintf(w, "rolled %s back from %s to %s in %.1fs: deployment %d, which held the environment, switched back when asked\n",
			res.Env, res.Release, res.Previous, res.RollbackSeconds, res.Deployment)
	case res.State == "rolled_back":
		what := "did not become healthy"
		switch check {
		case "analysis":
			what = "failed its analysis"
		case "canary":
			what = "failed its canary"
		case "rollback":
			what = "was rolled back on request"
		}
		fmt.Fprintf(w, "FAILED: release %s %s in %s; gantry rolled back to %s in %.1fs (deployment %d)\n",
			res.Release, what, res.Env, res.Previous, res.RollbackSeconds, res.Deployment)
	default:
		fmt.Fprintf(w, "FAILED: release %s in %s: %s (deployment %d)\n", res.Release, res.Env, res.State, res.Deployment)
	}
	for _, s := range res.Services {
		mark := "ok"
		if !s.Healthy {
			mark = "FAILED"
		}
		fmt.Fprintf(w, "  %-12s %-6s %-11s gate %.1fs  %s\n", s.Name, mark, s.Strategy, s.GateSeconds, s.Reason)
	}
	if f := res.Failure; f != nil {
		fmt.Fprintf(w, "reason: %s\n", f)
		if f.Logs != "" {
			fmt.Fprintf(w, "last log lines of %s:\n", f.Service)
			for _, l := range strings.Split(f.Logs, "\n") {
				fmt.Fprintf(w, "  | %s\n", l)
			}
		}
	}
	if len(res.Recovered) > 0 {
		fmt.Fprintf(w, "note: recovered interrupted deployment(s) %v first\n", res.Recovered)
	}
}
