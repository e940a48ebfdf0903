package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/promote"
	"github.com/gantryhq/gantry/internal/store"
)

// remote returns the client for the server the environment selects
// (GANTRY_SERVER and GANTRY_TOKEN, or a context), or nil for local mode.
func (g *globals) remote() (*client.Client, error) {
	c, err := client.FromEnvironment()
	if err != nil {
		return nil, inputErr(err)
	}
	return c, nil
}

// viaServerOrStore runs remote with the server's client when a server is
// selected (see remote), else local with the project's store, closed after.
func (g *globals) viaServerOrStore(remote func(*client.Client) error, local func(*store.Store) error) error {
	c, err := g.remote()
	if err != nil {
		return err
	}
	if c != nil {
		return remote(c)
	}
	_, st, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	return local(st)
}

func urlPathEscape(s string) string { return url.PathEscape(s) }

func sortStrings(s []string) { sort.Strings(s) }

// remoteStatus is gantry status against a server.
func remoteStatus(cmd *cobra.Command, g *globals, c *client.Client, args []string) error {
	var all []*deploy.Status
	if len(args) == 1 {
		var st deploy.Status
		if err := c.Get(cmd.Context(), "/api/v1/envs/"+url.PathEscape(args[0])+"/status", &st); err != nil {
			return err
		}
		all = append(all, &st)
	} else if err := c.Get(cmd.Context(), "/api/v1/status", &all); err != nil {
		return err
	}
	if g.output == "json" {
		if len(args) == 1 {
			return g.printJSON(all[0])
		}
		return g.printJSON(all)
	}
	for _, st := range all {
		printStatus(g, st)
	}
	return nil
}

func remoteHistory(cmd *cobra.Command, g *globals, c *client.Client, env string, limit int) error {
	var hs []deploy.HistoryEntry
	if err := c.Get(cmd.Context(), fmt.Sprintf("/api/v1/envs/%s/history?limit=%d", url.PathEscape(env), limit), &hs); err != nil {
		return err
	}
	return printHistory(g, env, hs)
}

// remoteDeploy starts a deploy or rollback on the server and follows it,
// showing its steps as the local display does, then prints the result.
func remoteDeploy(cmd *cobra.Command, g *globals, c *client.Client, path string, body any) error {
	var a client.Accepted
	if err := c.Post(cmd.Context(), path, body, &a); err != nil {
		return err
	}
	return followRemote(cmd, g, c, a)
}

// stepPhase words a recorded step as the local display words the same
// moment: the server records steps, not the engine's progress calls.
func stepPhase(s store.Step) (string, string) {
	switch s.Phase {
	case "create":
		return "creating", s.Detail
	case "start":
		return "waiting for health", ""
	case "stop-old":
		return "stopping old", ""
	case "rollback":
		return "rolling back", ""
	case "verdict":
		// "healthy=true CHECK: REASON"
		v, reason, _ := strings.Cut(s.Detail, " ")
		if _, r, ok := strings.Cut(reason, ": "); ok {
			reason = r
		}
		if v == "healthy=true" {
			return "healthy", reason
		}
		return "failed", reason
	}
	return s.Phase, s.Detail
}

func remoteReleases(cmd *cobra.Command, g *globals, c *client.Client, args []string, limit int) error {
	if len(args) == 1 {
		var r store.Release
		if err := c.Get(cmd.Context(), "/api/v1/releases/"+url.PathEscape(args[0]), &r); err != nil {
			return err
		}
		if g.output == "json" {
			return g.printJSON(&r)
		}
		printRelease(g, &r)
		return nil
	}
	var rs []*store.Release
	if err := c.Get(cmd.Context(), fmt.Sprintf("/api/v1/releases?limit=%d", limit), &rs); err != nil {
		return err
	}
	project := ""
	if len(rs) == 0 && g.output != "json" {
		// The empty list names the project, as locally.
		var sts []*deploy.Status
		if c.Get(cmd.Context(), "/api/v1/status", &sts) == nil && len(sts) > 0 {
			project = sts[0].Project
		}
	}
	return printReleases(g, project, rs)
}

func newContextCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "context",
		Short: "Name the gantry servers this CLI talks to, and choose one",
		Long: `A context is a gantry server (its URL, a token, and how to trust its
certificate) kept in ~/.config/gantry/config.yaml (mode 0600; $GANTRY_CONFIG
elsewhere). With a current context, gantry status, history, deploy,
rollback, releases, token and audit talk to that server and print what they
print locally. GANTRY_SERVER and GANTRY_TOKEN (with GANTRY_CA or
GANTRY_FINGERPRINT) override it; GANTRY_CONTEXT picks another for one
command; the context "local" means no server.`,
		Example: `  gantry token create --name alice --role editor | gantry context add prod --server https://gantry.example.com:8443 --token-stdin
  gantry context add lab --server https://127.0.0.1:8443 --token-stdin --fingerprint AB:CD:... < token
  gantry context use prod
  gantry context list
  gantry context use local`,
	}
	cmd.AddCommand(newContextAddCmd(g), newContextUseCmd(g), newContextListCmd(g), newContextRemoveCmd(g))
	return cmd
}

func loadContexts() (*client.Config, error) {
	path, err := client.ConfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := client.LoadConfig(path)
	return cfg, inputErr(err)
}

func newContextAddCmd(g *globals) *cobra.Command {
	var ctx client.Context
	var tokenStdin, use bool
	cmd := &cobra.Command{
		Use:   "add NAME --server URL --token-stdin [--ca FILE | --fingerprint SHA256]",
		Short: "Add (or replace) a context; the token is read from stdin",
		Long: `Add a server as a context. The token is read from stdin (never a flag:
flags show in the process list and shell history). --ca trusts a CA bundle
for the server's certificate; --fingerprint pins a self-signed certificate
by the SHA-256 gantry server printed at start. The first context added
becomes the current one.`,
		Example: `  gantry context add prod --server https://gantry.example.com:8443 --token-stdin < prod.token
  gantry context add lab --server https://127.0.0.1:8443 --fingerprint 3A:1F:... --token-stdin < lab.token`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: gantry context add needs the context's name, for example gantry context add prod --server URL --token-stdin", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !tokenStdin {
				return fmt.Errorf("%w: give the token on stdin with --token-stdin (for example: gantry context add %s --server %s --token-stdin < token)", errUsage, args[0], ctx.Server)
			}
			line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
			if err != nil && err != io.EOF {
				return err
			}
			ctx.Token = strings.TrimSpace(line)
			cfg, err := loadContexts()
			if err != nil {
				return err
			}
			if err := cfg.Add(args[0], ctx); err != nil {
				return inputErr(err)
			}
			if use || cfg.Current == "" {
				cfg.Current = args[0]
			}
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "context %s: %s", args[0], ctx.Server)
			if cfg.Current == args[0] {
				fmt.Fprint(g.stdout, " (current)")
			}
			fmt.Fprintln(g.stdout)
			return nil
		},
	}
	cmd.Flags().StringVar(&ctx.Server, "server", "", "the server's URL, https://HOST:PORT")
	cmd.Flags().BoolVar(&tokenStdin, "token-stdin", false, "read the token from stdin")
	cmd.Flags().StringVar(&ctx.CAFile, "ca", "", "PEM CA bundle to trust for the server's certificate")
	cmd.Flags().StringVar(&ctx.Fingerprint, "fingerprint", "", "pin the server's certificate by its SHA-256 fingerprint")
	cmd.Flags().BoolVar(&use, "use", false, "make it the current context")
	return cmd
}

func newContextUseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "use NAME|local",
		Short:   "Choose the context commands talk to (local: none)",
		Example: "  gantry context use prod\n  gantry context use local",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: gantry context use needs a context's name, or local", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadContexts()
			if err != nil {
				return err
			}
			if err := cfg.Use(args[0]); err != nil {
				return inputErr(err)
			}
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "using %s\n", args[0])
			return nil
		},
	}
}

func newContextListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the contexts (never their tokens)",
		Example: "  gantry context list",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadContexts()
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(map[string]any{"current": cfg.Current, "contexts": cfg.Contexts})
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "CURRENT\tNAME\tSERVER\tTRUST")
			cur := map[bool]string{true: "*", false: ""}
			fmt.Fprintf(w, "%s\tlocal\t(this machine's store)\t-\n", cur[cfg.Current == ""])
			for _, n := range cfg.Names() {
				c := cfg.Contexts[n]
				trust := "system CAs"
				switch {
				case c.CAFile != "":
					trust = "CA " + c.CAFile
				case c.Fingerprint != "":
					trust = "fingerprint " + c.Fingerprint[:min(len(c.Fingerprint), 23)] + "…"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cur[cfg.Current == n], n, c.Server, trust)
			}
			return w.Flush()
		},
	}
}

func newContextRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Remove a context and its token from this machine",
		Example: "  gantry context remove lab",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: gantry context remove needs a context's name", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadContexts()
			if err != nil {
				return err
			}
			if err := cfg.Remove(args[0]); err != nil {
				return inputErr(err)
			}
			if err := cfg.Save(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "removed context %s\n", args[0])
			return nil
		},
	}
}

// remotePromote is gantry promote against a server: the token is the
// requester.
func remotePromote(cmd *cobra.Command, g *globals, c *client.Client, from, to, release string, override *deploy.GateOverride) error {
	var raw json.RawMessage
	body := map[string]any{"from": from, "release": release}
	if override != nil {
		body["override_gate"], body["reason"] = true, override.Reason
	}
	if err := c.Post(cmd.Context(), "/api/v1/envs/"+url.PathEscape(to)+"/promote", body, &raw); err != nil {
		return err
	}
	var a client.Accepted
	if json.Unmarshal(raw, &a) == nil && a.URL != "" {
		// Not protected: deployed at once, followed as a deploy.
		return followRemote(cmd, g, c, a)
	}
	var d store.Deployment
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("promote: the server's answer is not a deployment: %w", err)
	}
	e, err := remoteEntry(cmd, c, d.ID, d.Env)
	if err != nil {
		return err
	}
	if g.output == "json" {
		return g.printJSON(e)
	}
	printAwaiting(g, e)
	return nil
}

// remoteEntry finds deployment id, with its promotion, among env's.
func remoteEntry(cmd *cobra.Command, c *client.Client, id int64, env string) (*promote.Entry, error) {
	var es []promote.Entry
	if err := c.Get(cmd.Context(), "/api/v1/deployments?limit=50&env="+url.QueryEscape(env), &es); err != nil {
		return nil, err
	}
	for i := range es {
		if es[i].ID == id && es[i].Promotion != nil {
			return &es[i], nil
		}
	}
	return nil, fmt.Errorf("deployment %d is not among the server's promotions of %s", id, env)
}

// remoteDecision is gantry approve or reject against a server: the token
// is the approver.
func remoteDecision(cmd *cobra.Command, g *globals, c *client.Client, id int64, decision store.Decision, comment string) error {
	verb := "approve"
	if decision == store.Reject {
		verb = "reject"
	}
	var raw json.RawMessage
	if err := c.Post(cmd.Context(), fmt.Sprintf("/api/v1/deployments/%d/%s", id, verb), map[string]string{"comment": comment}, &raw); err != nil {
		return err
	}
	var a client.Accepted
	if json.Unmarshal(raw, &a) == nil && a.URL != "" {
		// This approval completed the approvals: the server runs it.
		return followRemote(cmd, g, c, a)
	}
	var dec promote.Decision
	if err := json.Unmarshal(raw, &dec); err != nil || dec.Deployment == nil {
		return fmt.Errorf("%s: the server's answer is not a decision: %v", verb, err)
	}
	if g.output == "json" {
		return g.printJSON(&dec)
	}
	actor := "-"
	if p := dec.Promotion; p != nil && len(p.Decisions) > 0 {
		actor = p.Decisions[len(p.Decisions)-1].Actor
	}
	printDecision(g, &dec, decision, actor)
	return nil
}

func remoteDeployments(cmd *cobra.Command, g *globals, c *client.Client, args []string, pending bool, limit int) error {
	q := url.Values{}
	q.Set("limit", fmt.Sprint(limit))
	if pending {
		q.Set("pending", "true")
	}
	if len(args) == 1 {
		q.Set("env", args[0])
	}
	var es []promote.Entry
	if err := c.Get(cmd.Context(), "/api/v1/deployments?"+q.Encode(), &es); err != nil {
		return err
	}
	return printEntries(g, es, pending)
}

// followRemote follows a deployment the server started and prints its
// result as a local deploy does.
func followRemote(cmd *cobra.Command, g *globals, c *client.Client, a client.Accepted) error {
	return follow(cmd, g, c, a, false)
}

// follow is followRemote; asked: the deployment is a deploy that `gantry
// rollback` asked to roll back, whose rolling back is that command's
// success.
func follow(cmd *cobra.Command, g *globals, c *client.Client, a client.Accepted, asked bool) error {
	rep := newReporter(g.stderr)
	rep.Note(fmt.Sprintf("deployment %d started on %s", a.Deployment, c.Server()))
	res, err := c.Follow(cmd.Context(), a, func(s store.Step) {
		phase, detail := stepPhase(s)
		rep.Service(s.Service, phase, detail)
	})
	rep.Done()
	if asked && errors.Is(err, deploy.ErrRolledBack) {
		err = nil
	}
	if res != nil {
		printOutcome(g, res, asked)
	}
	return err
}
