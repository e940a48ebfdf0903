// Package target opens the runtime an environment runs on: a Docker host,
// or a Docker Swarm through one of its managers (target: swarm).
package target

import (
	"fmt"

	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/image"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/swarm"
)

// Runtime is an environment's runtime, with its connection.
type Runtime interface {
	runtime.Runtime
	Close() error
	// Client is the Engine API client of the Docker host, or of the
	// swarm's manager.
	Client() *client.Client
}

// Open connects to where env runs, with credentials for reg's images;
// progress, when set, hears about image pulls on a Docker host.
func Open(env *config.Environment, reg config.Registry, progress func(string)) (Runtime, error) {
	if env.IsSwarm() {
		rt, err := swarm.New(env.Host)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", runtime.ErrUnreachable, err)
		}
		rt.SetRegistryAuth(image.PullAuth(reg))
		return rt, nil
	}
	rt, err := docker.New(env.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", runtime.ErrUnreachable, err)
	}
	if progress != nil {
		rt.SetPullProgress(progress)
	}
	rt.SetRegistryAuth(image.PullAuth(reg))
	return rt, nil
}
