package proxy

// Routes to swarm services. Swarm runs a service as tasks that it starts,
// stops and moves between nodes by itself, during a rollout and at any
// other time (a node goes down, a task fails). gantry publishes the routed
// port of each task in host mode on an ephemeral port of its node, follows
// the tasks, and sets the running ones on the route (SetTasks); the proxy
// sends the route's requests to each in turn.
//
// Swarm stops an old task 2 s after it decides to (its gossip delay), and
// gantry, which looks at the tasks 4 times a second, has taken the task
// off the route by then. A task can still go first: a crash, a node that
// goes down, a manager too busy to answer in time. A request such a task
// refuses, resets or closes before answering goes to the next task when
// it may be sent again (no body, an idempotent method), and when every
// task refused, it waits for the route's next tasks (up to taskWait)
// instead of failing.

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// taskWait is how long a request whose every task refused it waits for the
// route to get new tasks. gantry lists a swarm's tasks a few times a
// second; a rollout that replaced the last old task is seen within it.
const taskWait = 3 * time.Second

// TasksRequest sets the tasks of a swarm service's route: every running
// task, at its node's address and published port, with its release. Host
// and Path create or update the route, as a switch's do; with Path empty
// the route must exist and keeps its host and path.
type TasksRequest struct {
	Env     string     `json:"env"`
	Service string     `json:"service"`
	Host    string     `json:"host,omitempty"`
	Path    string     `json:"path,omitempty"`
	Tasks   []Upstream `json:"tasks"`
}

// TasksResult is the route after SetTasks, with the tasks it no longer
// has (drained in the background).
type TasksResult struct {
	Route   Route      `json:"route"`
	Removed []Upstream `json:"removed,omitempty"`
}

func checkTasks(r *Route) error {
	if len(r.Tasks) == 0 {
		return nil
	}
	if r.Upstream != nil {
		return fmt.Errorf("route %s/%s has a release on a Docker host (%s) and swarm tasks; it has one or the other", r.Env, r.Service, r.Upstream.Addr)
	}
	seen := map[string]bool{}
	for _, t := range r.Tasks {
		if err := checkAddr(t.Addr); err != nil {
			return fmt.Errorf("route %s/%s: task: %w", r.Env, r.Service, err)
		}
		if seen[t.Addr] {
			return fmt.Errorf("route %s/%s: two tasks at %s; each task has its own address", r.Env, r.Service, t.Addr)
		}
		seen[t.Addr] = true
	}
	return nil
}

// SetTasks replaces the tasks of a route, made when the request gives its
// path. The route leaves the release it had on a Docker host, if any: its
// environment moved to a swarm. Tasks it no longer has drain in the
// background: their requests in flight finish, up to the drain timeout.
// An empty list leaves the route with nothing to serve (503) until tasks
// run again.
func (p *Proxy) SetTasks(_ context.Context, req TasksRequest) (TasksResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state.clone()
	if r := st.Route(req.Env, req.Service); r != nil && slices.Equal(r.Tasks, req.Tasks) && r.Upstream == nil &&
		(req.Path == "" || r.Host == req.Host && r.Path == req.Path) {
		return TasksResult{Route: *r}, nil
	}
	i, err := st.place(req.Env, req.Service, req.Host, req.Path)
	if err != nil {
		return TasksResult{}, err
	}
	r := &st.Routes[i]
	var removed []Upstream
	for _, t := range r.Tasks {
		if !slices.ContainsFunc(req.Tasks, func(n Upstream) bool { return n.Addr == t.Addr }) {
			removed = append(removed, t)
		}
	}
	if r.Upstream != nil {
		removed = append(removed, *r.Upstream)
	}
	r.Tasks = slices.Clone(req.Tasks)
	r.Upstream, r.Previous, r.Canary = nil, nil, nil
	r.SwitchedAt = time.Now().UTC()
	if err := p.commit(st); err != nil {
		return TasksResult{}, err
	}
	p.log.Info("tasks", "env", req.Env, "service", req.Service, "tasks", len(req.Tasks), "removed", len(removed))
	for _, u := range removed {
		go p.Drain(context.Background(), DrainRequest{Env: req.Env, Service: req.Service, Addr: u.Addr})
	}
	return TasksResult{Route: p.state.Routes[i], Removed: removed}, nil
}

// hasTask says whether addr is one of a route's tasks.
func (r *Route) hasTask(addr string) bool {
	return slices.ContainsFunc(r.Tasks, func(t Upstream) bool { return t.Addr == addr })
}

// pickTask is the route's next task in turn.
func (e *entry) pickTask() *backend {
	return e.tasks[e.next.Add(1)%uint32(len(e.tasks))]
}

// nextTask is where a request goes after the task b could not take it
// (nothing of it was sent): the task after b on the route, until every
// task was tried (tried counts them); then, once (waited), a task of the
// route's next table, which it waits for up to taskWait, and *e becomes
// that table's entry. nil: nowhere left; answer 502.
func (p *Proxy) nextTask(ctx context.Context, e **entry, b *backend, tried *int, waited *bool, host, path string) *backend {
	cur := *e
	n := len(cur.tasks)
	if n == 0 {
		return nil
	}
	if *tried < n {
		*tried++
		return cur.tasks[(slices.Index(cur.tasks, b)+1)%n]
	}
	if *waited {
		return nil
	}
	*waited = true
	ne := p.awaitEntry(ctx, cur, host, path)
	if ne == nil || len(ne.tasks) == 0 || ne.Env != cur.Env || ne.Service != cur.Service || ne.maint != nil {
		return nil
	}
	*e, *tried = ne, 1
	return ne.pickTask()
}

// awaitEntry waits until the route of host and path is no longer e's: other
// tasks, or another route or maintenance (a change to any other route
// makes a new table too, and is waited past). nil: taskWait passed, or
// ctx ended.
func (p *Proxy) awaitEntry(ctx context.Context, e *entry, host, path string) *entry {
	t := time.NewTimer(taskWait)
	defer t.Stop()
	for {
		changed := *p.changed.Load()
		ne := p.tbl.Load().lookup(host, path)
		if ne == nil || ne.Env != e.Env || ne.Service != e.Service || ne.maint != nil || !slices.Equal(ne.Tasks, e.Tasks) {
			return ne
		}
		select {
		case <-changed:
		case <-t.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// tableChanged wakes the requests waiting for a new table.
func (p *Proxy) tableChanged() {
	next := make(chan struct{})
	if old := p.changed.Swap(&next); old != nil {
		close(*old)
	}
}
