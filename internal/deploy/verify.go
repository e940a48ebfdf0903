package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/internal/analysis"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// Verifier checks a release beyond its containers' health: while the
// services pass their health gates, and through a watch window after the
// switch. Package analysis is the verifier of an environment with an
// analysis section; WithVerifier replaces it.
type Verifier interface {
	Verify(ctx context.Context, d config.QueryData, onMeasure func(analysis.Measurement)) Verification
}

// Verification is a verifier at work on one deployment.
type Verification interface {
	// Failed is closed as soon as the verification fails: the engine stops
	// the health gates and rolls back.
	Failed() <-chan struct{}
	// Report is the verification so far.
	Report() *analysis.Report
	// Watch goes on for the watch window from now and returns the verdict;
	// when ctx ends first, the report as it stands (still running).
	Watch(ctx context.Context) *analysis.Report
	// Stop ends the measurements.
	Stop()
}

// WithFinished calls fn with the result of every deployment the engine
// ran (deploy, rollback, approved promotion) once it has ended and is
// recorded: package notify turns results into alerts through it.
func WithFinished(fn func(*Result)) Option { return func(e *Engine) { e.finished = fn } }

// WithVerifier sets the verifier of every deployment, in place of the
// environment's analysis.
func WithVerifier(v Verifier) Option { return func(e *Engine) { e.verifier = v } }

type analysisVerifier struct{ a *analysis.Analyzer }

func (v analysisVerifier) Verify(ctx context.Context, d config.QueryData, on func(analysis.Measurement)) Verification {
	return v.a.Start(ctx, d, on)
}

// startVerify begins verifying deployment d; nil when its environment has
// no analysis. Rollbacks are not verified: they return to a release that
// passed, and a failing analysis must not undo the way back.
func (e *Engine) startVerify(ctx context.Context, d *store.Deployment, prev *store.Deployment, pol Policy) (Verification, error) {
	if d.Kind != "deploy" {
		return nil, nil
	}
	v := e.verifier
	if v == nil {
		if pol.Analysis == nil {
			return nil, nil
		}
		a, err := analysis.New(pol.Analysis)
		if err != nil {
			return nil, err
		}
		v = analysisVerifier{a}
		e.report.Note(fmt.Sprintf("analysis: %d checks against %s, watching %s after the switch", len(pol.Analysis.Checks), pol.Analysis.Prometheus, pol.Analysis.Watch.D()))
	}
	qd := config.QueryData{Project: d.Project, Env: d.Env, Release: d.Release, Deployment: d.ID}
	if prev != nil {
		qd.Previous = prev.Release
	}
	return v.Verify(ctx, qd, func(m analysis.Measurement) {
		e.step(context.WithoutCancel(ctx), d.ID, "", "analysis", m.String())
	}), nil
}

// untilFailed is ctx, cancelled as soon as ver fails, so that the health
// gates (or the runtime's rollout) stop and the release rolls back; stop
// ends it and the verification's measurements. With no verification it is
// ctx itself.
func untilFailed(ctx context.Context, ver Verification) (context.Context, func()) {
	if ver == nil {
		return ctx, func() {}
	}
	applyCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-ver.Failed():
			cancel()
		case <-applyCtx.Done():
		}
	}()
	return applyCtx, func() { cancel(); ver.Stop() }
}

// verifyFailure is the failure of a verification that failed, else nil.
func verifyFailure(v Verification) *Failure {
	if v == nil {
		return nil
	}
	select {
	case <-v.Failed():
		return analysisFailure(v.Report())
	default:
		return nil
	}
}

func analysisFailure(rep *analysis.Report) *Failure {
	f := &Failure{Check: checkAnalysis, Reason: rep.Reason}
	if c := rep.Decisive(); c != nil {
		f.Service = c.Service
	}
	return f
}

// checkAnalysis names a failure of the analysis in Failure.Check.
const checkAnalysis = "analysis"

// watch runs a committed deployment's verification through its watch
// window; a failing verdict rolls the release back.
func (e *Engine) watch(ctx context.Context, ver Verification, d *store.Deployment, res *Result) *Failure {
	if f := verifyFailure(ver); f != nil {
		res.Analysis = ver.Report()
		return f
	}
	e.report.Note(fmt.Sprintf("release %s is serving in %s; analysis watching it", d.Release, d.Env))
	rep := ver.Watch(ctx)
	res.Analysis = rep
	if rep.Failing() {
		return analysisFailure(rep)
	}
	switch {
	case rep.Phase == analysis.Successful:
		e.report.Note(fmt.Sprintf("analysis of %s passed", d.Release))
	case errors.As(context.Cause(ctx), new(*rollbackAsked)):
	case ctx.Err() != nil:
		e.report.Note(fmt.Sprintf("analysis of %s interrupted; the release keeps serving", d.Release))
	}
	return nil
}

// DeploymentAnalysis is a deployment's analysis, for gantry status.
type DeploymentAnalysis struct {
	Deployment int64            `json:"deployment"`
	Release    string           `json:"release"`
	State      store.State      `json:"state"`
	Analysis   *analysis.Report `json:"analysis"`
}

// LastAnalysis finds the analysis of the newest of the environment's last
// few deployments that had one; nil when none did.
func (e *Engine) LastAnalysis(ctx context.Context, project, env string) *DeploymentAnalysis {
	ds, err := e.store.HistoryBrief(ctx, project, env, 10)
	if err != nil {
		return nil
	}
	for _, d := range ds {
		var r struct {
			Analysis *analysis.Report `json:"analysis"`
		}
		if json.Unmarshal(d.Result, &r) == nil && r.Analysis != nil {
			return &DeploymentAnalysis{Deployment: d.ID, Release: d.Release, State: d.State, Analysis: r.Analysis}
		}
	}
	return nil
}

// watchCommitted runs a committed deployment's verification (none: nothing
// to do) through its watch window, and acts on `gantry rollback` asked of
// it (ask). When either fails it, the release rolls back (rollback), or,
// with nothing earlier to serve, the first release stays and says so: a
// success is never turned into a failure. ended says that the deployment
// ended there, with its result and error.
func (e *Engine) watchCommitted(ctx context.Context, ask *rollbackAsk, ver Verification, d *store.Deployment, res *Result, start time.Time, canRollBack bool, rollback func() (*Result, error)) (*Result, bool, error) {
	var f *Failure
	if ver != nil {
		// The record says the analysis runs: a gantry killed in the
		// window leaves it so, and the next one records it interrupted
		// (closeInterruptedWatch).
		res.Analysis = ver.Report()
		e.setResult(ctx, d.ID, res)
		f = e.watch(ask.ctx, ver, d, res)
	}
	if sig := ask.stop(); sig != nil && f == nil {
		when := "in the watch window"
		if ver == nil {
			when = "as the release was committed"
		}
		f = askedFailure(sig, when)
	}
	if f == nil {
		if ver != nil {
			res.DurationSeconds = time.Since(start).Seconds()
			e.setResult(context.WithoutCancel(ctx), d.ID, res)
		}
		return res, false, nil
	}
	res.Failure = f
	if !canRollBack {
		res.Reason = f.String() + "; nothing to roll back to (first release of this environment), so it keeps serving"
		res.DurationSeconds = time.Since(start).Seconds()
		e.setResult(context.WithoutCancel(ctx), d.ID, res)
		e.report.Note(res.Reason)
		return res, true, fmt.Errorf("%w: %s", ErrFailed, res.Reason)
	}
	res, err := rollback()
	return res, true, err
}

// Watching says whether committed deployment d is in its watch window, as
// its record says: it succeeded, and its analysis has no verdict yet. The
// deploy that runs it still holds the environment.
func Watching(d *store.Deployment) bool {
	if d.State != store.Succeeded || len(d.Result) == 0 {
		return false
	}
	var r struct {
		Analysis *analysis.Report `json:"analysis"`
	}
	return json.Unmarshal(d.Result, &r) == nil && r.Analysis != nil && !r.Analysis.Phase.Done()
}

// closeInterruptedWatch records the end of a watch window that ended with
// its gantry (kill -9, a lost machine): the serving deployment's analysis
// is still running in the record, and no live gantry watches it, since the
// caller holds the environment. The release keeps serving; the record and
// the next command say that nothing watched the rest of its window.
func (e *Engine) closeInterruptedWatch(ctx context.Context, project, env string) {
	d, err := e.store.Serving(ctx, project, env)
	if err != nil || d == nil {
		return
	}
	var res Result
	if json.Unmarshal(d.Result, &res) != nil || res.Analysis == nil || res.Analysis.Phase.Done() {
		return
	}
	res.Analysis.Phase = analysis.Interrupted
	res.Analysis.Reason = fmt.Sprintf("the watch window was cut short: gantry pid %d stopped while it watched release %s; the release kept serving, not watched since", d.PID, d.Release)
	e.setResult(ctx, d.ID, &res)
	e.report.Note(fmt.Sprintf("warning: deployment %d (release %s): %s; check its health (gantry health %s) or deploy again", d.ID, d.Release, res.Analysis.Reason, env))
}
