package deploy

import (
	"context"
	"sort"
	"time"

	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/store"
)

// Status is what serves in an environment right now.
type Status struct {
	Project    string          `json:"project"`
	Env        string          `json:"env"`
	Host       string          `json:"host"`
	Release    string          `json:"release,omitempty"`
	Deployment int64           `json:"deployment,omitempty"`
	Since      *time.Time      `json:"since,omitempty"`
	Services   []ServiceStatus `json:"services"`
	// Kept counts stopped containers of earlier releases kept for rollback.
	Kept      int     `json:"kept_containers"`
	Recovered []int64 `json:"recovered,omitempty"`
	// LastAnalysis is the analysis of the newest deployment that had one
	// (gantry status, locally and through the server).
	LastAnalysis *DeploymentAnalysis `json:"last_analysis,omitempty"`
	// Canary is the canary a deployment is stepping in the environment
	// now (docs/canary.md).
	Canary *RunningCanary `json:"canary,omitempty"`
}

// ServiceStatus is one service's serving container.
type ServiceStatus struct {
	Name    string `json:"name"`
	Release string `json:"release"`
	Image   string `json:"image"`
	ImageID string `json:"image_id"`
	// Digest is the image's registry digest when the plan resolved one.
	Digest    string `json:"digest,omitempty"`
	Container string `json:"container,omitempty"`
	// Job: a one-shot service, done when it exited with code 0.
	Job    bool       `json:"job,omitempty"`
	State  string     `json:"state"`
	Health string     `json:"health"`
	Since  *time.Time `json:"since,omitempty"`
	// Replicas, Update and Nodes are a swarm service's: its tasks running
	// and desired, its update state, and its tasks per node.
	Replicas *Replicas           `json:"replicas,omitempty"`
	Update   string              `json:"update,omitempty"`
	Nodes    []runtime.NodeTasks `json:"nodes,omitempty"`
}

// Replicas counts a service's tasks.
type Replicas struct {
	Running int `json:"running"`
	Desired int `json:"desired"`
}

// Status reports what serves in env, first finishing any interrupted
// deployment there.
func (e *Engine) Status(ctx context.Context, project, env string) (*Status, error) {
	if err := e.rt.Ping(ctx); err != nil {
		return nil, err
	}
	recovered, err := e.Recover(ctx, project, env)
	if err != nil {
		return nil, err
	}
	st, err := e.Observe(ctx, project, env)
	if st != nil {
		st.Recovered = recovered
		st.LastAnalysis = e.LastAnalysis(ctx, project, env)
	}
	return st, err
}

// Observe reports what serves in env without recovering anything first, so
// without taking the environment's lock: for a watcher that looks often and
// must never make a deploy find the environment busy.
func (e *Engine) Observe(ctx context.Context, project, env string) (*Status, error) {
	st := &Status{Project: project, Env: env, Host: e.rt.Host(), Services: []ServiceStatus{}}
	plan, err := e.serving(ctx, st)
	if err != nil {
		return nil, err
	}
	if st.Canary, err = findCanary(ctx, e.store, project, env); err != nil {
		return nil, err
	}
	if o, ok := e.rt.(runtime.Orchestrator); ok {
		return e.observeOrchestrated(ctx, o, st, plan)
	}
	cs, err := e.rt.Containers(ctx, project, env)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	if plan != nil {
		for _, name := range plan.Order {
			svc := plan.Services[name]
			ss := ServiceStatus{Name: name, Release: plan.Release, Image: svc.ImageRef, ImageID: svc.ImageID, Digest: svc.Digest, Job: svc.Job, State: "missing", Health: "unknown"}
			for _, c := range cs {
				if c.Service == name && c.PlanID == plan.ID {
					ss.Container, ss.State, ss.Health = c.Name, c.State, healthOf(c)
					if svc.Job && c.State == "exited" {
						ss.Health = "completed"
						if c.ExitCode != 0 {
							ss.Health = "failed"
						}
					}
					if !c.StartedAt.IsZero() {
						t := c.StartedAt
						ss.Since = &t
					}
				}
			}
			seen[name] = true
			st.Services = append(st.Services, ss)
		}
	}
	// Containers running that the record does not expect (left by hand or
	// by an older gantry) are shown too: status must not hide anything.
	for _, c := range cs {
		if plan != nil && c.PlanID == plan.ID {
			continue
		}
		if !c.Running() {
			st.Kept++
			continue
		}
		ss := ServiceStatus{Name: c.Service, Release: c.Release, Image: c.ImageRef, ImageID: c.ImageID, Container: c.Name, State: c.State, Health: healthOf(c)}
		if !c.StartedAt.IsZero() {
			t := c.StartedAt
			ss.Since = &t
		}
		st.Services = append(st.Services, ss)
	}
	sort.SliceStable(st.Services, func(i, j int) bool { return !seen[st.Services[j].Name] && seen[st.Services[i].Name] })
	return st, nil
}

// serving fills in which release serves st's environment, since when, and
// returns its plan (nil when nothing serves, or its plan cannot be read).
func (e *Engine) serving(ctx context.Context, st *Status) (*runtime.Plan, error) {
	serving, err := e.store.Serving(ctx, st.Project, st.Env)
	if err != nil || serving == nil {
		return nil, err
	}
	st.Release, st.Deployment = serving.Release, serving.ID
	if t, err := e.store.ServingSince(ctx, st.Project, st.Env); err == nil && !t.IsZero() {
		st.Since = &t
	}
	var plan *runtime.Plan
	if row, err := e.store.Get(ctx, serving.PlanID); err == nil {
		plan, _ = DecodePlan(row.Plan, serving.PlanID)
	}
	return plan, nil
}

func healthOf(c runtime.Container) string {
	switch {
	case c.Health != "":
		return c.Health
	case c.Running():
		return "running (no healthcheck)"
	}
	return c.State
}

// HistoryEntry is one deployment in an environment's history.
type HistoryEntry struct {
	*store.Deployment
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	Serving         bool    `json:"serving"`
}

// History lists an environment's deployments, newest first.
func (e *Engine) History(ctx context.Context, project, env string, limit int) ([]HistoryEntry, error) {
	if _, err := e.Recover(ctx, project, env); err != nil {
		return nil, err
	}
	return e.Records(ctx, project, env, limit)
}

// Records lists an environment's deployments, newest first, without
// recovering anything first (see Observe).
func (e *Engine) Records(ctx context.Context, project, env string, limit int) ([]HistoryEntry, error) {
	ds, err := e.store.History(ctx, project, env, limit)
	if err != nil {
		return nil, err
	}
	serving, err := e.store.Serving(ctx, project, env)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(ds))
	for _, d := range ds {
		h := HistoryEntry{Deployment: d, Serving: serving != nil && serving.ID == d.ID}
		if d.FinishedAt != nil {
			h.DurationSeconds = d.FinishedAt.Sub(d.CreatedAt).Seconds()
		}
		out = append(out, h)
	}
	return out, nil
}
