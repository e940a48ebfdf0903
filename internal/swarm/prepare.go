package swarm

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Prepare creates what a plan's services refer to when it is missing: its
// overlay networks, and its secrets and configs under their
// content-addressed names. External networks, secrets and configs must
// exist. Named volumes are made by each node when a task first mounts one.
func (r *Runtime) Prepare(ctx context.Context, p *runtime.Plan) error {
	labels := map[string]string{
		runtime.LabelManaged: "true", runtime.LabelProject: p.Project, runtime.LabelEnv: p.Env, LabelStack: p.ComposeName,
	}
	used := map[string]bool{}
	for _, name := range p.Order {
		for key := range p.Services[name].Config.Networks {
			used[key] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(p.Networks)) {
		if !used[key] {
			continue
		}
		if err := r.network(ctx, p, key, labels); err != nil {
			return err
		}
	}
	return eachContainer(p, func(name string, cs *swarm.ContainerSpec) error {
		for _, ref := range cs.Secrets {
			if err := r.secret(ctx, p, name, ref.SecretName, labels); err != nil {
				return err
			}
		}
		for _, c := range p.Services[name].Config.Configs {
			if err := r.config(ctx, p, c.Source, labels); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachContainer calls fn with the container spec of each of p's services,
// in order, until it returns an error.
func eachContainer(p *runtime.Plan, fn func(service string, cs *swarm.ContainerSpec) error) error {
	for _, name := range p.Order {
		spec, err := specOf(p, name)
		if err != nil {
			return err
		}
		if cs := spec.TaskTemplate.ContainerSpec; cs != nil {
			if err := fn(name, cs); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Runtime) network(ctx context.Context, p *runtime.Plan, key string, labels map[string]string) error {
	nc := p.Networks[key]
	name := nc.Name
	if name == "" {
		name = p.ComposeName + "_" + key
	}
	list, err := r.c.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return fmt.Errorf("list networks on %s: %w", r.d.Host(), err)
	}
	for _, n := range list {
		if n.Name != name {
			continue
		}
		if n.Scope != "swarm" {
			return fmt.Errorf("%w: network %s exists on %s with scope %s; a swarm's services need a swarm-scoped (overlay) network: remove it, or name another one",
				runtime.ErrUnsupported, name, r.d.Host(), n.Scope)
		}
		return nil
	}
	if bool(nc.External) {
		return fmt.Errorf("%w: external network %s does not exist on the swarm; create it (docker network create -d overlay %s) or drop external: true",
			runtime.ErrUnsupported, name, name)
	}
	opts := network.CreateOptions{Driver: "overlay", Labels: merge(nc.Labels, labels), Attachable: nc.Attachable, Internal: nc.Internal, Options: nc.DriverOpts}
	if nc.Ipam.Driver != "" || len(nc.Ipam.Config) > 0 {
		ipam := &network.IPAM{Driver: nc.Ipam.Driver}
		for _, c := range nc.Ipam.Config {
			ipam.Config = append(ipam.Config, network.IPAMConfig{Subnet: c.Subnet, IPRange: c.IPRange, Gateway: c.Gateway})
		}
		opts.IPAM = ipam
	}
	if _, err := r.c.NetworkCreate(ctx, name, opts); err != nil && !errdefs.IsConflict(err) {
		return fmt.Errorf("create overlay network %s: %w", name, err)
	}
	return nil
}

// secret makes sure the secret a service's spec names is on the swarm,
// creating it from the file the plan names when it is missing. Its value
// is read here and sent to the manager only, which keeps it encrypted in
// the swarm's Raft log; it never goes into a log or the store. A secret of
// an earlier release that is still on the swarm is used as it is, even
// when its file changed since.
func (r *Runtime) secret(ctx context.Context, p *runtime.Plan, service, name string, labels map[string]string) error {
	if _, _, err := r.c.SecretInspectWithRaw(ctx, name); err == nil {
		return nil
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("service %s: inspect secret %s: %w", service, name, err)
	}
	svc := p.Services[service]
	for _, m := range svc.Secrets {
		if m.External {
			if m.ExternalName == name {
				return fmt.Errorf("%w: service %s: external secret %s is not on the swarm; create it (docker secret create %s FILE)",
					runtime.ErrUnsupported, service, name, name)
			}
			continue
		}
		if secretObjectName(p.ComposeName, m) != name {
			continue
		}
		b, err := secretContent(service, m)
		if err != nil {
			return err
		}
		l := merge(map[string]string{labelSecret: m.Name}, labels)
		_, err = r.c.SecretCreate(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: l}, Data: b})
		if err != nil && !errdefs.IsConflict(err) {
			return fmt.Errorf("service %s: create secret %s: %w", service, name, err)
		}
		return nil
	}
	return fmt.Errorf("%w: service %s of release %s: secret %s is gone from the swarm and no file holds its value any more; deploy a new release",
		runtime.ErrUnsupported, service, p.Release, name)
}

func (r *Runtime) config(ctx context.Context, p *runtime.Plan, key string, labels map[string]string) error {
	cf, ok := p.Configs[key]
	if !ok {
		return fmt.Errorf("%w: config %q is not declared under the top-level configs (configs: in the compose file)", runtime.ErrUnsupported, key)
	}
	if cf.External {
		if _, _, err := r.c.ConfigInspectWithRaw(ctx, cf.Name); err != nil {
			return fmt.Errorf("%w: external config %s is not on the swarm: %v; create it (docker config create %s FILE)", runtime.ErrUnsupported, cf.Name, err, cf.Name)
		}
		return nil
	}
	name := ObjectName(p.ComposeName, key, []byte(cf.Content))
	if _, _, err := r.c.ConfigInspectWithRaw(ctx, name); err == nil {
		return nil
	}
	l := merge(map[string]string{labelConfig: key}, labels)
	_, err := r.c.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: l}, Data: []byte(cf.Content)})
	if err != nil && !errdefs.IsConflict(err) {
		return fmt.Errorf("create config %s: %w", name, err)
	}
	return nil
}

// resolveRefs fills in the IDs of a spec's secrets and configs, which
// exist under their names once Prepare ran.
func (r *Runtime) resolveRefs(ctx context.Context, spec *swarm.ServiceSpec) error {
	cs := spec.TaskTemplate.ContainerSpec
	if cs == nil {
		return nil
	}
	for _, s := range cs.Secrets {
		sec, _, err := r.c.SecretInspectWithRaw(ctx, s.SecretName)
		if err != nil {
			return fmt.Errorf("secret %s of service %s is not on the swarm (%v); deploy the release again so gantry creates it", s.SecretName, spec.Name, err)
		}
		s.SecretID = sec.ID
	}
	for _, c := range cs.Configs {
		cfg, _, err := r.c.ConfigInspectWithRaw(ctx, c.ConfigName)
		if err != nil {
			return fmt.Errorf("config %s of service %s is not on the swarm (%v); deploy the release again so gantry creates it", c.ConfigName, spec.Name, err)
		}
		c.ConfigID = cfg.ID
	}
	return nil
}
