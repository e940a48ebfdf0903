package swarm

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Swarm keeps every secret and config until someone removes it, and a new
// value is a new object (content-addressed names): without pruning, each
// release with a new secret value would leave one more behind, forever.

// refs lists the secret and config names the services of plans refer to.
func refs(plans []*runtime.Plan) (secrets, configs map[string]bool, err error) {
	secrets, configs = map[string]bool{}, map[string]bool{}
	for _, p := range plans {
		err := eachContainer(p, func(_ string, cs *swarm.ContainerSpec) error {
			for _, s := range cs.Secrets {
				secrets[s.SecretName] = true
			}
			for _, c := range cs.Configs {
				configs[c.ConfigName] = true
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return secrets, configs, nil
}

// inUse lists the IDs of the secrets and configs any service on the swarm
// refers to, gantry's or not, in its spec or in the PreviousSpec Swarm's
// own rollback (docker service rollback) returns to.
func (r *Runtime) inUse(ctx context.Context) (map[string]bool, error) {
	list, err := r.c.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the swarm's services: %w", err)
	}
	used := map[string]bool{}
	for _, s := range list {
		for _, spec := range []*swarm.ServiceSpec{&s.Spec, s.PreviousSpec} {
			if spec == nil || spec.TaskTemplate.ContainerSpec == nil {
				continue
			}
			for _, ref := range spec.TaskTemplate.ContainerSpec.Secrets {
				used[ref.SecretID] = true
			}
			for _, ref := range spec.TaskTemplate.ContainerSpec.Configs {
				used[ref.ConfigID] = true
			}
		}
	}
	return used, nil
}

// Prune removes the secrets and configs gantry made for an environment
// that none of the kept plans refers to and no service on the swarm uses.
// It returns what it removed ("secret NAME", "config NAME"), sorted; on an error it may have removed
// some. A secret or config that Swarm says is in use (a service created
// since it looked) stays.
func (r *Runtime) Prune(ctx context.Context, project, env string, keep []*runtime.Plan) ([]string, error) {
	wantSecrets, wantConfigs, err := refs(keep)
	if err != nil {
		return nil, fmt.Errorf("the secrets and configs of the kept releases: %w", err)
	}
	used, err := r.inUse(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	gone := func(kind, name string, err error) {
		switch {
		case err == nil, errdefs.IsNotFound(err):
			removed = append(removed, kind+" "+name)
		case errdefs.IsInvalidArgument(err), errdefs.IsConflict(err):
			// In use after all; it stays.
		default:
			errs = append(errs, fmt.Errorf("remove %s %s: %w", kind, name, err))
		}
	}
	secrets, err := r.c.SecretList(ctx, swarm.SecretListOptions{Filters: withLabel(envFilter(project, env), labelSecret)})
	if err != nil {
		return nil, fmt.Errorf("list the secrets of %s on %s: %w", env, r.d.Host(), err)
	}
	for _, s := range secrets {
		if wantSecrets[s.Spec.Name] || used[s.ID] {
			continue
		}
		gone("secret", s.Spec.Name, r.c.SecretRemove(ctx, s.ID))
	}
	configs, err := r.c.ConfigList(ctx, swarm.ConfigListOptions{Filters: withLabel(envFilter(project, env), labelConfig)})
	if err != nil {
		return removed, fmt.Errorf("list the configs of %s on %s: %w", env, r.d.Host(), err)
	}
	for _, c := range configs {
		if wantConfigs[c.Spec.Name] || used[c.ID] {
			continue
		}
		gone("config", c.Spec.Name, r.c.ConfigRemove(ctx, c.ID))
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// Check says, changing nothing, whether p's services can run again: every
// secret they refer to is on the swarm, or gantry can make it again from
// a source that holds the value it had when p was deployed. Configs are
// made again from the content stored with the plan.
func (r *Runtime) Check(ctx context.Context, p *runtime.Plan) error {
	return eachContainer(p, func(name string, cs *swarm.ContainerSpec) error {
		for _, ref := range cs.Secrets {
			_, _, err := r.c.SecretInspectWithRaw(ctx, ref.SecretName)
			switch {
			case err == nil:
				continue
			case !errdefs.IsNotFound(err):
				return fmt.Errorf("service %s: inspect secret %s: %w", name, ref.SecretName, err)
			}
			m, ok := mountOf(p, name, ref.SecretName)
			switch {
			case !ok:
				return fmt.Errorf("%w: service %s of release %s: external secret %s is not on the swarm; create it (docker secret create %s FILE)",
					runtime.ErrSecretUnavailable, name, p.Release, ref.SecretName, ref.SecretName)
			case m.Value == nil:
				why := m.ReadErr
				if why == nil {
					why = errors.New("gantry has not read it")
				}
				return fmt.Errorf("%w: service %s: secret %s is not on the swarm (gantry removes the secrets of releases older than keep_releases), and gantry cannot make it from %s: %v; restore the value it had, or deploy a new release",
					runtime.ErrSecretUnavailable, name, m.Name, m.Source(), why)
			}
		}
		return nil
	})
}

// mountOf finds the secret of a plan's service whose object on the swarm
// is named object; external secrets are not found.
func mountOf(p *runtime.Plan, service, object string) (runtime.SecretMount, bool) {
	for _, m := range p.Services[service].Secrets {
		if !m.External && secretObjectName(p.ComposeName, m) == object {
			return m, true
		}
	}
	return runtime.SecretMount{}, false
}

// Labels that mark the secrets and configs gantry made, with the compose
// name of each.
const (
	labelSecret = "io.gantry.secret"
	labelConfig = "io.gantry.config"
)

func withLabel(f filters.Args, label string) filters.Args {
	f.Add("label", label)
	return f
}
