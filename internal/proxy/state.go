package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Upstream is where a route sends its traffic: a release's container port
// published on loopback (127.0.0.1:49153).
type Upstream struct {
	Addr    string `json:"addr"`
	Release string `json:"release,omitempty"`
}

// Route is a host and path prefix served by one service of one
// environment, and the release it goes to.
type Route struct {
	Env     string `json:"env"`
	Service string `json:"service"`
	Host    string `json:"host,omitempty"`
	Path    string `json:"path"`
	// Upstream is the active release; nil until a deploy routes one.
	Upstream *Upstream `json:"upstream,omitempty"`
	// Previous is the release before the last switch, what a switch back
	// returns to.
	Previous   *Upstream `json:"previous,omitempty"`
	SwitchedAt time.Time `json:"switched_at,omitzero"`
	// Canary is a second release taking part of the traffic; nil when
	// the route has none. Changes make a new Canary, never edit one: a
	// copy of the state shares it.
	Canary *Canary `json:"canary,omitempty"`
	// Tasks are the running tasks of a swarm service, each at its node's
	// address and the port Swarm published for it, with its release: the
	// route sends its requests to each in turn. gantry sets them as Swarm
	// starts and stops tasks (SetTasks). A route has an Upstream (a
	// container on a Docker host) or Tasks, never both.
	Tasks []Upstream `json:"tasks,omitempty"`
}

// Maintenance is an environment answering 503 with a page.
type Maintenance struct {
	Message string    `json:"message,omitempty"`
	Since   time.Time `json:"since"`
}

// State is everything the proxy must remember across a restart: the
// routes, their active releases, and maintenance. It is written to the
// state file (atomically) before a change takes effect.
type State struct {
	Routes []Route `json:"routes"`
	// Maintenance by environment.
	Maintenance map[string]Maintenance `json:"maintenance,omitempty"`
}

func (s State) clone() State {
	c := State{Routes: make([]Route, len(s.Routes)), Maintenance: map[string]Maintenance{}}
	copy(c.Routes, s.Routes)
	for k, v := range s.Maintenance {
		c.Maintenance[k] = v
	}
	return c
}

func (s *State) find(env, service string) int {
	for i, r := range s.Routes {
		if r.Env == env && r.Service == service {
			return i
		}
	}
	return -1
}

// place finds the route of a service of an environment for a change,
// making it when path is given (no route and no path: ErrNotFound); a
// given path moves the route to host and path.
func (s *State) place(env, service, host, path string) (int, error) {
	i := s.find(env, service)
	if i < 0 {
		if path == "" {
			return -1, fmt.Errorf("%w: no route for %s in %s; give its host and path", ErrNotFound, service, env)
		}
		s.Routes = append(s.Routes, Route{Env: env, Service: service})
		i = len(s.Routes) - 1
	}
	if path != "" {
		s.Routes[i].Host, s.Routes[i].Path = host, path
	}
	return i, nil
}

// Route is the route of a service of an environment; nil when it has none.
func (s State) Route(env, service string) *Route {
	if i := s.find(env, service); i >= 0 {
		return &s.Routes[i]
	}
	return nil
}

// Serves says whether the route sends its traffic to addr as its release
// (a nil route serves nothing).
func (r *Route) Serves(addr string) bool {
	return r != nil && r.Upstream != nil && r.Upstream.Addr == addr
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (State, error) {
	var s State
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read the proxy state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("the proxy state %s is not valid JSON (%v); move it away to start with no routes, the next deploy routes its services again", path, err)
	}
	if err := checkRoutes(s.Routes); err != nil {
		return s, fmt.Errorf("the proxy state %s: %w", path, err)
	}
	return s, nil
}

// saveState writes the state to a temporary file and renames it over the
// old one, so that a proxy killed at any point leaves the old or the new
// state, never half of one. It does not fsync: what the file must survive
// is a restart of the proxy process, which the page cache does; a power
// loss restarts the containers on new ephemeral ports anyway, so a state
// from before it would be stale whatever was synced, and fsync made a
// switch wait on the disk (tens of milliseconds on a busy host).
func saveState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the proxy state: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*.json")
	if err != nil {
		return fmt.Errorf("save the proxy state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("save the proxy state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save the proxy state: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save the proxy state: %w", err)
	}
	return nil
}

// checkAddr accepts a HOST:PORT upstream address.
func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("%q is not an upstream address; write HOST:PORT, like 127.0.0.1:49153", addr)
	}
	return nil
}
