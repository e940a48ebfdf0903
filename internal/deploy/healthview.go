package deploy

import (
	"context"
	"fmt"
	"slices"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/health"
)

// HealthSubjects lists what the health view checks in an environment: the
// serving release's containers, each with gantry's probe of its service
// from env's policy (nil env: no probes).
func HealthSubjects(st *Status, env *config.Environment) []health.Subject {
	var out []health.Subject
	for _, ss := range st.Services {
		if st.Release == "" || ss.Release != st.Release {
			continue
		}
		sub := health.Subject{Service: ss.Name, Release: ss.Release, Container: ss.Container, Job: ss.Job}
		if env != nil {
			if p, ok := env.Health.Probes[ss.Name]; ok {
				sub.Probe = health.FromConfig(p)
			}
		}
		out = append(out, sub)
	}
	return out
}

// Health checks what serves in env now, after recovering an interrupted
// deployment as Status does: the health view without a cache, as gantry
// health shows it in local mode. service, when set, narrows it to one
// service.
func (e *Engine) Health(ctx context.Context, project string, env *config.Environment, service string) (*health.View, error) {
	st, err := e.Status(ctx, project, env.Name)
	if err != nil {
		return nil, err
	}
	subs := HealthSubjects(st, env)
	if service != "" {
		subs = slices.DeleteFunc(subs, func(s health.Subject) bool { return s.Service != service })
		if len(subs) == 0 {
			return nil, fmt.Errorf("%w: service %q does not serve in %s; gantry status %s lists what does", ErrInput, service, env.Name, env.Name)
		}
	}
	return health.Assess(ctx, e.rt, env.Name, st.Release, subs), nil
}
