// Package cli is gantry's command line: thin cobra commands that bind flags
// into the domain packages' options and call one function each. Errors map
// to exit codes in one place, ExitCode.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/registry"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/target"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK         = 0
	ExitError      = 1
	ExitUsage      = 2
	ExitRolledBack = 3
	ExitFailed     = 4
	ExitBusy       = 5
	ExitNoRuntime  = 6
)

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	var cfgErr *config.Error
	var locked *store.LockedError
	var apiErr *client.APIError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &apiErr):
		// A server's answer carries the exit code of the same failure in local mode.
		return apiErr.ExitCode()
	case errors.Is(err, deploy.ErrRolledBack):
		return ExitRolledBack
	case errors.Is(err, deploy.ErrFailed):
		return ExitFailed
	case errors.As(err, &locked), errors.Is(err, registry.ErrBusy):
		return ExitBusy
	case errors.Is(err, runtime.ErrUnreachable):
		return ExitNoRuntime
	case errors.As(err, &cfgErr), errors.Is(err, deploy.ErrInput), errors.Is(err, runtime.ErrImageNotFound),
		errors.Is(err, deploy.ErrNothingDeployed), errors.Is(err, errUsage),
		errors.Is(err, deploy.ErrGateRefused), errors.Is(err, deploy.ErrOverrideForbidden):
		return ExitUsage
	}
	return ExitError
}

var errUsage = errors.New("usage")

// Main runs gantry with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(followShorthand(args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		if strings.HasPrefix(err.Error(), "unknown command") {
			err = fmt.Errorf("%w: %s (see `gantry --help`)", errUsage, err)
		}
		if g.output == "json" && !g.printed {
			json.NewEncoder(stdout).Encode(map[string]any{"error": stripSentinel(err.Error()), "exit_code": ExitCode(err)})
		}
		fmt.Fprintf(stderr, "gantry: %s\n", stripSentinel(err.Error()))
	}
	return ExitCode(err)
}

// stripSentinel drops the "invalid input: " and "usage: " prefixes: the
// message itself says what is wrong.
func stripSentinel(s string) string {
	for _, p := range []string{deploy.ErrInput.Error() + ": ", errUsage.Error() + ": "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

type globals struct {
	file     string
	stateDir string
	output   string
	logLevel string
	stdout   io.Writer
	stderr   io.Writer
	log      *slog.Logger
	// printed: a JSON document went to stdout; an error then goes to
	// stderr only, so stdout stays one document.
	printed bool
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "gantry",
		Short: "Health-gated deploys of Compose services, with automatic rollback",
		Long: `gantry takes a containerized service from a release to a running, healthy
environment and keeps a record of everything it did.

It reads your compose file unchanged, plus a short gantry.yaml, and deploys
to a Docker host service by service, in dependency order. Every service must
pass its health gate (container running, Docker healthcheck healthy, gantry's
own probes passing, for min_healthy within the health window); if one does
not, gantry rolls the whole release back on its own and says why.

Start with:
  gantry init                 write a gantry.yaml next to your compose file
  gantry config staging       show what gantry will deploy to staging
  gantry deploy staging       deploy, gate, commit or roll back
  gantry status staging       what serves now
  gantry history staging      every deployment, with its outcome
  gantry rollback staging     go back to the release before`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("%w: --log-level %q: use debug, info, warn or error", errUsage, g.logLevel)
			}
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("%w: --output %q: use text or json", errUsage, g.output)
			}
			g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w: %s (see `%s --help`)", errUsage, err, cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.file, "file", "f", envOr("GANTRY_FILE", config.DefaultFileName), "gantry.yaml to use ($GANTRY_FILE)")
	pf.StringVar(&g.stateDir, "state-dir", os.Getenv("GANTRY_STATE_DIR"), "where gantry keeps its records ($GANTRY_STATE_DIR; default .gantry next to gantry.yaml)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.AddCommand(newDeployCmd(g), newRollbackCmd(g), newStatusCmd(g), newHistoryCmd(g), newConfigCmd(g), newInitCmd(g), newVersionCmd(g), newChangelogCmd(g), newTagsCmd(g))
	root.AddCommand(newReleasesCmd(g))
	root.AddCommand(newRegistryCmd(g))
	root.AddCommand(newBuildCmd(g))
	root.AddCommand(newPushCmd(g))
	root.AddCommand(newReleaseCmd(g))
	root.AddCommand(newTokenCmd(g))
	root.AddCommand(newAuditCmd(g))
	root.AddCommand(newLintCmd(g))
	root.AddCommand(newScanCmd(g))
	root.AddCommand(newServerCmd(g))
	root.AddCommand(newPromoteCmd(g), newApproveCmd(g), newRejectCmd(g), newDeploymentsCmd(g))
	root.AddCommand(newContextCmd(g))
	root.AddCommand(newProxyCmd(g))
	root.AddCommand(newHealthCmd(g))
	root.AddCommand(newLogsCmd(g))
	root.AddCommand(newAlertsCmd(g))
	root.AddCommand(newMonitoringCmd(g))
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (g *globals) loadFile() (*config.File, error) {
	return config.Load(g.file)
}

func (g *globals) stateDirFor(f *config.File) string {
	if g.stateDir != "" {
		return g.stateDir
	}
	return filepath.Join(f.Dir, ".gantry")
}

// session is what an environment command works with.
type session struct {
	file   *config.File
	env    *config.Environment
	rt     target.Runtime
	store  *store.Store
	engine *deploy.Engine
}

func (s *session) Close() {
	if s.store != nil {
		s.store.Close()
	}
	if s.rt != nil {
		s.rt.Close()
	}
}

// open loads gantry.yaml, connects to the environment's Docker host and
// opens the store.
func (g *globals) open(envName string, rep deploy.Reporter) (*session, error) {
	f, err := g.loadFile()
	if err != nil {
		return nil, err
	}
	env, err := f.Env(envName)
	if err != nil {
		return nil, err
	}
	if rep == nil {
		rep = quietReporter{}
	}
	rt, err := target.Open(env, f.Registry, rep.Note)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(g.stateDirFor(f))
	if err != nil {
		rt.Close()
		return nil, err
	}
	// Locally you act as $GANTRY_ACTOR (default: your user name): in the
	// deployments' records, and in what a rollback asks of a deploy.
	opts := []deploy.Option{deploy.WithReporter(rep), deploy.WithLogger(g.log), deploy.WithActor(actingAs().Name)}
	if m := g.notifier(f, st); m != nil {
		opts = append(opts, alertOnFinish(m))
	}
	eng := deploy.New(rt, st, g.stateDirFor(f), opts...)
	return &session{file: f, env: env, rt: rt, store: st, engine: eng}, nil
}

type quietReporter struct{}

func (quietReporter) Service(string, string, string) {}
func (quietReporter) Note(string)                    {}

func (g *globals) printJSON(v any) error {
	g.printed = true
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// envArg requires exactly one argument, the environment's name.
func envArg(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: %s needs the environment's name, for example `%s staging`", errUsage, cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}
