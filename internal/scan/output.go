package scan

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the verdict for people: the images scanned, every
// finding with what the gate made of it, and the ignore entries that have
// expired.
func (v *Verdict) WriteText(w io.Writer, release string) error {
	verdict := "passed"
	if !v.Passed {
		verdict = "FAILED"
	}
	how := fmt.Sprintf("fail on %s", v.FailOn)
	if v.IgnoreUnfixed {
		how += ", unfixed ignored"
	}
	if v.IgnoreFile != "" {
		how += ", ignores from " + v.IgnoreFile
	}
	by := "trivy " + v.Trivy
	if v.Server != "" {
		by += " via " + v.Server
	}
	fmt.Fprintf(w, "scan of release %s: %s (%s; %s)\n", release, verdict, how, by)
	for _, img := range v.Images {
		name := img.Service
		if img.Platform != "" {
			name += " " + img.Platform
		}
		from := ""
		if img.Source == SourceImageStore {
			from = " (from the image store, before the push)"
		}
		fmt.Fprintf(w, "  %-24s %s%s\n", name, img.Ref, from)
	}
	if len(v.Findings) == 0 {
		fmt.Fprintln(w, "no vulnerabilities found")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OUTCOME\tSEVERITY\tID\tPACKAGE\tINSTALLED\tFIXED\tSERVICE\tTITLE")
		for _, f := range v.Findings {
			fixed := f.Fixed
			if fixed == "" {
				fixed = "-"
			}
			title := shorten(f.Title, 60)
			if title == "" {
				title = "-"
			}
			svc := f.Service
			if f.Platform != "" {
				svc += " " + f.Platform
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", outcomeWord(f), f.Severity, f.ID, f.Package, f.Installed, fixed, svc, title)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, f := range v.Findings {
		if f.Ignore != nil && !seen[fmt.Sprint(f.ID, f.Ignore.Line)] {
			seen[fmt.Sprint(f.ID, f.Ignore.Line)] = true
			fmt.Fprintf(w, "ignored %s until %s (%s): %s\n", f.ID, f.Ignore.Expires, where(v.IgnoreFile, f.Ignore.Line), f.Ignore.Reason)
		}
	}
	for _, i := range v.ExpiredIgnores {
		fmt.Fprintf(w, "EXPIRED: the ignore of %s (%s) ended on %s and ignores nothing any more (its reason: %s); fix the vulnerability, or give the entry a new date if the reason still holds\n",
			i.ID, where(v.IgnoreFile, i.Line), i.Expires, i.Reason)
	}
	fmt.Fprintln(w, v.Summary())
	return nil
}

func outcomeWord(f Finding) string {
	if f.Outcome == Fail {
		return "FAIL"
	}
	return string(f.Outcome)
}

func where(file string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
