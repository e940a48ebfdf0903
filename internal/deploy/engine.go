// Package deploy is gantry's deploy engine: it plans a release for an
// environment, applies it service by service in dependency order, gates
// every service on its health, and commits the release or rolls back to the
// previous one on its own. Every transition is written to the store before
// it is acted on, so the next gantry finishes what a killed one left.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/internal/analysis"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/failpoint"
	"github.com/gantryhq/gantry/internal/health"
	"github.com/gantryhq/gantry/internal/redact"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Errors that say how a deployment ended; match them with errors.Is.
var (
	// ErrRolledBack: the release failed and the previous one serves again.
	ErrRolledBack = errors.New("deployment rolled back")
	// ErrFailed: the release failed and there was nothing to roll back to,
	// or the rollback itself failed.
	ErrFailed = errors.New("deployment failed")
	// ErrNothingDeployed: the environment has no release yet.
	ErrNothingDeployed = errors.New("nothing deployed")
)

// Reporter hears about progress, for a terminal display or plain lines.
type Reporter interface {
	// Service reports a service's phase: pulling, starting, waiting for
	// health, healthy, failed, rolled back...
	Service(service, phase, detail string)
	// Note reports an event of the whole deployment.
	Note(msg string)
}

type nopReporter struct{}

func (nopReporter) Service(string, string, string) {}
func (nopReporter) Note(string)                    {}

// Engine deploys releases to one environment's runtime.
type Engine struct {
	rt       runtime.Runtime
	store    *store.Store
	stateDir string
	report   Reporter
	log      *slog.Logger
	actor    string
	created  func(*store.Deployment)
	verifier Verifier
	finished func(*Result)
	// redact knows the values of the secrets this engine has read; every
	// log record, progress line, error, result and record passes it.
	redact *redact.Redactor

	keyOnce sync.Once
	key     []byte
	keyErr  error
}

// Option configures an Engine.
type Option func(*Engine)

// WithReporter sets where progress goes.
func WithReporter(r Reporter) Option { return func(e *Engine) { e.report = r } }

// WithLogger sets the structured logger.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithActor names who runs the deployments, for the record.
func WithActor(a string) Option { return func(e *Engine) { e.actor = a } }

// WithCreated calls fn with every deployment (deploy or rollback) as soon
// as it is recorded, before any work on it: a server answers its client
// with the deployment's id then, and the client follows it.
func WithCreated(fn func(*store.Deployment)) Option { return func(e *Engine) { e.created = fn } }

// New returns an engine over a runtime and a store; stateDir holds the key
// of secret fingerprints (the values themselves live on a tmpfs, see
// package docker, never in the state directory).
func New(rt runtime.Runtime, st *store.Store, stateDir string, opts ...Option) *Engine {
	e := &Engine{rt: rt, store: st, stateDir: stateDir, report: nopReporter{}, log: slog.New(slog.DiscardHandler), redact: redact.New()}
	if u := os.Getenv("USER"); u != "" {
		e.actor = u
	}
	for _, o := range opts {
		o(e)
	}
	e.log = e.redact.Logger(e.log)
	e.report = redactingReporter{r: e.report, red: e.redact}
	return e
}

// Redact masks in s the values of the secrets the engine has read: for
// what a caller records beside the engine (a request's audit details).
func (e *Engine) Redact(s string) string { return e.redact.String(s) }

// redactingReporter masks secret values in progress before it is shown.
type redactingReporter struct {
	r   Reporter
	red *redact.Redactor
}

func (r redactingReporter) Service(service, phase, detail string) {
	r.r.Service(service, r.red.String(phase), r.red.String(detail))
}

func (r redactingReporter) Note(msg string) { r.r.Note(r.red.String(msg)) }

// redactResult masks secret values in a result, before it is stored or
// returned.
func (e *Engine) redactResult(res *Result) {
	if res == nil {
		return
	}
	res.Reason = e.redact.String(res.Reason)
	for i := range res.Services {
		res.Services[i].Reason = e.redact.String(res.Services[i].Reason)
	}
	if f := res.Failure; f != nil {
		f.Reason, f.Logs = e.redact.String(f.Reason), e.redact.String(f.Logs)
	}
}

// setResult stores a deployment's result, redacted.
func (e *Engine) setResult(ctx context.Context, id int64, res *Result) {
	e.redactResult(res)
	e.store.SetResult(ctx, id, res)
}

// sweepSecrets removes the secret files of containers that are gone.
func (e *Engine) sweepSecrets(ctx context.Context, project, env string) {
	if sw, ok := e.rt.(runtime.SecretSweeper); ok {
		if err := sw.SweepSecrets(ctx, project, env); err != nil {
			e.log.Warn("removing secret files of removed containers failed", "env", env, "err", err)
		}
	}
}

// Policy is how an environment gates a release.
type Policy struct {
	Window     time.Duration
	MinHealthy time.Duration
	Probes     map[string]config.Probe
	Keep       int
	// Analysis, when set, verifies a deploy against Prometheus (verify.go).
	Analysis *config.Analysis
}

// PolicyOf reads an environment's policy from its configuration.
func PolicyOf(env *config.Environment) Policy {
	return Policy{Window: env.Health.Window.D(), MinHealthy: env.Health.MinHealthy.D(), Probes: env.Health.Probes, Keep: env.Keep(), Analysis: env.Analysis}
}

// Result is the outcome of a deploy or a rollback.
type Result struct {
	Deployment      int64           `json:"deployment"`
	Project         string          `json:"project"`
	Env             string          `json:"env"`
	Release         string          `json:"release"`
	Kind            string          `json:"kind"`
	State           store.State     `json:"state"`
	Reason          string          `json:"reason,omitempty"`
	Previous        string          `json:"previous_release,omitempty"`
	Services        []ServiceResult `json:"services"`
	DurationSeconds float64         `json:"duration_seconds"`
	// RollbackSeconds is the time from the failing verdict to the previous
	// release serving again.
	RollbackSeconds float64  `json:"rollback_seconds,omitempty"`
	Failure         *Failure `json:"failure,omitempty"`
	Recovered       []int64  `json:"recovered,omitempty"`
	// Analysis is the verdict of the environment's analysis, with each
	// check's query, conditions and measured values.
	Analysis *analysis.Report `json:"analysis,omitempty"`
}

// ServiceResult is what happened to one service.
type ServiceResult struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	ImageID   string `json:"image_id"`
	Container string `json:"container,omitempty"`
	Strategy  string `json:"strategy"`
	Healthy   bool   `json:"healthy"`
	Check     string `json:"check,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// GateSeconds is how long the health gate took; VerdictLatencySeconds
	// how long after Docker's signal (health status, exit) it decided.
	GateSeconds           float64 `json:"gate_seconds"`
	VerdictLatencySeconds float64 `json:"verdict_latency_seconds"`
}

// Failure says which service failed which check, with its last log lines.
type Failure struct {
	Service string `json:"service"`
	Check   string `json:"check"`
	Reason  string `json:"reason"`
	Logs    string `json:"logs,omitempty"`
	// Canary, for a canary that was aborted, is the step, the thresholds
	// and both releases' figures.
	Canary *CanaryReport `json:"canary,omitempty"`
}

func (f *Failure) String() string {
	if f.Check == checkAnalysis {
		return "analysis failed: " + f.Reason
	}
	if f.Check == checkCanary {
		return fmt.Sprintf("the canary of %s failed: %s", f.Service, f.Reason)
	}
	if f.Check == checkRollback {
		return "rolled back on request: " + f.Reason
	}
	if f.Service == "" {
		return fmt.Sprintf("%s failed: %s", f.Check, f.Reason)
	}
	return fmt.Sprintf("service %s failed its health gate (%s): %s", f.Service, f.Check, f.Reason)
}

// Deploy applies a release to an environment, gates it and commits it, or
// rolls back to the release that served before.
func (e *Engine) Deploy(ctx context.Context, m *config.Model, release string, images map[string]string) (res *Result, err error) {
	defer func() { e.redactResult(res); err = e.redact.Error(err) }()
	if err := refuseProtected(m.Env); err != nil {
		return nil, err
	}
	if err := e.rt.Ping(ctx); err != nil {
		return nil, err
	}
	e.report.Note(fmt.Sprintf("resolving images for %s", m.Env.Name))
	plan, err := e.Plan(ctx, m, release, images)
	if err != nil {
		return nil, err
	}
	lock, err := e.store.Acquire(ctx, plan.Project, plan.Env, "deploy "+plan.Release)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	recovered, err := e.recoverLocked(ctx, plan.Project, plan.Env, lock)
	if err != nil {
		return nil, err
	}
	prev, err := e.store.Serving(ctx, plan.Project, plan.Env)
	if err != nil {
		return nil, err
	}
	raw, err := encodePlan(plan)
	if err != nil {
		return nil, err
	}
	d := &store.Deployment{Project: plan.Project, Env: plan.Env, Release: plan.Release, Kind: "deploy", Plan: raw, Actor: e.actor, PID: os.Getpid()}
	if prev != nil {
		d.PreviousID = prev.ID
	}
	if err := e.store.Create(ctx, d); err != nil {
		return nil, err
	}
	if e.created != nil {
		e.created(d)
	}
	plan.ID = d.PlanID
	res, err = e.run(ctx, lock, d, plan, prev, PolicyOf(m.Env))
	if res != nil {
		res.Recovered = recovered
	}
	return res, err
}

// Rollback returns an environment to an earlier release: the one before the
// serving one, or the newest successful deploy of release to.
func (e *Engine) Rollback(ctx context.Context, project string, env *config.Environment, to string) (res *Result, err error) {
	defer func() { e.redactResult(res); err = e.redact.Error(err) }()
	if err := e.rt.Ping(ctx); err != nil {
		return nil, err
	}
	lock, err := e.store.Acquire(ctx, project, env.Name, "rollback")
	var locked *store.LockedError
	if errors.As(err, &locked) {
		// A deploy under way (gates, canary, watch window) rolls back when asked
		// (rollbackasked.go).
		if res, lock, err = e.askHolder(ctx, project, env.Name, to, locked); lock == nil {
			return res, err
		}
	}
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	recovered, err := e.recoverLocked(ctx, project, env.Name, lock)
	if err != nil {
		return nil, err
	}
	serving, err := e.store.Serving(ctx, project, env.Name)
	if err != nil {
		return nil, err
	}
	if serving == nil {
		return nil, fmt.Errorf("%w in %s: there is no release to roll back from; deploy one first", ErrNothingDeployed, env.Name)
	}
	var target *store.Deployment
	if to != "" {
		target, err = e.store.FindRelease(ctx, project, env.Name, to)
		if errors.Is(err, store.ErrNotFound) {
			return nil, inputError("release %q never succeeded in %s; `gantry history %s` lists the releases you can roll back to", to, env.Name, env.Name)
		}
		if err != nil {
			return nil, err
		}
	} else {
		if serving.PreviousID == 0 {
			return nil, inputError("%s has served only release %s; there is nothing earlier to roll back to", env.Name, serving.Release)
		}
		target, err = e.store.Get(ctx, serving.PreviousID)
		if err != nil {
			return nil, err
		}
	}
	if target.PlanID == serving.PlanID {
		return nil, inputError("release %s is already serving in %s", target.Release, env.Name)
	}
	planRow, err := e.store.Get(ctx, target.PlanID)
	if err != nil {
		return nil, err
	}
	plan, err := DecodePlan(planRow.Plan, target.PlanID)
	if err != nil {
		return nil, err
	}
	e.loadSecrets(plan)
	if err := e.needSecrets(ctx, plan); err != nil {
		return nil, err
	}
	// What ran then must still be on the host: a rollback runs the exact
	// images of the release, never a tag that may have moved since.
	for _, name := range plan.Order {
		svc := plan.Services[name]
		if _, err := e.rt.ResolveImage(ctx, svc.ImageID); err != nil {
			return nil, inputError("release %s cannot be restored: the image of %s (%s, %s) is no longer on %s; pull it again (docker pull %s) or deploy the release anew",
				target.Release, name, svc.ImageRef, svc.ImageID, e.rt.Host(), svc.ImageRef)
		}
	}
	d := &store.Deployment{Project: project, Env: env.Name, Release: target.Release, Kind: "rollback", PlanID: target.PlanID,
		PreviousID: serving.ID, Plan: planRow.Plan, Actor: e.actor, PID: os.Getpid()}
	if err := e.store.Create(ctx, d); err != nil {
		return nil, err
	}
	if e.created != nil {
		e.created(d)
	}
	e.report.Note(fmt.Sprintf("rolling %s back from %s to %s", env.Name, serving.Release, target.Release))
	res, err = e.run(ctx, lock, d, plan, serving, PolicyOf(env))
	if res != nil {
		res.Recovered = recovered
	}
	return res, err
}

// applied is a service the deployment has switched, and how to undo it.
type applied struct {
	service string
	newID   string
	// stopped are the old containers this deployment stopped.
	stopped []string
	// switched: the proxy's route of the service (blue/green) may have
	// been moved to newID; a rollback switches it back first.
	switched bool
}

// run applies a plan as deployment d, with prev serving before it.
func (e *Engine) run(ctx context.Context, lock *store.Lock, d *store.Deployment, plan *runtime.Plan, prev *store.Deployment, pol Policy) (out *Result, err error) {
	defer func() {
		if e.finished != nil && out != nil && out.State != "" {
			e.redactResult(out)
			e.finished(out)
		}
	}()
	start := time.Now()
	res := &Result{Deployment: d.ID, Project: d.Project, Env: d.Env, Release: d.Release, Kind: d.Kind}
	if prev != nil {
		res.Previous = prev.Release
	}
	// Losing the lock (this gantry was paused so long that another took
	// over) stops the work as Ctrl-C does.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lock.Lost():
			cancel(errors.New("another gantry took over the environment's lock"))
		case <-ctx.Done():
		}
	}()
	if err := lock.SetDeployment(ctx, d.ID); err != nil {
		return nil, err
	}
	if err := e.transition(ctx, d.ID, store.Deploying, ""); err != nil {
		return nil, err
	}
	// `gantry rollback` while this deployment holds the environment asks
	// it to roll back (rollbackasked.go): its gates and its watch window
	// end at once.
	ask := e.listenForRollback(ctx, d)
	defer ask.stop()
	if o, ok := e.rt.(runtime.Orchestrator); ok {
		return e.runOrchestrated(ctx, ask, o, d, plan, prev, pol, res, start)
	}
	var done []applied
	fail := func(f *Failure, cause error) (*Result, error) {
		res.Failure, cause = ask.failure(f, cause)
		return e.rollbackFailed(ctx, d, plan, prev, done, res, start, cause)
	}
	if err := e.rt.Prepare(ctx, plan); err != nil {
		return fail(&Failure{Check: "prepare", Reason: err.Error()}, err)
	}
	if err := e.requireProxy(ctx, plan); err != nil {
		return fail(&Failure{Check: checkProxy, Reason: err.Error()}, err)
	}
	existing, err := e.rt.Containers(ctx, plan.Project, plan.Env)
	if err != nil {
		return fail(&Failure{Check: "prepare", Reason: err.Error()}, err)
	}
	// The analysis measures while the services are gated; its failure
	// stops the gates (applyCtx) and rolls back like a failed gate.
	ver, err := e.startVerify(ctx, d, prev, pol)
	if err != nil {
		return fail(&Failure{Check: checkAnalysis, Reason: err.Error()}, err)
	}
	applyCtx, stopVerify := untilFailed(ask.ctx, ver)
	defer stopVerify()
	// Services of one tier depend on none of each other: they start
	// together, as compose does, and the next tier waits for all of them.
	for _, tier := range Tiers(plan) {
		type outcome struct {
			a   *applied
			sr  ServiceResult
			f   *Failure
			err error
		}
		outs := make([]outcome, len(tier))
		first := runTier(applyCtx, tier, func(ctx context.Context, i int, name string) bool {
			o := &outs[i]
			o.a, o.sr, o.f, o.err = e.applyService(ctx, d, plan, plan.Services[name], existing, pol)
			return o.f == nil && o.err == nil
		})
		for _, o := range outs {
			if o.a != nil {
				done = append(done, *o.a)
			}
			res.Services = append(res.Services, o.sr)
		}
		if f := verifyFailure(ver); f != nil {
			res.Analysis = ver.Report()
			return fail(f, nil)
		}
		if first >= 0 {
			o := outs[first]
			if o.f == nil {
				o.f = &Failure{Service: tier[first], Check: "apply", Reason: o.err.Error()}
			}
			return fail(o.f, o.err)
		}
	}
	if err := e.transition(ctx, d.ID, store.Verifying, ""); err != nil {
		return fail(&Failure{Check: "record", Reason: err.Error()}, err)
	}
	// Services gated early may have died while later ones started.
	for _, a := range done {
		if plan.Services[a.service].Job {
			continue
		}
		c, err := e.rt.Inspect(ctx, a.newID)
		if err != nil || !c.Running() || c.Health == "unhealthy" {
			why := "container is gone"
			if err == nil {
				why = fmt.Sprintf("container is %s (health %q, exit code %d)", c.State, c.Health, c.ExitCode)
			}
			return fail(&Failure{Service: a.service, Check: "verify", Reason: why, Logs: e.logs(ctx, a.newID)}, nil)
		}
	}
	if f := verifyFailure(ver); f != nil {
		res.Analysis = ver.Report()
		return fail(f, nil)
	}
	// The result goes in before the final state, so that whoever sees the
	// state (a client following the deployment, the server's metrics)
	// finds the result with it.
	res.State = store.Succeeded
	res.DurationSeconds = time.Since(start).Seconds()
	e.setResult(ctx, d.ID, res)
	if err := e.store.Succeed(ctx, d, "all services healthy"); err != nil {
		res.State = ""
		return fail(&Failure{Check: "record", Reason: err.Error()}, err)
	}
	failpoint.Hit("state:succeeded")
	// Committed and serving, but watched: a failing analysis still rolls
	// back to prev, whose containers are kept until it passes.
	if res, ended, err := e.watchCommitted(ctx, ask, ver, d, res, start, prev != nil, func() (*Result, error) {
		return e.rollbackFailed(ctx, d, plan, prev, done, res, start, nil)
	}); ended {
		return res, err
	}
	e.report.Note(fmt.Sprintf("release %s is serving in %s (%.1fs)", d.Release, d.Env, res.DurationSeconds))
	if err := e.prune(ctx, d.Project, d.Env, pol.Keep); err != nil {
		e.log.Warn("pruning old containers failed", "err", err)
	}
	return res, nil
}

// applyService switches one service to the plan's container and gates it.
func (e *Engine) applyService(ctx context.Context, d *store.Deployment, plan *runtime.Plan, svc *runtime.Service, existing []runtime.Container, pol Policy) (*applied, ServiceResult, *Failure, error) {
	sr := ServiceResult{Name: svc.Name, Image: svc.ImageRef, ImageID: svc.ImageID, Strategy: "start-first"}
	if svc.StopFirst {
		sr.Strategy = "stop-first"
	}
	if svc.Job {
		sr.Strategy = "job"
	}
	sr.Strategy = routedStrategy(svc, sr.Strategy)
	var olds []string
	for _, c := range existing {
		if c.Service == svc.Name && c.PlanID != plan.ID && (c.Running() || c.Restarting) {
			olds = append(olds, c.ID)
		}
	}
	a := &applied{service: svc.Name}
	grace := stopGrace(svc)
	stopOld := func() error {
		if svc.Job || len(olds) == 0 {
			return nil
		}
		if err := e.step(ctx, d.ID, svc.Name, "stop-old", strings.Join(olds, ",")); err != nil {
			return err
		}
		e.report.Service(svc.Name, "stopping old", "")
		for _, id := range olds {
			a.stopped = append(a.stopped, id)
			if err := e.rt.Stop(ctx, id, grace); err != nil {
				return err
			}
		}
		return nil
	}
	if svc.StopFirst {
		if err := stopOld(); err != nil {
			return a, sr, nil, err
		}
	}
	if err := e.step(ctx, d.ID, svc.Name, "create", svc.ImageRef); err != nil {
		return a, sr, nil, err
	}
	e.report.Service(svc.Name, "creating", svc.ImageRef)
	c, err := e.rt.Create(ctx, plan, svc.Name)
	if err != nil {
		return a, sr, nil, err
	}
	a.newID, sr.Container = c.ID, c.Name
	if svc.Job && c.State == "exited" && c.ExitCode == 0 {
		// A kept job of this plan that already completed: a rollback does
		// not run an old migration again.
		sr.Healthy, sr.Check, sr.Reason = true, string(health.CheckRunning), "job already completed"
		e.report.Service(svc.Name, "healthy", "job already completed")
		return a, sr, nil, nil
	}
	gateCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	events, errs := e.rt.Watch(gateCtx, c.ID)
	if err := e.step(ctx, d.ID, svc.Name, "start", c.ID); err != nil {
		return a, sr, nil, err
	}
	e.report.Service(svc.Name, "starting", c.Name)
	if !c.Running() {
		if err := e.rt.Start(ctx, c.ID); err != nil {
			return a, sr, &Failure{Service: svc.Name, Check: "start", Reason: err.Error(), Logs: e.logs(ctx, c.ID)}, nil
		}
	}
	gate := health.Gate{Window: pol.Window, MinHealthy: pol.MinHealthy, Job: svc.Job,
		Progress: func(s string) {
			if s != "healthy" && s != "failed" { // reported below, with the reason
				e.report.Service(svc.Name, s, "")
			}
		}}
	if p, ok := pol.Probes[svc.Name]; ok {
		gate.Probes = append(gate.Probes, health.FromConfig(p))
	}
	gstart := time.Now()
	v := gate.Wait(gateCtx, health.Target{RT: e.rt, ID: c.ID}, events, errs)
	cancelWatch()
	sr.GateSeconds = time.Since(gstart).Seconds()
	sr.VerdictLatencySeconds = v.Latency().Seconds()
	sr.Healthy, sr.Check, sr.Reason = v.Healthy, string(v.Check), v.Reason
	if err := e.step(context.WithoutCancel(ctx), d.ID, svc.Name, "verdict", fmt.Sprintf("healthy=%t %s: %s", v.Healthy, v.Check, v.Reason)); err != nil {
		return a, sr, nil, err
	}
	if !v.Healthy {
		e.report.Service(svc.Name, "failed", v.Reason)
		return a, sr, &Failure{Service: svc.Name, Check: string(v.Check), Reason: v.Reason, Logs: e.logs(context.WithoutCancel(ctx), c.ID)}, nil
	}
	e.report.Service(svc.Name, "healthy", v.Reason)
	if svc.Route != nil && !svc.Job {
		// Blue/green or canary: the old containers keep running
		// (bluegreen.go, canary.go).
		a.switched = true
		strategy, f, err := e.routeNew(ctx, d, plan, svc, c)
		sr.Strategy = strategy
		return a, sr, f, err
	}
	if !svc.StopFirst {
		if err := stopOld(); err != nil {
			return a, sr, nil, err
		}
	}
	return a, sr, nil, nil
}

func stopGrace(svc *runtime.Service) time.Duration {
	if g := svc.Config.StopGracePeriod; g != nil {
		return time.Duration(*g)
	}
	return 10 * time.Second
}

func (e *Engine) logs(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.rt.Logs(ctx, id, 20)
	if err != nil {
		return ""
	}
	return e.redact.String(l)
}

// rollbackFailed undoes what a failed deployment switched, newest first, and
// records the outcome. It runs to the end even when ctx was cancelled
// (Ctrl-C): leaving the environment half switched is worse than finishing.
func (e *Engine) rollbackFailed(ctx context.Context, d *store.Deployment, plan *runtime.Plan, prev *store.Deployment, done []applied, res *Result, start time.Time, cause error) (*Result, error) {
	if ctx.Err() != nil && res.Failure != nil && res.Failure.Check != string(health.CheckCancelled) {
		res.Failure.Reason = "interrupted: " + res.Failure.Reason
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	// A deployment that was committed (its analysis failed in the watch
	// window) gives the environment back to prev in the record too.
	committed := res.State == store.Succeeded
	f := res.Failure
	reason := f.String()
	e.report.Note(reason)
	rbStart := time.Now()
	// Routes first, while the new containers still answer.
	errs := e.switchBack(ctx, d, plan, prev, done)
	var restarted []applied
	for i := len(done) - 1; i >= 0; i-- {
		a := done[i]
		e.step(ctx, d.ID, a.service, "rollback", a.newID)
		if a.newID != "" {
			if err := e.rt.Remove(ctx, a.newID); err != nil {
				errs = append(errs, err)
			}
		}
		for _, id := range a.stopped {
			e.report.Service(a.service, "restoring previous", "")
			if err := e.rt.Start(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("restart previous container of %s: %w", a.service, err))
			}
		}
		if len(a.stopped) > 0 {
			restarted = append(restarted, a)
		}
	}
	// The previous release serves again once its restarted containers are
	// healthy (or merely running, for those without a healthcheck).
	for _, a := range restarted {
		for _, id := range a.stopped {
			v := e.waitServing(ctx, id, 60*time.Second)
			if !v.Healthy {
				errs = append(errs, fmt.Errorf("previous container of %s did not come back healthy: %s", a.service, v.Reason))
			} else {
				e.report.Service(a.service, "restored", "")
			}
		}
	}
	res.RollbackSeconds = time.Since(rbStart).Seconds()
	res.DurationSeconds = time.Since(start).Seconds()
	res.Reason = reason
	to, sentinel := store.RolledBack, ErrRolledBack
	switch {
	case len(errs) > 0:
		to, sentinel = store.Failed, ErrFailed
		reason += "; rollback incomplete: " + errors.Join(errs...).Error()
	case prev == nil:
		to, sentinel = store.Failed, ErrFailed
		reason += "; nothing to roll back to (first release of this environment), its containers were removed"
	default:
		reason += "; rolled back to " + prev.Release
	}
	res.Reason = reason
	res.State = to
	record := func() error { return e.transition(ctx, d.ID, to, reason) }
	if committed && prev != nil {
		record = func() error { return e.store.Revert(ctx, d, prev.ID, reason) }
	}
	// The result before the final state, as on success.
	e.setResult(ctx, d.ID, res)
	if err := record(); err != nil {
		return res, errors.Join(err, cause)
	}
	if to == store.RolledBack {
		e.report.Note(fmt.Sprintf("rolled back: %s is serving in %s again (%.1fs)", prev.Release, d.Env, res.RollbackSeconds))
	}
	err := fmt.Errorf("%w: %s", sentinel, reason)
	if cause != nil {
		err = fmt.Errorf("%w: %s (%w)", sentinel, reason, cause)
	}
	return res, err
}

// waitServing waits until a restarted container is running and, when it has
// a healthcheck, healthy.
func (e *Engine) waitServing(ctx context.Context, id string, window time.Duration) health.Verdict {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errs := e.rt.Watch(ctx, id)
	return health.Gate{Window: window}.Wait(ctx, health.Target{RT: e.rt, ID: id}, events, errs)
}

// prune removes containers of releases older than the last keep ones that
// succeeded; those stay, stopped, for a fast rollback.
func (e *Engine) prune(ctx context.Context, project, env string, keep int) error {
	keepPlans, err := e.keptPlans(ctx, project, env, keep)
	if err != nil {
		return err
	}
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil {
		return err
	}
	cs, err := e.rt.Containers(ctx, project, env)
	if err != nil {
		return err
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].PlanID < cs[j].PlanID })
	for _, c := range cs {
		if serving != nil && c.PlanID == serving.PlanID {
			continue
		}
		if keepPlans[c.PlanID] {
			if c.Running() {
				e.rt.Stop(ctx, c.ID, 10*time.Second)
			}
			continue
		}
		if err := e.rt.Remove(ctx, c.ID); err != nil {
			return err
		}
	}
	e.sweepSecrets(ctx, project, env)
	return nil
}

// Tiers groups a plan's services by dependency depth: every service comes
// in a later tier than all it depends on; each tier keeps plan order.
func Tiers(plan *runtime.Plan) [][]string {
	depth := map[string]int{}
	var tiers [][]string
	for _, name := range plan.Order { // dependencies come first in Order
		d := 0
		for dep := range plan.Services[name].Config.DependsOn {
			if dd, ok := depth[dep]; ok && dd+1 > d {
				d = dd + 1
			}
		}
		depth[name] = d
		for len(tiers) <= d {
			tiers = append(tiers, nil)
		}
		tiers[d] = append(tiers[d], name)
	}
	return tiers
}

// step records a step of a deployment before it is taken, and logs it.
func (e *Engine) step(ctx context.Context, id int64, service, phase, detail string) error {
	detail = e.redact.String(detail)
	e.log.Info("step", "deployment", id, "service", service, "phase", phase, "detail", detail)
	if err := e.store.AddStep(ctx, id, service, phase, detail); err != nil {
		return err
	}
	failpoint.Hit("step:" + phase)
	return nil
}

// transition records a deployment's new state and logs it.
func (e *Engine) transition(ctx context.Context, id int64, to store.State, reason string) error {
	reason = e.redact.String(reason)
	e.log.Info("transition", "deployment", id, "to", to, "reason", reason)
	if err := e.store.Transition(ctx, id, to, reason); err != nil {
		return err
	}
	failpoint.Hit("state:" + string(to))
	return nil
}
