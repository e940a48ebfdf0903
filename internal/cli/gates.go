package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/lint"
	"github.com/gantryhq/gantry/internal/scan"
	"github.com/gantryhq/gantry/internal/store"
)

// releaseGates are gantry.yaml's gates as gantry release runs them: lint
// before anything is built (a failure stops the release, and nothing is
// recorded), the scan after the build and before the push, from the image
// store (a failure records the release as failed, with its verdict, and
// nothing is pushed).
type releaseGates struct {
	lint *lint.Report
	scan *scan.Gate
}

// errGate: a release gate failed; the release stops (exit code 1).
var errGate = errors.New("stopped by its gate")

// openGates runs the lint gate and finds Trivy and reads the ignore file
// for the scan gate, so that a missing Trivy or a bad ignore file stops the
// release before it builds.
func openGates(ctx context.Context, f *config.File, version string, stderr io.Writer) (*releaseGates, error) {
	rg := &releaseGates{}
	if f.Gates.Lint != nil {
		rep, err := lint.Run(ctx, lint.Options{File: f, BaseDir: f.Dir})
		if err != nil {
			if errors.Is(err, lint.ErrInput) {
				return nil, fmt.Errorf("%w: the lint gate: %s", errUsage, strings.TrimPrefix(err.Error(), lint.ErrInput.Error()+": "))
			}
			return nil, fmt.Errorf("the lint gate: %w", err)
		}
		if err := rep.Err(); err != nil {
			rep.Write(stderr, lint.FormatText)
			return nil, fmt.Errorf("release %s %w (gates.lint): %v; nothing was built or recorded. Fix the findings above (gantry lint), or ignore one with a reason (docs/lint.md)",
				version, errGate, strings.TrimPrefix(err.Error(), lint.ErrFindings.Error()+": "))
		}
		rg.lint = rep
	}
	if f.Gates.Scan != nil {
		o, p, err := scan.Settings(f, time.Now())
		if err != nil {
			return nil, scanErr(err)
		}
		if rg.scan, err = scan.Open(ctx, o, p); err != nil {
			return nil, err
		}
	}
	return rg, nil
}

// check records the lint gate's verdict with the release r (recorded as
// pushing) and runs the scan gate on its images in the image store at dir.
// A failing scan finishes the release as failed.
func (rg *releaseGates) check(ctx context.Context, st *store.Store, r *store.Release, dir string, rep progressReporter, w io.Writer) error {
	if rg.lint != nil {
		b, err := json.Marshal(rg.lint)
		if err != nil {
			return err
		}
		summary := fmt.Sprintf("passed: %d findings, none at or above %s", len(rg.lint.Findings), rg.lint.FailOn)
		if err := st.RecordGate(ctx, r, &store.GateRun{Gate: store.GateLint, Passed: true, Summary: summary, Report: b, Actor: r.Actor}); err != nil {
			return err
		}
	}
	if rg.scan == nil {
		return nil
	}
	v, err := rg.scan.Run(ctx, scan.StoredImages(r, dir), func(img scan.Image) {
		rep.Service(img.Service, "scan", strings.TrimSpace(img.Platform+" "+img.Digest))
	})
	if err == nil {
		err = scan.Record(ctx, st, r, v, r.Actor)
	}
	if err != nil {
		if ferr := st.FinishRelease(context.WithoutCancel(ctx), r, store.ReleaseFailed, "scan gate: "+err.Error()); ferr != nil {
			return errors.Join(err, ferr)
		}
		return fmt.Errorf("release %s failed, recorded as failed: the scan gate: %w", r.Version, err)
	}
	if v.Passed {
		rep.Note("scan gate " + v.Summary())
		return nil
	}
	rep.Done()
	v.WriteText(w, r.Version)
	if err := st.FinishRelease(context.WithoutCancel(ctx), r, store.ReleaseFailed, "scan gate "+v.Summary()); err != nil {
		return err
	}
	return fmt.Errorf("%w; nothing was pushed, and the release is recorded as failed (gantry releases %s)", v.Err(r.Version), r.Version)
}
