// Package runtime is the narrow interface between the deploy engine and the
// place containers run, with the plan both sides share. The Docker engine
// implements it in package docker; the engine never talks to Docker itself.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gantryhq/gantry/internal/config"
)

// Labels on every object gantry creates, so that gantry (and a cleanup) can
// find them again without its store.
const (
	LabelManaged    = "io.gantry.managed"
	LabelProject    = "io.gantry.project"
	LabelEnv        = "io.gantry.env"
	LabelService    = "io.gantry.service"
	LabelRelease    = "io.gantry.release"
	LabelDeployment = "io.gantry.deployment"
	LabelImageRef   = "io.gantry.image"
)

// Plan is a release resolved for one environment: everything needed to
// (re)create its containers, without the secrets' values. It is stored with
// the deployment, so a rollback or a recovery does not depend on the
// gantry.yaml or the compose files of the day.
type Plan struct {
	Project string `json:"project"`
	Env     string `json:"env"`
	Release string `json:"release"`
	// ID is the deployment that created the plan; its containers carry it.
	ID int64 `json:"id"`
	// ComposeName is the compose project name (<project>-<env>); networks
	// and volumes are named after it as compose names them.
	ComposeName string                         `json:"compose_name"`
	Order       []string                       `json:"order"`
	Services    map[string]*Service            `json:"services"`
	Networks    map[string]types.NetworkConfig `json:"networks,omitempty"`
	Volumes     map[string]types.VolumeConfig  `json:"volumes,omitempty"`
	// Configs are the compose configs an orchestrator creates (Swarm
	// configs), with their content resolved when the plan was made.
	Configs map[string]ConfigFile `json:"configs,omitempty"`
}

// ConfigFile is a compose config's content, or the name of an external one.
type ConfigFile struct {
	Name     string `json:"name"`
	Content  string `json:"content,omitempty"`
	External bool   `json:"external,omitempty"`
}

// Service is one service of a plan.
type Service struct {
	Name   string              `json:"name"`
	Config types.ServiceConfig `json:"config"`
	// ImageRef is the reference the user gave; ImageID the immutable image
	// it resolved to when the plan was made, which is what runs.
	ImageRef string `json:"image_ref"`
	ImageID  string `json:"image_id"`
	Digest   string `json:"digest,omitempty"`
	Job      bool   `json:"job,omitempty"`
	// StopFirst: the old container stops before the new one starts,
	// because they cannot run side by side (a fixed host port).
	StopFirst bool `json:"stop_first,omitempty"`
	// Secrets are the files mounted read-only into the container.
	Secrets []SecretMount `json:"secrets,omitempty"`
	// Spec is an orchestrator's own spec of the service (Swarm's
	// ServiceSpec), made by Orchestrator.Translate when the plan is made.
	Spec json.RawMessage `json:"spec,omitempty"`
	// Route is the gantry proxy's route to the service: the service is
	// deployed blue/green, its Port published on an ephemeral 127.0.0.1
	// port, and traffic switched by the proxy.
	Route *Route `json:"route,omitempty"`
}

// Route is where the gantry proxy sends a host and path prefix: the
// service's container Port.
type Route struct {
	Host string `json:"host,omitempty"`
	Path string `json:"path"`
	Port int    `json:"port"`
	// Canary, when set, steps a new release in (deploy/canary.go).
	Canary *config.Canary `json:"canary,omitempty"`
}

// SecretMount is a secret file mounted read-only into a container. The
// plan (and so the store) holds where its value comes from and a
// fingerprint of it, never the value itself: Value lives in memory only,
// while gantry creates the container.
type SecretMount struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	// External: the secret already exists in the orchestrator (Swarm)
	// under ExternalName; gantry neither reads nor creates it.
	External     bool   `json:"external,omitempty"`
	ExternalName string `json:"external_name,omitempty"`
	// UID and GID own the file; Mode is its permission bits (0400 unless
	// compose says otherwise).
	UID  int    `json:"uid"`
	GID  int    `json:"gid"`
	Mode uint32 `json:"mode"`
	// File is the host file the value is read from; Env the environment
	// variable, found in gantry's environment or, when EnvFile is set, in
	// that env file.
	File    string `json:"file,omitempty"`
	Env     string `json:"environment,omitempty"`
	EnvFile string `json:"env_file,omitempty"`
	// Fingerprint identifies the value (a keyed hash): it says whether a
	// secret changed since a release was deployed, and tells nothing
	// about the value without the key.
	Fingerprint string `json:"fingerprint"`
	// Value is the secret, when gantry has read it. Never encoded.
	Value Secret `json:"-"`
	// ReadErr says why Value could not be read again (a rollback whose
	// source is gone); a runtime that needs the value reports it.
	ReadErr error `json:"-"`
}

// Source says where a secret's value comes from, for messages.
func (m SecretMount) Source() string {
	switch {
	case m.File != "":
		return "file " + m.File
	case m.EnvFile != "":
		return "variable " + m.Env + " of " + m.EnvFile
	}
	return "environment variable " + m.Env
}

// Secret is a secret value. It formats, marshals and logs as <redacted>,
// so that printing a plan or a mount never shows it.
type Secret []byte

const redacted = "<redacted>"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { io.WriteString(f, redacted) }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }

// ErrSecretUnavailable means a container needs a secret's value and gantry
// could not read it from its source.
var ErrSecretUnavailable = errors.New("secret unavailable")

// SecretSweeper is a runtime that keeps secret files beside its
// containers: SweepSecrets removes those whose container is gone (a
// container removed by hand, a gantry killed between removing a container
// and its secrets).
type SecretSweeper interface {
	SweepSecrets(ctx context.Context, project, env string) error
}

// UserResolver is a runtime that can turn a user name of an image (USER
// app) into the numeric uid and gid a secret file must be owned by.
type UserResolver interface {
	ResolveUser(ctx context.Context, imageID, user string) (uid, gid int, err error)
}

// Image is an image resolved to an immutable ID.
type Image struct {
	Ref    string
	ID     string
	Digest string
	// HasHealthcheck says whether the image defines a HEALTHCHECK.
	HasHealthcheck bool
	// User is the image's USER ("" for root).
	User string
}

// Container is what the runtime knows about one container.
type Container struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Service      string    `json:"service"`
	Release      string    `json:"release"`
	PlanID       int64     `json:"deployment"`
	ImageRef     string    `json:"image"`
	ImageID      string    `json:"image_id"`
	State        string    `json:"state"`            // created, running, exited, ...
	Health       string    `json:"health,omitempty"` // starting, healthy, unhealthy, or empty without healthcheck
	ExitCode     int       `json:"exit_code"`
	OOMKilled    bool      `json:"oom_killed,omitempty"`
	RestartCount int       `json:"restart_count,omitempty"`
	Restarting   bool      `json:"restarting,omitempty"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	Healthcheck  bool      `json:"-"`
	// HealthFailure says how its healthcheck is failing (the streak and
	// the last check's output); empty while it passes.
	HealthFailure string `json:"health_failure,omitempty"`
}

// Running says whether the container's process is up.
func (c Container) Running() bool { return c.State == "running" }

// Event is a change in a container the runtime saw happen.
type Event struct {
	Kind     EventKind
	Time     time.Time
	ExitCode int
}

// EventKind names container events the health gate reacts to.
type EventKind string

const (
	EventStart     EventKind = "start"
	EventDie       EventKind = "die"
	EventOOM       EventKind = "oom"
	EventHealthy   EventKind = "healthy"
	EventUnhealthy EventKind = "unhealthy"
	EventRestart   EventKind = "restart"
)

// ErrUnreachable wraps errors that mean the runtime itself cannot be reached.
var ErrUnreachable = errors.New("container runtime unreachable")

// ErrImageNotFound means an image reference resolves to nothing.
var ErrImageNotFound = errors.New("image not found")

// Runtime runs a plan's containers on a host the engine drives itself.
type Runtime interface {
	// Ping checks that the runtime answers.
	Ping(ctx context.Context) error
	// Host names where containers run, for messages.
	Host() string
	// Local says whether the daemon sees this machine's files, so that
	// files (secrets) can be bind-mounted from here.
	Local() bool
	// ResolveImage finds the immutable ID of ref, pulling it when absent.
	ResolveImage(ctx context.Context, ref string) (Image, error)
	// Prepare creates the plan's networks and volumes when missing.
	Prepare(ctx context.Context, p *Plan) error
	// Containers lists gantry's containers of an environment, stopped ones too.
	Containers(ctx context.Context, project, env string) ([]Container, error)
	// Create creates (without starting) the container of a plan's service.
	Create(ctx context.Context, p *Plan, service string) (Container, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, grace time.Duration) error
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (Container, error)
	// Watch streams a container's events until ctx ends. Subscribe before
	// Start so that no event is missed.
	Watch(ctx context.Context, id string) (<-chan Event, <-chan error)
	// Logs returns the last lines of a container's output.
	Logs(ctx context.Context, id string, lines int) (string, error)
	// Exec runs a command in a running container.
	Exec(ctx context.Context, id string, cmd []string) (exitCode int, output string, err error)
	// Address returns host:port at which gantry reaches a container port.
	Address(ctx context.Context, id string, port int) (string, error)
}

// Orchestrator is a runtime that rolls services out by itself, as Docker
// Swarm does with update_config: there the engine creates no containers one
// by one. It hands each service's spec over, follows the runtime's own
// update status and tasks, and adds what the runtime lacks: every service
// of a release rolled back together, to any release the store remembers.
// An Orchestrator is still a Runtime for Ping, Host, ResolveImage, Prepare
// and the recovery of an interrupted deployment, where each of its
// services counts as one container (Containers, Remove); Create, Start,
// Watch, Exec and Address are not used.
type Orchestrator interface {
	Runtime
	// Translate turns every service of a plan into the runtime's own spec
	// (Service.Spec), stored with the plan so that a rollback restores
	// exactly what ran. It refuses what the runtime cannot run, wrapping
	// ErrUnsupported, and changes nothing.
	Translate(ctx context.Context, p *Plan, r Rollout) error
	// Roll brings one service to its spec in p and follows the rollout
	// until it converged, failed (the runtime rolled it back, paused it, or
	// a task failed), or ctx ended. It never leaves a service paused.
	Roll(ctx context.Context, p *Plan, service string, opts RollOptions) (RollResult, error)
	// Services reports every service of an environment, with its tasks
	// per node.
	Services(ctx context.Context, project, env string) ([]ServiceState, error)
	// RemoveService removes a service of an environment that the serving
	// release does not have.
	RemoveService(ctx context.Context, project, env, service string) error
	// Prune removes what the runtime keeps for an environment's releases
	// (Swarm: content-addressed secrets and configs) that none of the
	// kept plans refers to and nothing on the runtime uses, and returns
	// the names it removed.
	Prune(ctx context.Context, project, env string, keep []*Plan) ([]string, error)
	// Check says, changing nothing, whether a stored plan can run again:
	// what its services refer to is still there or can be made again
	// (wrapping ErrSecretUnavailable when a secret cannot).
	Check(ctx context.Context, p *Plan) error
	// Endpoints lists where the running tasks of a service answer on a
	// container port it publishes in mode host (a routed service; any of
	// ports, which releases may change), for the gantry proxy: each task's
	// node address and published port.
	Endpoints(ctx context.Context, project, env, service string, ports []int) ([]Endpoint, error)
}

// Endpoint is where one running task of a service answers on a port: its
// node's address and the port the orchestrator published for it there.
type Endpoint struct {
	Addr    string `json:"addr"` // HOST:PORT
	Release string `json:"release"`
	Task    string `json:"task"` // the task's ID
}

// ErrUnsupported marks what a runtime cannot run (a compose feature Swarm
// has no equivalent for): nothing was changed.
var ErrUnsupported = errors.New("not supported by the runtime")

// Rollout is how an orchestrator rolls a release out: from the
// environment's policy.
type Rollout struct {
	// Monitor is how long a new task must keep running before it counts
	// as healthy (the environment's min_healthy).
	Monitor time.Duration
	// Order is the environment's strategy: auto, start-first or
	// stop-first.
	Order string
}

// RollOptions say how to follow one rollout.
type RollOptions struct {
	// Progress hears the rollout's phases (updating, rolling back, 3/4).
	Progress func(phase, detail string)
	// Restore: the service returns to a release that ran before (a
	// rollback). A task that fails is left to the runtime to start again;
	// only the end of ctx ends the wait.
	Restore bool
}

// RollResult is how one service's rollout ended.
type RollResult struct {
	Healthy bool
	// Check names what decided: converged, update, rollback, paused,
	// task, window.
	Check  string
	Reason string
	Logs   string
	// UpdateState is the runtime's last update state of the service
	// (updating, completed, rollback_started, ...), empty for a new one.
	UpdateState string
}

// ServiceState is what an orchestrator reports about one service.
type ServiceState struct {
	ID          string      `json:"id"`
	Name        string      `json:"name"`
	Release     string      `json:"release"`
	PlanID      int64       `json:"deployment"`
	Image       string      `json:"image"`
	Desired     int         `json:"desired"`
	Running     int         `json:"running"`
	UpdateState string      `json:"update_state,omitempty"`
	UpdateMsg   string      `json:"update_message,omitempty"`
	Nodes       []NodeTasks `json:"nodes,omitempty"`
}

// NodeTasks counts one service's tasks on one node.
type NodeTasks struct {
	Node    string `json:"node"`
	Desired int    `json:"desired"`
	Running int    `json:"running"`
}
