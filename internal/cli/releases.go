package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
)

func newReleasesCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "releases [VERSION]",
		Short: "List the project's releases, or show one",
		Long: `List every release gantry recorded for the project, newest first: its version,
state (released; pushing while a push runs or after one crashed; failed and
why), the commit it was built from, and each service's image digest.

The GATES column is the verdict of the release's gates (gantry lint and
the Trivy scan, when gantry.yaml has gates:): passed, failed, or - when none
ran. With VERSION, show that release in full: tags, each gate's verdict
(and the vulnerabilities that failed the scan), repositories, and the
digest of every platform's manifest. gantry deploy ENV --release VERSION deploys
exactly these digests.`,
		Example: `  gantry releases
  gantry releases 1.4.0
  gantry releases --output json | jq -r '.[0].version'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c, err := g.remote(); c != nil || err != nil {
				if err != nil {
					return err
				}
				return remoteReleases(cmd, g, c, args, limit)
			}
			f, err := g.loadFile()
			if err != nil {
				return err
			}
			st, err := store.Open(g.stateDirFor(f))
			if err != nil {
				return err
			}
			defer st.Close()
			if len(args) == 1 {
				r, err := st.GetRelease(cmd.Context(), f.Project, args[0])
				if err != nil {
					return fmt.Errorf("%w: %v; see gantry releases for the versions there are", errUsage, err)
				}
				if g.output == "json" {
					return g.printJSON(r)
				}
				printRelease(g, r)
				return nil
			}
			rs, err := st.Releases(cmd.Context(), f.Project, limit)
			if err != nil {
				return err
			}
			return printReleases(g, f.Project, rs)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many releases (0: all)")
	return cmd
}

// printReleases prints the releases as a table.
func printReleases(g *globals, project string, rs []*store.Release) error {
	if g.output == "json" {
		if rs == nil {
			rs = []*store.Release{}
		}
		return g.printJSON(rs)
	}
	if len(rs) == 0 {
		if project == "" {
			project = "the project"
		}
		fmt.Fprintf(g.stdout, "%s: no releases yet; make one with gantry release\n", project)
		return nil
	}
	w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "VERSION\tSTATE\tGATES\tCOMMIT\tCREATED\tIMAGES")
	for _, r := range rs {
		state := r.State
		if r.Reason != "" {
			state += ": " + truncate(oneLine(r.Reason), 60)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.7s\t%s\t%s\n", r.Version, state, gatesWord(r), r.Commit,
			r.CreatedAt.Local().Format("2006-01-02 15:04:05"), imageSummary(r))
	}
	return w.Flush()
}

// gatesWord is the verdict of a release's gates in a word: passed, failed
// (naming the gates that failed), or - when none ran.
func gatesWord(r *store.Release) string {
	if len(r.Gates) == 0 {
		return "-"
	}
	var failed []string
	for _, name := range []string{store.GateLint, store.GateScan} {
		if g := r.Gates[name]; g != nil && !g.Passed {
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		return "failed: " + strings.Join(failed, ", ")
	}
	return "passed"
}

// printGates prints each gate's verdict and, for a scan that failed, the
// findings that failed it.
func printGates(w io.Writer, r *store.Release) {
	if len(r.Gates) == 0 {
		fmt.Fprintln(w, "  gates:   none ran")
		return
	}
	for _, name := range []string{store.GateLint, store.GateScan} {
		g := r.Gates[name]
		if g == nil {
			continue
		}
		fmt.Fprintf(w, "  %-8s %s (%s", name+":", g.Summary, g.At.Local().Format("2006-01-02 15:04:05"))
		if g.Actor != "" {
			fmt.Fprintf(w, " by %s", g.Actor)
		}
		fmt.Fprintln(w, ")")
		if name != store.GateScan || g.Passed || len(g.Report) == 0 {
			continue
		}
		v, err := scan.Loaded(g)
		if err != nil {
			fmt.Fprintf(w, "    (%v)\n", err)
			continue
		}
		for _, f := range v.Findings {
			if f.Outcome == scan.Fail {
				fmt.Fprintf(w, "    %-8s %s %s %s -> %s (%s)\n", f.Severity, f.ID, f.Package, f.Installed, orDash(f.Fixed), strings.TrimSpace(f.Service+" "+f.Platform))
			}
		}
	}
}

// imageSummary is "web@sha256:0123456789ab api@sha256:..." in service order.
func imageSummary(r *store.Release) string {
	var parts []string
	for _, svc := range sortedServices(r) {
		parts = append(parts, fmt.Sprintf("%s@%.19s", svc, r.Images[svc].Digest))
	}
	return strings.Join(parts, " ")
}

func sortedServices(r *store.Release) []string {
	svcs := make([]string, 0, len(r.Images))
	for s := range r.Images {
		svcs = append(svcs, s)
	}
	sort.Strings(svcs)
	return svcs
}

func printRelease(g *globals, r *store.Release) {
	w := g.stdout
	fmt.Fprintf(w, "release %s of %s: %s\n", r.Version, r.Project, r.State)
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason:  %s\n", r.Reason)
	}
	fmt.Fprintf(w, "  commit:  %s\n", r.Commit)
	fmt.Fprintf(w, "  created: %s", r.CreatedAt.Local().Format("2006-01-02 15:04:05"))
	if r.Actor != "" {
		fmt.Fprintf(w, " by %s", r.Actor)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  tags:    %s\n", strings.Join(r.Tags, ", "))
	printGates(w, r)
	for _, svc := range sortedServices(r) {
		img := r.Images[svc]
		fmt.Fprintf(w, "  %s: %s\n", svc, img.Ref())
		var ps []string
		for p := range img.Platforms {
			ps = append(ps, p)
		}
		sort.Strings(ps)
		for _, p := range ps {
			fmt.Fprintf(w, "    %-14s %s\n", p, img.Platforms[p])
		}
	}
}
