package proxy

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/testenv"
)

func mustSetTasks(t testing.TB, p *Proxy, env, svc string, us ...upstream) TasksResult {
	t.Helper()
	req := TasksRequest{Env: env, Service: svc, Tasks: []Upstream{}}
	for _, u := range us {
		req.Tasks = append(req.Tasks, Upstream{Addr: u.addr, Release: u.release})
	}
	res, err := p.SetTasks(context.Background(), req)
	if err != nil {
		t.Fatalf("set the tasks of %s/%s: %v", env, svc, err)
	}
	return res
}

// TestTasksUnderLoad routes to a swarm service's tasks (here containers
// on loopback, as Swarm's host-mode ports are) under a bounded load, and
// does what Swarm does during a rollout: a task stops before the proxy is
// told (its requests go to the other task), the proxy is told, and then
// the last old task stops before the new one is set (requests wait for
// it). No request fails.
func TestTasksUnderLoad(t *testing.T) {
	project := testenv.Project(t, "tasks")
	a := startUpstream(t, project, "blue-a")
	b := startUpstream(t, project, "blue-b")
	c := startUpstream(t, project, "green-c")
	rp := startProxy(t, proxyConf{})
	if err := rp.p.SetRoutes([]Route{{Env: "prod", Service: "web", Host: "shop.test", Path: "/"}}, nil); err != nil {
		t.Fatal(err)
	}
	mustSetTasks(t, rp.p, "prod", "web", a, b)

	load := testenv.StartLoad(t, rp.http+"/", "shop.test", 200, 4*time.Second, releaseOf)
	time.Sleep(700 * time.Millisecond)
	// Swarm stops a; the proxy still lists it.
	stopUpstream(t, a)
	time.Sleep(700 * time.Millisecond)
	res := mustSetTasks(t, rp.p, "prod", "web", b)
	if len(res.Removed) != 1 || res.Removed[0].Addr != a.addr {
		t.Errorf("removed %+v, want a (%s)", res.Removed, a.addr)
	}
	time.Sleep(700 * time.Millisecond)
	// The last old task stops; its replacement is set 300ms later.
	stopUpstream(t, b)
	time.Sleep(300 * time.Millisecond)
	mustSetTasks(t, rp.p, "prod", "web", c)
	noFailures(t, load, "task changes", "blue-a", "blue-b", "green-c")

	if _, body := get(t, http.DefaultClient, rp.http, "shop.test", "/"); decodeEcho(t, body).Release != "green-c" {
		t.Errorf("after the rollout: %s", body)
	}
	// Every task gone: the route waits taskWait, then answers 502.
	stopUpstream(t, c)
	start := time.Now()
	resp, _ := get(t, http.DefaultClient, rp.http, "shop.test", "/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("with every task stopped: %d, want 502", resp.StatusCode)
	}
	if waited := time.Since(start); waited < taskWait || waited > taskWait+2*time.Second {
		t.Errorf("answered 502 after %s, want after the task wait (%s)", waited, taskWait)
	}
}

// TestTasksRoundRobin spreads requests over the tasks in turn, and a route
// keeps its tasks across a restart of the proxy and a new SetRoutes.
func TestTasksRoundRobin(t *testing.T) {
	project := testenv.Project(t, "taskrr")
	a := startUpstream(t, project, "one")
	b := startUpstream(t, project, "two")
	state := t.TempDir() + "/state.json"
	rp := startProxy(t, proxyConf{stateFile: state})
	routes := []Route{{Env: "prod", Service: "web", Path: "/"}}
	if err := rp.p.SetRoutes(routes, nil); err != nil {
		t.Fatal(err)
	}
	mustSetTasks(t, rp.p, "prod", "web", a, b)
	count := map[string]int{}
	for range 10 {
		_, body := get(t, http.DefaultClient, rp.http, "any.test", "/")
		count[decodeEcho(t, body).Release]++
	}
	if count["one"] != 5 || count["two"] != 5 {
		t.Errorf("10 requests over two tasks: %v, want 5 each", count)
	}

	rp.stop()
	<-rp.stopped
	p2, err := New(Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.SetRoutes(routes, nil); err != nil {
		t.Fatal(err)
	}
	if r := p2.State().Route("prod", "web"); r == nil || len(r.Tasks) != 2 || r.Tasks[0].Addr != a.addr || r.Tasks[1].Addr != b.addr {
		t.Errorf("after a restart: %+v", r)
	}
}

// TestTasksBadInput: what SetTasks refuses changes nothing.
func TestTasksBadInput(t *testing.T) {
	p, err := New(Options{StateFile: t.TempDir() + "/state.json"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetRoutes([]Route{{Env: "prod", Service: "web", Path: "/"}}, nil); err != nil {
		t.Fatal(err)
	}
	ok := Upstream{Addr: "127.0.0.1:30001", Release: "1.0.0"}
	if _, err := p.SetTasks(context.Background(), TasksRequest{Env: "prod", Service: "web", Tasks: []Upstream{ok}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  TasksRequest
		want error
	}{
		{"unknown route without its path", TasksRequest{Env: "prod", Service: "api", Tasks: []Upstream{ok}}, ErrNotFound},
		{"a route overlapping another", TasksRequest{Env: "staging", Service: "web", Path: "/", Tasks: []Upstream{ok}}, ErrInput},
		{"an invalid host", TasksRequest{Env: "staging", Service: "web", Host: "a_b", Path: "/", Tasks: []Upstream{ok}}, ErrInput},
		{"not an address", TasksRequest{Env: "prod", Service: "web", Tasks: []Upstream{{Addr: "10.0.0.1"}}}, ErrInput},
		{"port 0", TasksRequest{Env: "prod", Service: "web", Tasks: []Upstream{{Addr: "10.0.0.1:0"}}}, ErrInput},
		{"one address twice", TasksRequest{Env: "prod", Service: "web", Tasks: []Upstream{ok, ok}}, ErrInput},
	} {
		if _, err := p.SetTasks(context.Background(), tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if r := p.State().Route("prod", "web"); len(r.Tasks) != 1 || r.Tasks[0] != ok || len(p.State().Routes) != 1 {
		t.Errorf("refused changes changed the routes: %+v", p.State().Routes)
	}
	// With its host and path, a route is made.
	if _, err := p.SetTasks(context.Background(), TasksRequest{Env: "prod", Service: "api", Path: "/api", Tasks: []Upstream{ok}}); err != nil {
		t.Errorf("tasks of a new route with its path: %v", err)
	}
	if _, err := p.Drain(context.Background(), DrainRequest{Env: "prod", Service: "web", Addr: ok.Addr}); !errors.Is(err, ErrInput) {
		t.Errorf("drain of a running task: %v, want it refused", err)
	}
}

// TestTasksWaitAndDrain: a request whose every task refused it waits for
// the route's next tasks past changes to other routes; a task taken off
// the route and put back while it drains is not cut at the drain timeout.
func TestTasksWaitAndDrain(t *testing.T) {
	project := testenv.Project(t, "taskwait")
	a := startUpstream(t, project, "one")
	b := startUpstream(t, project, "two")
	rp := startProxy(t, proxyConf{drain: 500 * time.Millisecond})
	routes := []Route{{Env: "prod", Service: "web", Host: "shop.test", Path: "/"}, {Env: "staging", Service: "web", Host: "staging.test", Path: "/"}}
	if err := rp.p.SetRoutes(routes, nil); err != nil {
		t.Fatal(err)
	}
	mustSetTasks(t, rp.p, "prod", "web", a)

	// A long request on a; a leaves the route and comes back before the
	// drain timeout: the request finishes.
	long := longRequest(rp.http, "shop.test", "/slow?d=1500ms", nil)
	time.Sleep(200 * time.Millisecond)
	mustSetTasks(t, rp.p, "prod", "web")
	time.Sleep(250 * time.Millisecond)
	mustSetTasks(t, rp.p, "prod", "web", a)
	if got := <-long; got != "200 one slept 1.5s" {
		t.Errorf("a long request on a task taken off and put back during its drain: %q, want 200 one slept 1.5s", got)
	}

	// a stops; another environment goes into maintenance at 300ms (a new
	// table), b is set at 1s: the request waits past the first change.
	stopUpstream(t, a)
	time.AfterFunc(300*time.Millisecond, func() { rp.p.SetMaintenance("staging", true, "") })
	time.AfterFunc(time.Second, func() { mustSetTasks(t, rp.p, "prod", "web", b) })
	start := time.Now()
	resp, body := get(t, http.DefaultClient, rp.http, "shop.test", "/")
	if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Release != "two" {
		t.Errorf("after %s: %d %s, want 200 from two", time.Since(start), resp.StatusCode, body)
	}
}

// TestTaskNewReleaseSameAddress: a task of another release at the address
// of a gone one gets its own backend, and the old one's connections close.
func TestTaskNewReleaseSameAddress(t *testing.T) {
	project := testenv.Project(t, "taskaddr")
	a := startUpstream(t, project, "one")
	rp := startProxy(t, proxyConf{drain: time.Second})
	if err := rp.p.SetRoutes([]Route{{Env: "prod", Service: "web", Path: "/"}}, nil); err != nil {
		t.Fatal(err)
	}
	mustSetTasks(t, rp.p, "prod", "web", a)
	get(t, http.DefaultClient, rp.http, "any.test", "/")
	rp.p.mu.Lock()
	old := rp.p.backends[backendKey{"prod", "web", a.addr}]
	rp.p.mu.Unlock()
	if n := old.pool.openCount(); n != 1 {
		t.Fatalf("the first backend has %d connections open, want 1", n)
	}
	mustSetTasks(t, rp.p, "prod", "web", upstream{addr: a.addr, release: "one-again"})
	get(t, http.DefaultClient, rp.http, "any.test", "/")
	testenv.WaitFor(t, 3*time.Second, "the old backend's connection to close", func() bool { return old.pool.openCount() == 0 })
	rp.p.mu.Lock()
	cur := rp.p.backends[backendKey{"prod", "web", a.addr}]
	rp.p.mu.Unlock()
	if cur == old || cur.release != "one-again" || cur.pool.openCount() != 1 {
		t.Errorf("the new release's backend: %+v (same as old: %t)", cur.release, cur == old)
	}
}

// openCount is the number of open connections of a pool, busy or idle.
func (p *connPool) openCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}
