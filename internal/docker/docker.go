// Package docker runs a plan's containers on a Docker engine through the
// Engine API client (never the docker CLI): networks, named volumes, secrets
// mounted at /run/secrets, health events.
package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/connhelper"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/internal/runtime"
)

// Runtime is a Docker engine.
type Runtime struct {
	c        *client.Client
	host     string
	progress PullProgress
	auth     RegistryAuth
}

var (
	_ runtime.Runtime       = (*Runtime)(nil)
	_ runtime.SecretSweeper = (*Runtime)(nil)
	_ runtime.UserResolver  = (*Runtime)(nil)
)

// SSHOptsEnv names extra options for the ssh client behind ssh:// hosts,
// for example "-i /path/key -o StrictHostKeyChecking=accept-new". Most
// setups put them in ~/.ssh/config instead.
const SSHOptsEnv = "GANTRY_SSH_OPTS"

// New connects to host (empty: $DOCKER_HOST, else the local socket).
// ssh://user@host[:port] runs `docker system dial-stdio` on the host over
// ssh, as the docker CLI does; the remote user needs the docker CLI and
// access to the daemon there.
func New(host string) (*Runtime, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host == "" && strings.HasPrefix(os.Getenv("DOCKER_HOST"), "ssh://") {
		host = os.Getenv("DOCKER_HOST")
	}
	shown := host
	if strings.HasPrefix(host, "ssh://") {
		helper, err := connhelper.GetConnectionHelperWithSSHOpts(host, strings.Fields(os.Getenv(SSHOptsEnv)))
		if err != nil {
			return nil, fmt.Errorf("docker host %s: %w", host, err)
		}
		opts = append(opts, client.WithHost(helper.Host), client.WithDialContext(helper.Dialer))
	} else if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w", host, err)
	}
	if shown == "" {
		shown = c.DaemonHost()
	}
	return &Runtime{c: c, host: shown}, nil
}

// Close releases the client's connections.
func (r *Runtime) Close() error { return r.c.Close() }

// Client exposes the Engine API client, for tests and tools.
func (r *Runtime) Client() *client.Client { return r.c }

// Host is the daemon address.
func (r *Runtime) Host() string { return r.host }

// Local says whether the daemon runs on this machine (a unix socket).
func (r *Runtime) Local() bool { return strings.HasPrefix(r.c.DaemonHost(), "unix://") }

// Ping checks that the daemon answers.
func (r *Runtime) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.c.Ping(ctx); err != nil {
		return fmt.Errorf("%w: cannot reach the Docker daemon at %s: %v; start it (`dockerd`, or `make deps`), or point DOCKER_HOST or the environment's host: at a running one",
			runtime.ErrUnreachable, r.host, err)
	}
	return nil
}

// ResolveImage finds the immutable ID of ref, pulling it when it is not on
// the host.
func (r *Runtime) ResolveImage(ctx context.Context, ref string) (runtime.Image, error) {
	ii, err := r.c.ImageInspect(ctx, ref)
	if errdefs.IsNotFound(err) {
		var opts image.PullOptions
		if r.auth != nil {
			a, err := r.auth(ref)
			if err != nil {
				return runtime.Image{}, fmt.Errorf("credentials to pull %s: %w", ref, err)
			}
			opts.RegistryAuth = a
		}
		rc, perr := r.c.ImagePull(ctx, ref, opts)
		if perr != nil {
			return runtime.Image{}, fmt.Errorf("%w: %s is not on %s and pulling it failed: %v; build it, or check the name and that the registry is reachable", runtime.ErrImageNotFound, ref, r.host, perr)
		}
		perr = pullStream(rc, ref, r.progress)
		rc.Close()
		if perr != nil {
			return runtime.Image{}, fmt.Errorf("%w: pulling %s: %v", runtime.ErrImageNotFound, ref, perr)
		}
		ii, err = r.c.ImageInspect(ctx, ref)
	}
	if errdefs.IsInvalidArgument(err) {
		return runtime.Image{}, fmt.Errorf("%w: %q is not a valid image reference: %v", runtime.ErrImageNotFound, ref, err)
	}
	if err != nil {
		return runtime.Image{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	img := runtime.Image{Ref: ref, ID: ii.ID}
	if len(ii.RepoDigests) > 0 {
		if _, d, ok := strings.Cut(ii.RepoDigests[0], "@"); ok {
			img.Digest = d
		}
	}
	if ii.Config != nil {
		img.User = ii.Config.User
	}
	if ii.Config != nil && ii.Config.Healthcheck != nil && len(ii.Config.Healthcheck.Test) > 0 && ii.Config.Healthcheck.Test[0] != "NONE" {
		img.HasHealthcheck = true
	}
	return img, nil
}

// DrainStream reads a pull's or a build's JSON progress stream to its end
// and returns the error the stream reports, if any.
func DrainStream(rc io.Reader) error {
	dec := json.NewDecoder(rc)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

func envFilter(project, env string) filters.Args {
	return filters.NewArgs(
		filters.Arg("label", runtime.LabelProject+"="+project),
		filters.Arg("label", runtime.LabelEnv+"="+env),
	)
}

// Containers lists gantry's containers of an environment, stopped ones too.
func (r *Runtime) Containers(ctx context.Context, project, env string) ([]runtime.Container, error) {
	list, err := r.c.ContainerList(ctx, container.ListOptions{All: true, Filters: envFilter(project, env)})
	if err != nil {
		return nil, fmt.Errorf("list containers on %s: %w", r.host, err)
	}
	var out []runtime.Container
	for _, s := range list {
		c, err := r.Inspect(ctx, s.ID)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Inspect reads a container's state.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	ci, err := r.c.ContainerInspect(ctx, id)
	if err != nil {
		return runtime.Container{}, err
	}
	c := runtime.Container{ID: ci.ID, Name: strings.TrimPrefix(ci.Name, "/"), ImageID: ci.Image}
	if ci.Config != nil {
		l := ci.Config.Labels
		c.Service, c.Release, c.ImageRef = l[runtime.LabelService], l[runtime.LabelRelease], l[runtime.LabelImageRef]
		c.PlanID, _ = strconv.ParseInt(l[runtime.LabelDeployment], 10, 64)
		c.Healthcheck = ci.Config.Healthcheck != nil && len(ci.Config.Healthcheck.Test) > 0 && ci.Config.Healthcheck.Test[0] != "NONE"
	}
	if st := ci.State; st != nil {
		c.State, c.ExitCode, c.OOMKilled, c.Restarting = st.Status, st.ExitCode, st.OOMKilled, st.Restarting
		c.StartedAt, _ = time.Parse(time.RFC3339Nano, st.StartedAt)
		c.FinishedAt, _ = time.Parse(time.RFC3339Nano, st.FinishedAt)
		if st.Health != nil {
			c.Health = string(st.Health.Status)
			if st.Health.Status == container.Unhealthy || st.Health.FailingStreak > 0 {
				c.HealthFailure = HealthFailure(st.Health)
			}
		}
	}
	c.RestartCount = ci.RestartCount
	return c, nil
}

// HealthFailure says how a container's healthcheck has been failing: how
// many times in a row, and the last check's exit code and output (on one
// line, cut at 200 bytes), so a failed gate says why and not only that.
func HealthFailure(h *container.Health) string {
	s := fmt.Sprintf("its healthcheck failed %d times in a row", h.FailingStreak)
	if n := len(h.Log); n > 0 {
		out := strings.Join(strings.Fields(h.Log[n-1].Output), " ")
		if len(out) > 200 {
			out = out[:200] + "…"
		}
		s += fmt.Sprintf(" (last: exit code %d", h.Log[n-1].ExitCode)
		if out != "" {
			s += ": " + out
		}
		s += ")"
	}
	return s
}

// Start starts a created or stopped container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	if err := r.c.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", short(id), err)
	}
	return nil
}

// Stop stops a container, giving it grace to exit on its own.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	secs := int(grace.Seconds())
	if err := r.c.ContainerStop(ctx, id, container.StopOptions{Timeout: &secs}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", short(id), err)
	}
	return nil
}

// Remove removes a container (stopping it when it runs), never its
// volumes, and then its secret files.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ci, ierr := r.c.ContainerInspect(ctx, id)
	if err := r.c.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", short(id), err)
	}
	if ierr == nil && ci.Config != nil && r.Local() {
		l := ci.Config.Labels
		return removeSecrets(l[runtime.LabelProject], l[runtime.LabelEnv], strings.TrimPrefix(ci.Name, "/"))
	}
	return nil
}

// Watch streams a container's events until ctx ends.
func (r *Runtime) Watch(ctx context.Context, id string) (<-chan runtime.Event, <-chan error) {
	msgs, errs := r.c.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("container", id),
	)})
	out := make(chan runtime.Event, 16)
	outErr := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					outErr <- fmt.Errorf("docker events: %w", err)
				}
				return
			case m := <-msgs:
				ev, ok := toEvent(m)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, outErr
}

func toEvent(m events.Message) (runtime.Event, bool) {
	ev := runtime.Event{Time: time.Unix(0, m.TimeNano)}
	action := string(m.Action)
	switch {
	case action == "start":
		ev.Kind = runtime.EventStart
	case action == "die":
		ev.Kind = runtime.EventDie
		ev.ExitCode, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
	case action == "oom":
		ev.Kind = runtime.EventOOM
	case action == "restart":
		ev.Kind = runtime.EventRestart
	case strings.HasPrefix(action, "health_status"):
		switch strings.TrimSpace(strings.TrimPrefix(action, "health_status:")) {
		case "healthy":
			ev.Kind = runtime.EventHealthy
		case "unhealthy":
			ev.Kind = runtime.EventUnhealthy
		default:
			return ev, false
		}
	default:
		return ev, false
	}
	return ev, true
}

// Logs returns the last lines of a container's output.
func (r *Runtime) Logs(ctx context.Context, id string, lines int) (string, error) {
	rc, err := r.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(lines)})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(rc, 1<<20)); err != nil {
		return buf.String(), err
	}
	return strings.TrimRight(buf.String(), "\n"), nil
}

// Exec runs cmd in a running container and returns its exit code and output.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	ex, err := r.c.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", err
	}
	att, err := r.c.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", err
	}
	defer att.Close()
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(&buf, &buf, io.LimitReader(att.Reader, 64<<10))
		done <- err
	}()
	select {
	case <-ctx.Done():
		return -1, "", ctx.Err()
	case <-done:
	}
	ins, err := r.c.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return -1, buf.String(), err
	}
	return ins.ExitCode, buf.String(), nil
}

// Address returns where gantry reaches a container's port: its loopback
// binding when the port is published, else its address on its network
// (reachable from the Docker host itself).
func (r *Runtime) Address(ctx context.Context, id string, port int) (string, error) {
	ci, err := r.c.ContainerInspect(ctx, id)
	if err != nil {
		return "", err
	}
	if ci.NetworkSettings == nil {
		return "", fmt.Errorf("container %s has no network settings", short(id))
	}
	for p, bindings := range ci.NetworkSettings.Ports {
		if p.Int() != port || p.Proto() != "tcp" {
			continue
		}
		if len(bindings) > 0 {
			b := bindings[0]
			ip := b.HostIP
			if ip == "" || ip == "0.0.0.0" {
				ip = "127.0.0.1"
			}
			if ip == "::" {
				ip = "::1"
			}
			return net.JoinHostPort(ip, b.HostPort), nil
		}
	}
	for _, n := range ci.NetworkSettings.Networks {
		if n.IPAddress != "" {
			return net.JoinHostPort(n.IPAddress, strconv.Itoa(port)), nil
		}
	}
	return "", fmt.Errorf("container %s: port %d is not published and the container has no network address", short(id), port)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Started tells when a container of an environment starts, until ctx
// ends (then the channel closes). A lost event stream is followed again,
// after a pause that grows to 30 s; a start missed meanwhile is what the
// caller's periodic look is for.
func (r *Runtime) Started(ctx context.Context, project, env string) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		backoff := time.Second
		for ctx.Err() == nil {
			subCtx, cancel := context.WithCancel(ctx)
			msgs, errs := r.c.Events(subCtx, events.ListOptions{Filters: filters.NewArgs(
				filters.Arg("type", string(events.ContainerEventType)),
				filters.Arg("event", "start"),
				filters.Arg("label", runtime.LabelProject+"="+project),
				filters.Arg("label", runtime.LabelEnv+"="+env),
			)})
		follow:
			for {
				select {
				case <-msgs:
					backoff = time.Second
					select {
					case out <- struct{}{}:
					default: // one pending start is enough
					}
				case <-errs:
					break follow
				case <-ctx.Done():
					break follow
				}
			}
			cancel()
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
	return out
}
