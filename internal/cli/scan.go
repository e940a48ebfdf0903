package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
)

// scanOutput is what gantry scan prints with --output json.
type scanOutput struct {
	Release string        `json:"release"`
	Verdict *scan.Verdict `json:"verdict"`
}

func newScanCmd(g *globals) *cobra.Command {
	var version string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Scan a release's images with Trivy and record its vulnerability gate",
		Long: `Run Trivy on every image of a release, by the digest of each platform's
manifest in the registry, and decide the release's vulnerability gate:

  fail        a vulnerability at or above gates.scan.fail_on (default high)
  unfixed     no fixed version exists, and gates.scan.ignore_unfixed is on
  ignored     an entry of the ignore file (.gantry-ignore.yaml, or
              gates.scan.ignore_file) names it, with a reason, until its
              expires date; an expired entry ignores nothing, and says so
  below       under the threshold

The verdict and its findings are stored with the release: gantry releases
VERSION shows them, and an environment with require_gates: true takes
the release only when it passed (an admin can override, audited). Scan a
release again when Trivy's database has news: the newest verdict counts.

gantry release runs the same gate before it pushes, from the images it just
built. Trivy comes from gates.scan.trivy or $PATH (install Trivy v0.74.0
with GOEXPERIMENT=jsonv2 go install github.com/aquasecurity/trivy/cmd/trivy@v0.74.0);
gates.scan.server uses a Trivy server, gates.scan.offline a database
already in gates.scan.cache_dir. See docs/scan.md.

Exit codes: 0 passed, 1 failed (or Trivy failed), 2 bad input (an unknown
release, a bad ignore file).`,
		Example: `  gantry scan                          # the newest release
  gantry scan --release 1.4.0
  gantry scan --release 1.4.0 --json | jq '.verdict.findings[] | select(.outcome == "fail")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				g.output = "json"
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
			rep := newReporter(g.stderr)
			defer rep.Done()
			r, v, err := scan.ScanRelease(cmd.Context(), f, st, version, actingAs().Name, func(img scan.Image) {
				rep.Service(img.Service, "scan", strings.TrimSpace(img.Platform+" "+img.Ref))
			})
			rep.Done()
			if err != nil {
				return scanErr(err)
			}
			if g.output == "json" {
				if err := g.printJSON(scanOutput{Release: r.Version, Verdict: v}); err != nil {
					return err
				}
			} else if err := v.WriteText(g.stdout, r.Version); err != nil {
				return err
			}
			return v.Err(r.Version)
		},
	}
	cmd.Flags().StringVar(&version, "release", "", "the release to scan (default: the newest released one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the verdict as JSON (same as --output json)")
	return cmd
}

// scanErr makes the scan package's bad input exit with code 2.
func scanErr(err error) error {
	if errors.Is(err, scan.ErrInput) {
		return fmt.Errorf("%w: %s", errUsage, strings.ReplaceAll(err.Error(), scan.ErrInput.Error()+": ", ""))
	}
	return err
}
