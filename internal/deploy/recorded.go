package deploy

import (
	"context"
	"fmt"

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
	plan, err := decodePlan(d.Plan, d.PlanID)
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
