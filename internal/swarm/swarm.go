// Package swarm runs a release as Docker Swarm services, through the Engine
// API of a manager: the compose model becomes service specs (overlay
// networks, volumes, deploy settings, content-addressed secrets and
// configs, images pinned by digest), Swarm rolls each service out with its
// own update_config (failure_action rollback), and the runtime follows each
// service's UpdateStatus and tasks until the rollout converged or failed.
// What Swarm lacks (every service of a release rolled back together, to
// any stored release) is the deploy engine's, through runtime.Orchestrator.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/runtime"
)

// Runtime is a Swarm, driven through one of its managers.
type Runtime struct {
	d    *docker.Runtime
	c    *client.Client
	auth docker.RegistryAuth
	// poll is how often task states are read while a rollout runs: the
	// Engine API has events for services but none for tasks.
	poll time.Duration
}

var _ runtime.Orchestrator = (*Runtime)(nil)

// New connects to a Swarm manager's Docker host (unix://, tcp://, ssh://).
func New(host string) (*Runtime, error) {
	d, err := docker.New(host)
	if err != nil {
		return nil, err
	}
	return &Runtime{d: d, c: d.Client(), poll: 250 * time.Millisecond}, nil
}

// Close releases the client's connections.
func (r *Runtime) Close() error { return r.d.Close() }

// Client exposes the manager's Engine API client, for tests and tools.
func (r *Runtime) Client() *client.Client { return r.c }

// SetRegistryAuth gives credentials for the registries the images come
// from: to resolve their digests, and for the nodes to pull them.
func (r *Runtime) SetRegistryAuth(a docker.RegistryAuth) { r.auth = a }

// Host names the manager.
func (r *Runtime) Host() string { return "swarm " + r.d.Host() }

// Local is true: the values of secrets and configs are read on this machine
// and reach the tasks as Swarm secrets and configs, wherever they run.
func (r *Runtime) Local() bool { return true }

// Ping checks that the manager answers and is a manager of an active swarm.
func (r *Runtime) Ping(ctx context.Context) error {
	if err := r.d.Ping(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := r.c.Info(ctx)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", runtime.ErrUnreachable, r.d.Host(), err)
	}
	switch {
	case info.Swarm.LocalNodeState != swarm.LocalNodeStateActive:
		return fmt.Errorf("%w: the Docker engine at %s is not part of a swarm (state %q); run `docker swarm init` there, or point the environment's swarm: at a manager",
			runtime.ErrUnreachable, r.d.Host(), info.Swarm.LocalNodeState)
	case !info.Swarm.ControlAvailable:
		return fmt.Errorf("%w: the Docker engine at %s is a swarm worker; point the environment's swarm: at a manager (`docker node ls` on a manager lists them)",
			runtime.ErrUnreachable, r.d.Host())
	}
	return nil
}

// ResolveImage pins ref to the digest its registry serves now, without
// pulling: every node pulls the image itself, by that digest. ID is the
// pinned reference (repo:tag@sha256:...).
func (r *Runtime) ResolveImage(ctx context.Context, ref string) (runtime.Image, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return runtime.Image{}, fmt.Errorf("%w: %q is not a valid image reference: %v", runtime.ErrImageNotFound, ref, err)
	}
	named = reference.TagNameOnly(named)
	var auth string
	if r.auth != nil {
		if auth, err = r.auth(ref); err != nil {
			return runtime.Image{}, fmt.Errorf("credentials to resolve %s: %w", ref, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	di, err := r.c.DistributionInspect(ctx, named.String(), auth)
	if err != nil {
		return runtime.Image{}, fmt.Errorf("%w: %s: the swarm's nodes pull images from a registry, and the manager could not resolve it there: %v; push it (gantry release, or docker push) to a registry every node reaches",
			runtime.ErrImageNotFound, ref, err)
	}
	pinned := reference.FamiliarString(named)
	if _, ok := named.(reference.Digested); !ok {
		pinned += "@" + di.Descriptor.Digest.String()
	}
	return runtime.Image{Ref: ref, ID: pinned, Digest: di.Descriptor.Digest.String()}, nil
}

// envFilter selects what gantry made for an environment.
func envFilter(project, env string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", runtime.LabelProject+"="+project),
		filters.Arg("label", runtime.LabelEnv+"="+env),
	)
}

// services lists an environment's services.
func (r *Runtime) services(ctx context.Context, project, env string) ([]swarm.Service, error) {
	list, err := r.c.ServiceList(ctx, swarm.ServiceListOptions{Filters: envFilter(project, env), Status: true})
	if err != nil {
		return nil, fmt.Errorf("list services on %s: %w", r.d.Host(), err)
	}
	return list, nil
}

// Containers lists an environment's services, each as one container: on a
// swarm, the unit gantry creates and removes is the service, and Swarm
// keeps its tasks.
func (r *Runtime) Containers(ctx context.Context, project, env string) ([]runtime.Container, error) {
	list, err := r.services(ctx, project, env)
	if err != nil {
		return nil, err
	}
	out := make([]runtime.Container, 0, len(list))
	for _, s := range list {
		out = append(out, asContainer(s))
	}
	return out, nil
}

func asContainer(s swarm.Service) runtime.Container {
	l := s.Spec.Labels
	c := runtime.Container{ID: s.ID, Name: s.Spec.Name, Service: l[runtime.LabelService], Release: l[runtime.LabelRelease],
		ImageRef: l[runtime.LabelImageRef], State: "running", StartedAt: s.UpdatedAt}
	c.PlanID, _ = strconv.ParseInt(l[runtime.LabelDeployment], 10, 64)
	if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		c.ImageID = cs.Image
	}
	return c
}

// Inspect reads a service as a container.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	s, _, err := r.c.ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return runtime.Container{}, err
	}
	return asContainer(s), nil
}

// Remove removes a service (its tasks go with it; volumes stay).
func (r *Runtime) Remove(ctx context.Context, id string) error {
	if err := r.c.ServiceRemove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove service %s: %w", id, err)
	}
	return nil
}

// Stop leaves a service as it is: an interrupted deployment is recovered
// by rolling every service to the serving release (Roll), which replaces
// its tasks in one update.
func (r *Runtime) Stop(context.Context, string, time.Duration) error { return nil }

// RemoveService removes a service of an environment by its compose name.
func (r *Runtime) RemoveService(ctx context.Context, project, env, service string) error {
	list, err := r.services(ctx, project, env)
	if err != nil {
		return err
	}
	for _, s := range list {
		if s.Spec.Labels[runtime.LabelService] == service {
			return r.Remove(ctx, s.ID)
		}
	}
	return nil
}

var errTasks = errors.New("swarm tasks are run by Swarm, not created one by one")

// Create is not used on a swarm: Roll creates services.
func (r *Runtime) Create(context.Context, *runtime.Plan, string) (runtime.Container, error) {
	return runtime.Container{}, errTasks
}

// Start is not used on a swarm.
func (r *Runtime) Start(context.Context, string) error { return errTasks }

// Watch is not used on a swarm: Roll follows the service.
func (r *Runtime) Watch(ctx context.Context, _ string) (<-chan runtime.Event, <-chan error) {
	errs := make(chan error, 1)
	errs <- errTasks
	return nil, errs
}

// Exec is not used on a swarm.
func (r *Runtime) Exec(context.Context, string, []string) (int, string, error) {
	return -1, "", errTasks
}

// Address is not used on a swarm.
func (r *Runtime) Address(context.Context, string, int) (string, error) { return "", errTasks }

// serviceName is a service's name on the swarm: <compose name>_<service>,
// as docker stack deploy names it, so `docker stack ps` shows the
// environment.
func serviceName(composeName, service string) string { return composeName + "_" + service }

// LabelStack is docker stack's namespace label, so that `docker stack ls`,
// `docker stack ps` and `docker stack rm` see an environment as a stack.
const LabelStack = "com.docker.stack.namespace"

// LabelSpec holds the hash of the service spec gantry sent, and LabelTasks
// that of its task template and endpoint: equal hashes mean nothing to
// update, an equal task hash means no task is replaced.
const (
	LabelSpec  = "io.gantry.spec"
	LabelTasks = "io.gantry.tasks"
)

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func trimLines(s string) string { return strings.TrimRight(s, "\n") }
