package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/lint"
)

func newLintCmd(g *globals) *cobra.Command {
	var opts lint.Options
	var failOn, format string
	var listRules bool
	cmd := &cobra.Command{
		Use:   "lint [PATH...]",
		Short: "Check Dockerfiles and compose files for secrets, root users, floating tags and more",
		Long: `Check the project's Dockerfiles and its compose model in every environment
against gantry's rules: secrets in ENV, ARG or a service's environment, images
that run as root, base images without a version, missing health checks, build
tools and package caches left in images, ADD of remote URLs, privileged
services, the host's network or PID namespace, the Docker socket, ports open
on every interface, and floating tags in a protected environment.

Without PATH, gantry lint reads gantry.yaml: the Dockerfiles its services
build (services.<svc>.build and the compose files' build sections) and the
resolved compose model of each environment (--env to pick), with
interpolation, .env and override files counted. With PATH, it reads those
files, or searches those directories (a gantry.yaml found there is linted as
a project). Without gantry.yaml and without PATH, it searches the current
directory.

Dockerfiles are read with BuildKit's parser, the one docker build uses.
Ignore a finding with a reason, on the line before the instruction:
  # gantry-lint ignore=GL1005 reason="pinned by digest in CI"
or on a compose service:
  x-gantry-lint: { ignore: [{ rule: GL2007, reason: "the proxy faces the network" }] }
gantry.yaml's lint section turns rules off (disable), re-levels them
(severity) and sets the threshold (fail_on). Every rule has a page under
docs/lint/; --rules lists them.

Exit codes: 0 no finding at or above --fail-on (default error, or
lint.fail_on), 1 findings at or above it, 2 input that cannot be read.`,
		Example: `  gantry lint                                # the project, every environment
  gantry lint --env production               # one environment's compose model
  gantry lint Dockerfile compose.yaml        # these files only
  gantry lint --fail-on warning .            # this directory; warnings fail too
  gantry lint --format sarif > lint.sarif    # for GitHub code scanning
  gantry lint --rules                        # every rule, its severity and equivalents`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "" {
				format = g.output
			}
			if format != lint.FormatText && format != lint.FormatJSON && format != lint.FormatSARIF {
				return fmt.Errorf("%w: --format %q: use text, json or sarif", errUsage, format)
			}
			if listRules {
				return printRules(g, format)
			}
			if failOn != "" {
				sev, err := lint.ParseSeverity(failOn)
				if err != nil {
					return fmt.Errorf("%w: --fail-on: %v", errUsage, strings.TrimPrefix(err.Error(), lint.ErrInput.Error()+": "))
				}
				opts.FailOn = sev
			}
			opts.Paths = args
			f, err := loadLintFile(g.file, len(args) > 0 || !cmd.Flags().Changed("file"))
			if err != nil {
				return err
			}
			opts.File = f
			if len(opts.Envs) > 0 {
				if len(args) > 0 || f == nil {
					return fmt.Errorf("%w: --env picks environments of gantry.yaml; leave out the paths (or the --env)", errUsage)
				}
				for _, e := range opts.Envs {
					if _, err := f.Env(e); err != nil {
						return err
					}
				}
			}
			if f == nil && len(args) == 0 {
				opts.Paths = []string{"."}
			}
			rep, err := lint.Run(cmd.Context(), opts)
			if err != nil {
				if errors.Is(err, lint.ErrInput) {
					return fmt.Errorf("%w: %s", errUsage, strings.TrimPrefix(err.Error(), lint.ErrInput.Error()+": "))
				}
				return err
			}
			if format != lint.FormatText {
				g.printed = true
			}
			if err := rep.Write(g.stdout, format); err != nil {
				return err
			}
			return rep.Err()
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&opts.Envs, "env", nil, "environments whose compose model to lint (default: all)")
	fl.StringVar(&failOn, "fail-on", "", "least severity that fails (exit 1): error, warning or info (default: lint.fail_on, else error)")
	fl.StringVar(&format, "format", "", "text, json or sarif (default: --output)")
	fl.BoolVar(&listRules, "rules", false, "list the rules and exit")
	return cmd
}

// loadLintFile loads gantry.yaml when there is one. A missing file is no
// error when lint has paths, or when the file is the default one.
func loadLintFile(path string, missingOK bool) (*config.File, error) {
	if _, err := os.Stat(path); err != nil && os.IsNotExist(err) && missingOK {
		return nil, nil
	}
	return config.Load(path)
}

func printRules(g *globals, format string) error {
	rules := lint.Rules()
	if format != lint.FormatText {
		return g.printJSON(rules)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tSEVERITY\tKIND\tTITLE\tHADOLINT\tDOCKLE\tTRIVY")
	dash := func(l []string) string {
		if len(l) == 0 {
			return "-"
		}
		return strings.Join(l, ",")
	}
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Severity, r.Kind, r.Title, dash(r.Hadolint), dash(r.Dockle), dash(r.Trivy))
	}
	return tw.Flush()
}
