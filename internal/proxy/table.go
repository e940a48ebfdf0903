package proxy

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/internal/config"
)

// table is an immutable routing table. The proxy holds the current one in
// an atomic.Pointer: a request loads it once and looks its route up without
// a lock or an allocation; a change builds a new table and swaps it in, so a
// switch is atomic for every request that starts after it.
type table struct {
	hosts map[string][]*entry // by host, longest path first
	any   []*entry            // routes without a host, longest path first
	all   []*entry            // in state order
}

// entry is one route in a table, with everything a request needs resolved
// in advance: the backend of the active release, the maintenance page, and
// the counters of answers the proxy gives itself.
type entry struct {
	Route
	b *backend // nil: no release is routed yet
	// cb is the canary's backend (nil: no canary), taking weight percent
	// of the requests; stickyHeader (canonical) or stickyCookie says
	// what keeps a client on one side.
	cb           *backend
	weight       uint32
	stickyHeader string
	stickyCookie string
	maint        *maintenance // nil: serving
	// tasks are the backends of a swarm service's tasks (Route.Tasks),
	// taken in turn; next counts the turns.
	tasks []*backend
	next  atomic.Uint32
	// own counts the answers the proxy gives without a release (release
	// label empty): maintenance, nothing routed, body too large.
	own      codeCounters
	inflight prometheus.Gauge
}

type maintenance struct {
	page []byte
}

// lookup finds the route of a request: the exact host first, then the
// routes for any host; the longest path prefix wins.
func (t *table) lookup(host, path string) *entry {
	host = hostOnly(host)
	if es, ok := t.hosts[host]; ok {
		if e := match(es, path); e != nil {
			return e
		}
	} else if hasUpper(host) {
		if es, ok := t.hosts[strings.ToLower(host)]; ok {
			if e := match(es, path); e != nil {
				return e
			}
		}
	}
	return match(t.any, path)
}

func match(es []*entry, path string) *entry {
	for _, e := range es {
		if pathMatch(e.Path, path) {
			return e
		}
	}
	return nil
}

// pathMatch says whether prefix covers path on whole segments.
func pathMatch(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// hostOnly drops the port and a trailing dot from a Host header.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(h, ".")
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// checkRoute validates one route as the admin API receives it: the same
// rules as gantry.yaml's routes.
func checkRoute(r *Route) error {
	if r.Env == "" || r.Service == "" {
		return fmt.Errorf("a route needs its environment and service")
	}
	r.Host = strings.TrimSuffix(strings.ToLower(r.Host), ".")
	if r.Host != "" && !config.ValidHost(r.Host) {
		return fmt.Errorf("route %s/%s: %q is not a valid host name; use letters, digits and - in dot-separated labels, like shop.example.com", r.Env, r.Service, r.Host)
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?# \t") {
		return fmt.Errorf("route %s/%s: %q is not a path prefix; it starts with / and has no query, like / or /api", r.Env, r.Service, r.Path)
	}
	r.Path = config.CleanRoutePath(r.Path)
	if u := r.Upstream; u != nil {
		if err := checkAddr(u.Addr); err != nil {
			return fmt.Errorf("route %s/%s: %w", r.Env, r.Service, err)
		}
	}
	if err := checkTasks(r); err != nil {
		return err
	}
	return checkCanary(r)
}

// checkRoutes validates routes and refuses two that answer the same host
// and path, or two for one service of an environment.
func checkRoutes(routes []Route) error {
	byPlace := map[[2]string]*Route{}
	byName := map[[2]string]bool{}
	for i := range routes {
		r := &routes[i]
		if err := checkRoute(r); err != nil {
			return err
		}
		name := [2]string{r.Env, r.Service}
		if byName[name] {
			return fmt.Errorf("two routes for %s in %s; a service has one route", r.Service, r.Env)
		}
		byName[name] = true
		place := [2]string{r.Host, r.Path}
		if o := byPlace[place]; o != nil {
			host := r.Host
			if host == "" {
				host = "any host"
			}
			return fmt.Errorf("the route of %s in %s overlaps the route of %s in %s (%s, path %s); give one of them another host or path",
				r.Service, r.Env, o.Service, o.Env, host, r.Path)
		}
		byPlace[place] = r
	}
	return nil
}

// sortEntries orders a host's routes longest path first, so that the first
// match is the most specific one.
func sortEntries(es []*entry) {
	sort.SliceStable(es, func(i, j int) bool { return len(es[i].Path) > len(es[j].Path) })
}
