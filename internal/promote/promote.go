// Package promote takes a release that succeeded in one environment to
// another, by exactly the image digests that ran there, and holds it until
// enough people approve when the target environment is protected. The rules
// (who may request, approve or reject, self-approval, expiry) live here;
// the store applies each decision atomically, so approvers deciding at the
// same moment start the deployment exactly once; the deploy engine runs it
// with the health gate and automatic rollback. Nothing here knows HTTP: the
// CLI and the server call the same functions.
package promote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/failpoint"
	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Runner deploys to one environment; *deploy.Engine is the real one.
type Runner interface {
	Plan(ctx context.Context, m *config.Model, release string, images map[string]string) (*runtime.Plan, error)
	Deploy(ctx context.Context, m *config.Model, release string, images map[string]string) (*deploy.Result, error)
	DeployRecorded(ctx context.Context, d *store.Deployment, env *config.Environment) (*deploy.Result, error)
}

// Engines opens the runner of an environment (its Docker host); done
// releases it.
type Engines func(ctx context.Context, env string) (r Runner, done func(), err error)

// Promoter promotes the releases of one project.
type Promoter struct {
	file    *config.File
	store   *store.Store
	engines Engines
	copy    Copier
	now     func() time.Time
	audit   *audit.Log
	log     *slog.Logger
	// onDecision hears of every approval or rejection, and every refused
	// one, when it is decided (the server's metrics).
	onDecision func(store.Decision, error)
}

// Option configures a Promoter.
type Option func(*Promoter)

// WithClock sets the time source (tests of expiry).
func WithClock(now func() time.Time) Option { return func(p *Promoter) { p.now = now } }

// WithCopier sets how images are copied between repositories (default:
// image.Copy with gantry.yaml's registry credentials).
func WithCopier(c Copier) Option { return func(p *Promoter) { p.copy = c } }

// WithAudit records every request and decision, and every refusal, in the
// audit log.
func WithAudit(l *audit.Log) Option { return func(p *Promoter) { p.audit = l } }

// WithDecisionHook calls fn with every approval or rejection (err nil) and
// every refused one, as soon as it is decided: before a deployment the
// decision starts has run.
func WithDecisionHook(fn func(decision store.Decision, err error)) Option {
	return func(p *Promoter) { p.onDecision = fn }
}

// WithLogger sets where problems that do not stop the work go (an audit
// event that could not be written).
func WithLogger(l *slog.Logger) Option { return func(p *Promoter) { p.log = l } }

// New returns a promoter for the project of f, over its store, running
// deployments through engines.
func New(f *config.File, st *store.Store, engines Engines, opts ...Option) *Promoter {
	p := &Promoter{file: f, store: st, engines: engines, now: time.Now, log: slog.New(slog.DiscardHandler)}
	pushOpts := image.PushOptionsFor(f.Registry)
	pushOpts.Immutable = nil // a copy by digest moves no tag
	p.copy = func(ctx context.Context, src, dst string) error {
		_, err := image.Copy(ctx, src, dst, nil, pushOpts)
		return err
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// RequestOption changes how Request promotes.
type RequestOption func(*requestOptions)

type requestOptions struct {
	override *deploy.GateOverride
}

// OverrideGate promotes a release that the target environment's gates
// refuse (require_gates): only an admin may, with a reason, which goes to
// the audit log.
func OverrideGate(reason string) RequestOption {
	return func(o *requestOptions) { o.override = &deploy.GateOverride{Reason: reason} }
}

// record writes an audit event of what actor did to object and how it
// ended: refused by the rules (denied), failed, or ok.
func (p *Promoter) record(ctx context.Context, a Actor, action, object string, err error, detail map[string]string) {
	if p.audit == nil {
		return
	}
	outcome := audit.OK
	switch {
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrSelfApproval), errors.Is(err, deploy.ErrOverrideForbidden):
		outcome = audit.Denied
	case err != nil:
		outcome = audit.Failed
		detail["error"] = err.Error()
	}
	ev := audit.Event{Actor: a.Name, Role: string(a.Role), Action: action, Object: object, Outcome: outcome,
		RequestID: a.RequestID, Client: a.Client, Detail: detail}
	if _, err := p.audit.Append(ctx, ev); err != nil {
		p.log.Error("audit event not written", "action", action, "object", object, "err", err)
	}
}

// Request promotes release (default: the one serving in from) from the
// environment from to the environment to. The release must have succeeded
// in from (its newest deployment there succeeded) and in every environment
// to requires, and be released when gantry recorded it; its images go to
// to by exactly the digests that ran in from. A protected to gets a
// deployment awaiting approval; any other is deployed at once, with the
// health gate and automatic rollback (the error then says how it ended).
func (p *Promoter) Request(ctx context.Context, actor Actor, from, to, release string, opts ...RequestOption) (d *store.Deployment, err error) {
	var ro requestOptions
	for _, o := range opts {
		o(&ro)
	}
	detail := map[string]string{"from": from, "to": to, "release": release}
	defer func() {
		object := "env/" + to
		if d != nil {
			object = "deployment/" + strconv.FormatInt(d.ID, 10)
			detail["release"], detail["state"] = d.Release, string(d.State)
		}
		p.record(ctx, actor, "promotion.request", object, err, detail)
	}()
	if err := actor.validate(); err != nil {
		return nil, err
	}
	if !mayRequest(actor) {
		return nil, refusal(ErrForbidden, "%s may not promote releases; an editor or admin can", actor)
	}
	if from == to {
		return nil, fmt.Errorf("%w: promote from %s to %s: name two different environments, like gantry promote staging production", deploy.ErrInput, from, to)
	}
	if _, err := p.file.Env(from); err != nil {
		return nil, err
	}
	dst, err := p.file.Env(to)
	if err != nil {
		return nil, err
	}
	if dst.Protected {
		if err := reachable(dst, actor.Name); err != nil {
			return nil, err
		}
	}
	source, err := p.source(ctx, from, release)
	if err != nil {
		return nil, err
	}
	release = source.Release
	for _, env := range dst.Requires {
		if env == from {
			continue
		}
		if _, err := p.source(ctx, env, release); err != nil {
			return nil, fmt.Errorf("%s requires a release to succeed in %s first: %w", to, env, err)
		}
	}
	rel, err := p.store.GetRelease(ctx, p.file.Project, release)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	case rel.State != store.ReleaseReleased:
		return nil, refusal(ErrNotPromotable, "release %s is %s, not released (%s); see gantry releases %s", release, rel.State, rel.Reason, release)
	}
	// The gates are checked here, once, for a protected environment too:
	// the approvals that follow are about the release, which passed them
	// (or which an admin let through, audited).
	if err := deploy.Admit(ctx, p.store, p.audit, deploy.Admission{Project: p.file.Project, Env: dst, Gates: p.file.Gates,
		Release: release, Override: ro.override,
		Who: audit.Event{Actor: actor.Name, Role: string(actor.Role), RequestID: actor.RequestID, Client: actor.Client}}); err != nil {
		return nil, err
	}
	row, err := p.store.Get(ctx, source.PlanID)
	if err != nil {
		return nil, err
	}
	plan, err := deploy.DecodePlan(row.Plan, source.PlanID)
	if err != nil {
		return nil, err
	}
	m, err := p.file.Resolve(ctx, to)
	if err != nil {
		return nil, err
	}
	images, err := pin(ctx, p.copy, from, plan, m, release)
	if err != nil {
		return nil, err
	}
	runner, done, err := p.engines(ctx, to)
	if err != nil {
		return nil, err
	}
	defer done()
	if !dst.Protected {
		res, err := runner.Deploy(ctx, m, release, images)
		if res == nil {
			return nil, err
		}
		d, gerr := p.store.Get(ctx, res.Deployment)
		return d, errors.Join(err, gerr)
	}
	planned, err := runner.Plan(ctx, m, release, images)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(planned)
	if err != nil {
		return nil, err
	}
	d = &store.Deployment{Project: p.file.Project, Env: to, Release: release, Kind: "deploy", Plan: raw, Actor: actor.Name, PID: os.Getpid()}
	policy := approvalsOf(dst)
	req := &store.ApprovalRequest{From: from, SourceID: source.ID, RequestedBy: actor.Name, RequesterRole: string(actor.Role),
		Required: policy.Required, Approvers: policy.From, ExpiresAt: p.now().Add(policy.Expire.D())}
	if err := p.store.CreateAwaiting(ctx, d, req); err != nil {
		return nil, err
	}
	return d, nil
}

// source finds the deployment in env whose images a promotion of release
// takes: the newest finished deployment of release there, which must have
// succeeded. An empty release means the one serving in env.
func (p *Promoter) source(ctx context.Context, env, release string) (*store.Deployment, error) {
	if release == "" {
		serving, err := p.store.Serving(ctx, p.file.Project, env)
		if err != nil {
			return nil, err
		}
		if serving == nil {
			return nil, refusal(ErrNotPromotable, "nothing serves in %s yet; deploy a release there first (gantry deploy %s --release VERSION) or name one with --release", env, env)
		}
		release = serving.Release
	}
	d, why, err := deploy.SucceededIn(ctx, p.store, p.file.Project, env, release)
	switch {
	case err != nil:
		return nil, err
	case why != "" && d == nil:
		return nil, refusal(ErrNotPromotable, "%s; deploy it there first: gantry deploy %s --release %s", why, env, release)
	case why != "":
		return nil, refusal(ErrNotPromotable, "%s; only a release that succeeded there can be promoted: fix it, release again and deploy it to %s", why, env)
	}
	return d, nil
}

// Decision is the outcome of an approval or a rejection.
type Decision struct {
	Deployment *store.Deployment `json:"deployment"`
	Promotion  *Promotion        `json:"promotion"`
	Decision   store.Decision    `json:"decision"`
	// Recorded: this call recorded a decision (not when it only resumed
	// the start of an approved deployment).
	Recorded bool `json:"recorded"`
	// Started: this call completed the approvals (or resumed them) and
	// ran the deployment; Result says how that ended.
	Started bool           `json:"started"`
	Result  *deploy.Result `json:"result,omitempty"`
}

// Approve records actor's approval of the held deployment id. The
// requester can never approve; actor must match the environment's policy;
// an expired request is cancelled instead. The approval that completes the
// required number runs the deployment, exactly once even when approvers
// decide at the same moment.
func (p *Promoter) Approve(ctx context.Context, actor Actor, id int64, comment string) (*Decision, error) {
	return p.decide(ctx, actor, id, store.Approve, comment)
}

// Reject cancels the held deployment id, with a comment saying why. An
// approver may reject; the requester may withdraw.
func (p *Promoter) Reject(ctx context.Context, actor Actor, id int64, comment string) (*Decision, error) {
	return p.decide(ctx, actor, id, store.Reject, comment)
}

func (p *Promoter) decide(ctx context.Context, actor Actor, id int64, decision store.Decision, comment string) (dec *Decision, err error) {
	object := fmt.Sprintf("deployment/%d", id)
	// The decision is audited (and reported to the hook) as soon as it is
	// known, before a deployment it starts runs: a server that dies during
	// that deployment's health window must not lose who approved it. How
	// the deployment ends is audited on its own (deploy.finish).
	decided := false
	report := func(err error) {
		decided = true
		action, detail := "promotion."+string(decision), map[string]string{}
		if comment != "" {
			detail["comment"] = comment
		}
		if dec != nil && dec.Deployment != nil {
			d := dec.Deployment
			detail["env"], detail["release"], detail["state"] = d.Env, d.Release, string(d.State)
			if decision == store.Reject && d.Actor == actor.Name {
				action = "promotion.withdraw"
			}
			if dec.Started {
				detail["started"] = "true"
			}
		}
		if errors.Is(err, store.ErrExpired) && dec != nil {
			p.record(ctx, system, "promotion.expire", object, nil, map[string]string{"reason": dec.Deployment.Reason})
		}
		p.record(ctx, actor, action, object, err, detail)
		if p.onDecision != nil {
			p.onDecision(decision, err)
		}
	}
	defer func() {
		if !decided {
			report(err)
		}
	}()
	if err := actor.validate(); err != nil {
		return nil, err
	}
	if decision == store.Reject && comment == "" {
		return nil, fmt.Errorf("%w: say why with --comment, for example gantry reject %d --comment \"error rate too high in staging\"", deploy.ErrInput, id)
	}
	check := func(r *store.ApprovalRequest, _ *store.Deployment) error {
		if decision == store.Reject {
			return checkReject(r, actor)
		}
		return checkApprove(r, actor)
	}
	dd, err := p.store.Decide(ctx, store.Approval{DeploymentID: id, Actor: actor.Name, Role: string(actor.Role), Decision: decision, Comment: comment}, p.now(), check)
	if dd != nil {
		dec = &Decision{Deployment: dd.Deployment, Promotion: promotion(dd.Request), Decision: decision, Recorded: dd.Recorded}
	}
	if err != nil {
		return dec, p.explain(err, id, dd)
	}
	if !dd.Start {
		return dec, nil
	}
	dec.Started = true
	report(nil)
	failpoint.Hit("promote:start")
	// From here on a failure is the start's, not the decision's: the
	// approval stands, and approving again retries the start.
	startFailed := func(err error) error {
		p.record(ctx, actor, "promotion.start", object, err, map[string]string{"env": dd.Deployment.Env, "release": dd.Deployment.Release})
		return err
	}
	env, err := p.file.Env(dd.Deployment.Env)
	if err != nil {
		return dec, startFailed(err)
	}
	runner, done, err := p.engines(ctx, env.Name)
	if err != nil {
		return dec, startFailed(fmt.Errorf("deployment %d is approved but could not start: %w; run gantry approve %d again once that is fixed", id, err, id))
	}
	defer done()
	dec.Result, err = runner.DeployRecorded(ctx, dd.Deployment, env)
	if d, gerr := p.store.Get(ctx, id); gerr == nil {
		dec.Deployment = d
	}
	var locked *store.LockedError
	if errors.As(err, &locked) {
		err = startFailed(fmt.Errorf("deployment %d is approved but %w; run gantry approve %d again when it is free", id, err, id))
	}
	return dec, err
}

// explain turns the store's refusals into messages that say what to do,
// marked as bad input.
func (p *Promoter) explain(err error, id int64, dd *store.Decided) error {
	var redo string
	if dd != nil && dd.Request != nil {
		redo = fmt.Sprintf("; request it again with gantry promote %s %s --release %s", dd.Request.From, dd.Request.Env, dd.Deployment.Release)
	}
	switch {
	case errors.Is(err, deploy.ErrInput):
		return err
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w: %w; gantry deployments --pending lists what waits for approval", deploy.ErrInput, err)
	case errors.Is(err, store.ErrExpired):
		return fmt.Errorf("%w: %w; it is cancelled%s", deploy.ErrInput, err, redo)
	case errors.Is(err, store.ErrDecided):
		wait := ""
		if w := waitingFor(dd.Request); w != "" && dd.Request.ApprovedAt == nil {
			wait = "; it waits for " + w
		}
		return fmt.Errorf("%w: %w%s", deploy.ErrInput, err, wait)
	case errors.Is(err, store.ErrNotAwaiting):
		return fmt.Errorf("%w: %w: there is nothing to decide on deployment %d%s", deploy.ErrInput, err, id, redo)
	}
	return err
}

// Promotion is a request for approval with what it still waits for.
type Promotion struct {
	*store.ApprovalRequest
	Approved   int    `json:"approved"`
	Remaining  int    `json:"remaining"`
	WaitingFor string `json:"waiting_for,omitempty"`
}

func promotion(r *store.ApprovalRequest) *Promotion {
	if r == nil {
		return nil
	}
	return &Promotion{ApprovalRequest: r, Approved: r.Approvals(), Remaining: remaining(r), WaitingFor: waitingFor(r)}
}

// Entry is a deployment, with its promotion when it had one.
type Entry struct {
	*store.Deployment
	Promotion *Promotion `json:"promotion,omitempty"`
}

// system is the actor of what gantry does by itself: cancelling expired
// requests.
var system = Actor{Name: "gantry", Role: auth.Admin}

// expire cancels the project's requests that expired, and records it.
func (p *Promoter) expire(ctx context.Context, project, env string) error {
	ids, err := p.store.ExpireApprovals(ctx, project, env, p.now())
	for _, id := range ids {
		p.record(ctx, system, "promotion.expire", fmt.Sprintf("deployment/%d", id), nil, map[string]string{"reason": "approval request expired"})
	}
	return err
}

// Pending lists the deployments of project waiting for approval, newest
// first: how many more approvals each needs, from whom, and until when.
// Requests that expired are cancelled first.
func (p *Promoter) Pending(ctx context.Context, project string) ([]Entry, error) {
	if err := p.expire(ctx, project, ""); err != nil {
		return nil, err
	}
	rs, err := p.store.ApprovalRequests(ctx, project, "", true)
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, r := range rs {
		d, err := p.store.Get(ctx, r.DeploymentID)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{Deployment: d, Promotion: promotion(r)})
	}
	return out, nil
}

// List lists the deployments of project (in env, when not empty), newest
// first, at most limit (<= 0: all), each with its promotion if it had one.
func (p *Promoter) List(ctx context.Context, project, env string, limit int) ([]Entry, error) {
	if err := p.expire(ctx, project, env); err != nil {
		return nil, err
	}
	envs := []string{env}
	if env == "" {
		envs = p.file.EnvNames()
	}
	var ds []*store.Deployment
	for _, e := range envs {
		h, err := p.store.History(ctx, project, e, limit)
		if err != nil {
			return nil, err
		}
		ds = append(ds, h...)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].ID > ds[j].ID })
	if limit > 0 && len(ds) > limit {
		ds = ds[:limit]
	}
	rs, err := p.store.ApprovalRequests(ctx, project, env, false)
	if err != nil {
		return nil, err
	}
	byID := map[int64]*store.ApprovalRequest{}
	for _, r := range rs {
		byID[r.DeploymentID] = r
	}
	out := make([]Entry, 0, len(ds))
	for _, d := range ds {
		out = append(out, Entry{Deployment: d, Promotion: promotion(byID[d.ID])})
	}
	return out, nil
}

// Get returns deployment id with its promotion, if it had one.
func (p *Promoter) Get(ctx context.Context, id int64) (*Entry, error) {
	d, err := p.store.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w; gantry deployments lists them", deploy.ErrInput, err)
	}
	if err != nil {
		return nil, err
	}
	e := &Entry{Deployment: d}
	r, err := p.store.ApprovalRequest(ctx, id)
	switch {
	case err == nil:
		e.Promotion = promotion(r)
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	return e, nil
}
