package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// openStore loads gantry.yaml and opens its store, for commands that work on
// the record only (tokens, audit).
func (g *globals) openStore() (*config.File, *store.Store, error) {
	f, err := g.loadFile()
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(g.stateDirFor(f))
	if err != nil {
		return nil, nil, err
	}
	return f, st, nil
}

// localActor names the person running a local command, for the audit log.
func localActor() string {
	u := os.Getenv("USER")
	if u == "" {
		u = fmt.Sprintf("uid %d", os.Getuid())
	}
	return "local:" + u
}

// inputErr makes a domain package's bad-input error exit with code 2.
func inputErr(err error) error {
	if (errors.Is(err, auth.ErrInput) || errors.Is(err, client.ErrInput)) && !errors.Is(err, errUsage) {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens for gantry server",
		Long: `API tokens authenticate the clients of gantry server: people, CI jobs and
scripts. Each token has a role:

  viewer   reads: status, history, releases, deployments
  editor   also deploys and rolls back
  admin    everything: tokens and the audit log too

and may be limited to environments (--env) and to a lifetime (--expires).
A token is shown once, when it is made; gantry keeps only its hash. Revoked
and expired tokens stop working at once.

These commands work on the store on this machine: make the first admin
token on the server's machine, then use it for the rest (gantry token
commands go to the server when GANTRY_SERVER is set).`,
		Example: `  gantry token create --name ci --role editor --env staging --expires 90d
  gantry token list
  gantry token revoke ci`,
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	return cmd
}

type tokenCreated struct {
	*store.Token
	Secret string `json:"token"`
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var name, role, expires string
	var envs []string
	cmd := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Create a token and print it, once",
		Long: `Create an API token and print it on stdout. It is not shown again: gantry
stores only a hash of it. Store it in your CI's secrets or a password
manager.

--expires takes days (90d) or a duration (12h); never means no expiry.`,
		Example: `  gantry token create --name ci --role editor --env staging
  gantry token create --name alice --role admin --expires 30d
  GANTRY_TOKEN=$(gantry token create --name deploy-bot --role editor)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return inputErr(err)
			}
			var ttl time.Duration
			if expires != "never" {
				if ttl, err = auth.ParseDuration(expires); err != nil {
					return inputErr(fmt.Errorf("--expires: %w", err))
				}
			}
			if name == "" {
				return fmt.Errorf("%w: --name is required: who or what uses the token, for example ci or alice", errUsage)
			}
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				var out tokenCreated
				if err := c.Post(cmd.Context(), "/api/v1/tokens", map[string]any{"name": name, "role": r, "envs": envs, "expires": expires}, &out); err != nil {
					return err
				}
				return printToken(g, out)
			}
			f, st, err := g.openStore()
			if err != nil {
				return err
			}
			defer st.Close()
			secret, rec, err := auth.New(st).Create(cmd.Context(), auth.CreateOptions{Name: name, Role: r, Envs: envs, TTL: ttl,
				CreatedBy: localActor(), KnownEnvs: f.EnvNames()})
			if err != nil {
				return inputErr(err)
			}
			if _, err := audit.Open(st).Append(cmd.Context(), audit.Event{Actor: localActor(), Role: string(auth.Admin), Action: "token.create",
				Object: "token/" + rec.Name, Outcome: audit.OK, Client: "local",
				Detail: map[string]string{"id": rec.ID, "role": rec.Role, "envs": strings.Join(rec.Envs, ","), "expires": expires}}); err != nil {
				return err
			}
			return printToken(g, tokenCreated{Token: rec, Secret: secret})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "who or what uses the token (unique among active tokens)")
	cmd.Flags().StringVar(&role, "role", "viewer", "viewer, editor or admin")
	cmd.Flags().StringArrayVar(&envs, "env", nil, "limit the token to this environment (repeatable; default: all)")
	cmd.Flags().StringVar(&expires, "expires", "90d", "lifetime: days (90d), a duration (12h), or never")
	return cmd
}

func printToken(g *globals, t tokenCreated) error {
	if g.output == "json" {
		return g.printJSON(t)
	}
	scope := "all environments"
	if len(t.Envs) > 0 {
		scope = strings.Join(t.Envs, ", ")
	}
	exp := "never expires"
	if t.ExpiresAt != nil {
		exp = "expires " + t.ExpiresAt.Local().Format("2006-01-02 15:04")
	}
	fmt.Fprintf(g.stderr, "token %s (id %s): %s on %s, %s. It is shown only now:\n", t.Name, t.ID, t.Role, scope, exp)
	fmt.Fprintln(g.stdout, t.Secret)
	return nil
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the tokens: role, environments, expiry, last use",
		Example: "  gantry token list\n  gantry token list --output json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var l []*store.Token
			err := g.viaServerOrStore(func(c *client.Client) error {
				return c.Get(cmd.Context(), "/api/v1/tokens", &l)
			}, func(st *store.Store) (err error) {
				l, err = auth.New(st).List(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				if l == nil {
					l = []*store.Token{}
				}
				return g.printJSON(l)
			}
			if len(l) == 0 {
				fmt.Fprintln(g.stdout, "no tokens yet; make one with gantry token create --name NAME --role ROLE")
				return nil
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tROLE\tENVS\tSTATE\tCREATED\tEXPIRES\tLAST USED")
			now := time.Now()
			for _, t := range l {
				envs := "all"
				if len(t.Envs) > 0 {
					envs = strings.Join(t.Envs, ",")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.ID, t.Role, envs, auth.Status(t, now),
					t.CreatedAt.Local().Format("2006-01-02 15:04"), dateOr(t.ExpiresAt, "never"), dateOr(t.LastUsed, "never"))
			}
			return w.Flush()
		},
	}
}

func dateOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Local().Format("2006-01-02 15:04")
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke NAME|ID",
		Short:   "Revoke a token: it stops working at once",
		Example: "  gantry token revoke ci\n  gantry token revoke 3fq7k2ab",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: gantry token revoke needs the token's name or id (see gantry token list)", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var rec *store.Token
			err := g.viaServerOrStore(func(c *client.Client) error {
				return c.Delete(cmd.Context(), "/api/v1/tokens/"+urlPathEscape(args[0]), &rec)
			}, func(st *store.Store) (err error) {
				if rec, err = auth.New(st).Revoke(cmd.Context(), args[0]); err != nil {
					return inputErr(err)
				}
				_, err = audit.Open(st).Append(cmd.Context(), audit.Event{Actor: localActor(), Role: string(auth.Admin), Action: "token.revoke",
					Object: "token/" + rec.Name, Outcome: audit.OK, Client: "local", Detail: map[string]string{"id": rec.ID}})
				return err
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printJSON(rec)
			}
			fmt.Fprintf(g.stdout, "revoked token %s (id %s)\n", rec.Name, rec.ID)
			return nil
		},
	}
}
