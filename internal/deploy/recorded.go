package deploy

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/store"
)

// refuseProtected: a protected environment receives releases only through
// promotion (DeployRecorded, once approved), never a direct deploy.
func refuseProtected(env *config.Environment) error {
	if !env.Protected {
		return nil
	}
	from := "staging"
	if len(env.Requires) > 0 {
		from = env.Requires[0]
	}
	return inputError("%s is protected: releases reach it only through gantry promote, with approvals; for example gantry promote %s %s --release 1.4.0",
		env.Name, from, env.Name)
}

// SucceededIn says whether release succeeded in env, as requires: (and
// gantry promote) ask: its newest deployment there that ended (cancelled
// ones never ran) must have succeeded. last is that deployment (nil when
// none ended there); why, empty on success, says what happened instead.
func SucceededIn(ctx context.Context, st *store.Store, project, env, release string) (last *store.Deployment, why string, err error) {
	last, err = st.LastOutcome(ctx, project, env, release)
	switch {
	case err != nil:
		return nil, "", err
	case last == nil:
		return nil, fmt.Sprintf("release %s was never deployed to %s", release, env), nil
	case last.State != store.Succeeded:
		return last, fmt.Sprintf("release %s did not succeed in %s: deployment %d is %s (%s)", release, env, last.ID, last.State, last.Reason), nil
	}
	return last, "", nil
}

// checkRequires: a release reaches an environment with requires: only once
// it succeeded in each of those environments, by gantry deploy as by gantry
// promote; and as it ran there, without --image replacing any of it. A
// protected environment is left to gantry promote, which checks it with
// the environment it promotes from.
func checkRequires(ctx context.Context, st *store.Store, a Admission) error {
	env := a.Env
	if env == nil || len(env.Requires) == 0 || env.Protected {
		return nil
	}
	first := env.Requires[0]
	if a.Release == "" {
		return inputError("%s requires a release that succeeded in %s first; name it: gantry deploy %s --release VERSION (or gantry promote %s %s)",
			env.Name, strings.Join(env.Requires, ", "), env.Name, first, env.Name)
	}
	if len(a.Images) > 0 {
		svcs := make([]string, 0, len(a.Images))
		for s := range a.Images {
			svcs = append(svcs, s)
		}
		sort.Strings(svcs)
		return inputError("%s requires release %s as it succeeded in %s; --image replaces %s: deploy the release without --image, or make a release with those images and deploy it to %s first",
			env.Name, a.Release, strings.Join(env.Requires, ", "), strings.Join(svcs, ", "), first)
	}
	for _, req := range env.Requires {
		_, why, err := SucceededIn(ctx, st, a.Project, req, a.Release)
		if err != nil {
			return err
		}
		if why != "" {
			return inputError("%s requires a release to succeed in %s first: %s; deploy it there first: gantry deploy %s --release %s",
				env.Name, req, why, req, a.Release)
		}
	}
	return nil
}

// DeployRecorded runs a deployment that was planned and recorded earlier
// and held (awaiting approval, see package promote) through the normal
// path: lock, recovery of interrupted work, the health gate, commit or
// automatic rollback. It runs the plan made when the deployment was
// recorded, so what was approved is what runs; env gives the health
// policy. The store refuses to begin a held deployment whose approvals are
// not complete.
func (e *Engine) DeployRecorded(ctx context.Context, d *store.Deployment, env *config.Environment) (res *Result, err error) {
	defer func() { e.redactResult(res); err = e.redact.Error(err) }()
	if err := e.rt.Ping(ctx); err != nil {
		return nil, err
	}
	plan, err := DecodePlan(d.Plan, d.PlanID)
	if err != nil {
		return nil, err
	}
	e.loadSecrets(plan)
	if err := e.needSecrets(ctx, plan); err != nil {
		return nil, err
	}
	// The images may have left the host since the plan was made: they are
	// pulled again by digest, and must be the very images planned.
	for _, name := range plan.Order {
		svc := plan.Services[name]
		img, err := e.rt.ResolveImage(ctx, svc.ImageRef)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		if img.ID != svc.ImageID {
			return nil, inputError("service %s: %s is image %s on %s now, but %s was approved; promote the release again",
				name, svc.ImageRef, img.ID, e.rt.Host(), svc.ImageID)
		}
	}
	lock, err := e.store.Acquire(ctx, d.Project, d.Env, "deploy "+d.Release)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	recovered, err := e.recoverLocked(ctx, d.Project, d.Env, lock)
	if err != nil {
		return nil, err
	}
	prev, err := e.store.Serving(ctx, d.Project, d.Env)
	if err != nil {
		return nil, err
	}
	var prevID int64
	if prev != nil {
		prevID = prev.ID
	}
	if err := e.store.BeginApproved(ctx, d.ID, prevID); err != nil {
		return nil, err
	}
	d.PreviousID = prevID
	e.report.Note(fmt.Sprintf("deploying approved deployment %d: release %s to %s", d.ID, d.Release, d.Env))
	res, err = e.run(ctx, lock, d, plan, prev, PolicyOf(env))
	if res != nil {
		res.Recovered = recovered
	}
	return res, err
}
