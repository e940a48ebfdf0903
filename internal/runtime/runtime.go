// Package runtime is the narrow interface between the deploy engine and the
// place containers run, with the plan both sides share. The Docker engine
// implements it in package docker; the engine never talks to Docker itself.
package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
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
	// Secrets maps a secret's target path in the container to the host
	// file holding its value.
	Secrets []SecretMount `json:"secrets,omitempty"`
}

// SecretMount is a secret file mounted read-only into a container.
type SecretMount struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Target string `json:"target"`
}

// Image is an image resolved to an immutable ID.
type Image struct {
	Ref    string
	ID     string
	Digest string
	// HasHealthcheck says whether the image defines a HEALTHCHECK.
	HasHealthcheck bool
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
