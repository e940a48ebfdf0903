package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/health"
	"github.com/gantryhq/gantry/internal/runtime"
	"github.com/gantryhq/gantry/internal/target"
)

// watcher follows one environment: it keeps the status of what serves
// there, read again whenever Docker reports a container of the environment
// starting, dying, turning unhealthy or going away, whenever the record
// changes, and every Resync; and it keeps gantry_service_healthy current.
type watcher struct {
	s    *Server
	env  string
	host string
	kick chan struct{}

	openOnce sync.Once
	rt       target.Runtime
	eng      *deploy.Engine
	openErr  error

	refreshMu sync.Mutex // one read of Docker at a time
	mu        sync.Mutex
	snap      *deploy.Status
	snapJSON  encoded // snap, encoded once for all the requests that read it
	snapErr   error
	snapAt    time.Time
	snapKey   recordKey
	services  []string            // the services with a gauge
	infos     [][4]string         // the label values of gantry_release_info set
	envCfg    *config.Environment // the environment's policy as last loaded, for the health view

	health    health.Cache
	healthTTL atomic.Int64 // the health view's cache, a time.Duration
	// unhealthy is what the service-health alerts were last told, per
	// service of the serving release.
	unhealthy map[string]bool
}

// recordKey identifies the state of an environment's record: its newest
// deployment and when that last changed.
type recordKey struct {
	id      int64
	updated time.Time
}

// maxStatusAge bounds how old a status may be even without any event.
const maxStatusAge = 30 * time.Second

func newWatcher(s *Server, env *config.Environment) *watcher {
	w := &watcher{s: s, env: env.Name, host: env.Host, kick: make(chan struct{}, 1), envCfg: env}
	w.healthTTL.Store(int64(env.Health.Cache))
	return w
}

func (w *watcher) open() (*deploy.Engine, target.Runtime, error) {
	w.openOnce.Do(func() {
		rt, err := target.Open(w.envCfg, config.Registry{}, nil)
		if err != nil {
			w.openErr = err
			return
		}
		w.rt = rt
		w.eng = deploy.New(rt, w.s.st, w.s.opts.StateDir, deploy.WithLogger(w.s.log), deploy.WithReporter(logReporter{w.s.log.With("env", w.env)}))
	})
	return w.eng, w.rt, w.openErr
}

func (w *watcher) recover(ctx context.Context) ([]int64, error) {
	eng, _, err := w.open()
	if err != nil {
		return nil, err
	}
	return eng.Recover(ctx, w.s.project, w.env)
}

// history lists the environment's deployments as deploy.Engine.History
// does, without recovering first (see observe) and without reading plans.
func (w *watcher) history(ctx context.Context, limit int) ([]deploy.HistoryEntry, error) {
	ds, err := w.s.st.HistoryBrief(ctx, w.s.project, w.env, limit)
	if err != nil {
		return nil, err
	}
	serving, err := w.s.st.ServingID(ctx, w.s.project, w.env)
	if err != nil {
		return nil, err
	}
	out := make([]deploy.HistoryEntry, 0, len(ds))
	for _, d := range ds {
		h := deploy.HistoryEntry{Deployment: d, Serving: serving == d.ID}
		if d.FinishedAt != nil {
			h.DurationSeconds = d.FinishedAt.Sub(d.CreatedAt).Seconds()
		}
		out = append(out, h)
	}
	return out, nil
}

func (w *watcher) key(ctx context.Context) (recordKey, error) {
	id, updated, err := w.s.st.LastChange(ctx, w.s.project, w.env)
	return recordKey{id, updated}, err
}

// statusJSON is the environment's status and its JSON encoding (made once
// per reading): the watcher's, when nothing was recorded since it was read,
// or read now.
func (w *watcher) statusJSON(ctx context.Context) (*deploy.Status, encoded, error) {
	k, err := w.key(ctx)
	if err != nil {
		return nil, nil, err
	}
	w.mu.Lock()
	if w.snap != nil && w.snapKey == k && time.Since(w.snapAt) < maxStatusAge {
		st, b := w.snap, w.snapJSON
		w.mu.Unlock()
		return st, b, nil
	}
	w.mu.Unlock()
	if _, err := w.refresh(ctx); err != nil {
		return nil, nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap, w.snapJSON, nil
}

// refresh reads the environment's status from Docker and the record.
func (w *watcher) refresh(ctx context.Context) (*deploy.Status, error) {
	asked := time.Now()
	w.refreshMu.Lock()
	defer w.refreshMu.Unlock()
	k, err := w.key(ctx)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	if w.snap != nil && w.snapAt.After(asked) && w.snapKey == k {
		// Another caller read it while this one waited.
		st := w.snap
		w.mu.Unlock()
		return st, nil
	}
	w.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := w.observe(octx)
	if err == nil {
		if len(st.Recovered) > 0 {
			// Recovery changed the record: key it as it is now.
			if k2, err := w.key(ctx); err == nil {
				k = k2
			}
		}
		b, _ := encode(st)
		w.mu.Lock()
		w.snap, w.snapJSON, w.snapErr, w.snapAt, w.snapKey = st, b, nil, time.Now(), k
		w.mu.Unlock()
		w.gauge(st)
		return st, nil
	}
	w.mu.Lock()
	w.snap, w.snapJSON, w.snapErr = nil, nil, err
	w.mu.Unlock()
	w.gauge(nil)
	return nil, err
}

// observe reads the environment's status. It takes the environment's lock
// only when the record has unfinished deployments (a killed gantry's): the
// watcher looks often, and must not make a deploy find the environment busy.
func (w *watcher) observe(ctx context.Context) (*deploy.Status, error) {
	eng, rt, err := w.open()
	if err != nil {
		return nil, err
	}
	if err := rt.Ping(ctx); err != nil {
		return nil, err
	}
	var recovered []int64
	if un, err := w.s.st.Unfinished(ctx, w.s.project, w.env); err != nil {
		return nil, err
	} else if len(un) > 0 {
		if recovered, err = eng.Recover(ctx, w.s.project, w.env); err != nil {
			return nil, err
		}
	}
	st, err := eng.Observe(ctx, w.s.project, w.env)
	if st != nil {
		st.Recovered = recovered
		// As gantry status shows it locally: the same output either way.
		st.LastAnalysis = eng.LastAnalysis(ctx, w.s.project, w.env)
	}
	return st, err
}

// gauge sets gantry_service_healthy and gantry_release_info for the
// serving release's services; without a status (Docker unreachable) every
// known service reads 0 and the release info stays as it was.
func (w *watcher) gauge(st *deploy.Status) {
	g, info := w.s.m.serviceHealthy, w.s.m.releaseInfo
	w.mu.Lock()
	defer w.mu.Unlock()
	if st == nil {
		for _, svc := range w.services {
			g.WithLabelValues(w.env, svc).Set(0)
		}
		return
	}
	var now []string
	var infos [][4]string
	type change struct {
		service string
		healthy bool
		detail  string
	}
	var changes []change
	if w.unhealthy == nil {
		w.unhealthy = map[string]bool{}
	}
	for _, ss := range st.Services {
		if ss.Release != st.Release {
			continue
		}
		v := 0.0
		if serviceHealthy(ss) {
			v = 1
		}
		if bad, seen := w.unhealthy[ss.Name]; !seen || bad != (v == 0) {
			changes = append(changes, change{ss.Name, v == 1, fmt.Sprintf("container %s is %s, health %s", ss.Container, ss.State, ss.Health)})
		}
		w.unhealthy[ss.Name] = v == 0
		g.WithLabelValues(w.env, ss.Name).Set(v)
		now = append(now, ss.Name)
		digest := ss.Digest
		if digest == "" {
			digest = ss.ImageID
		}
		l := [4]string{w.env, ss.Name, st.Release, digest}
		info.WithLabelValues(l[:]...).Set(1)
		infos = append(infos, l)
	}
	for _, old := range w.services {
		if !contains(now, old) {
			g.DeleteLabelValues(w.env, old)
		}
	}
	for _, old := range w.infos {
		if !slices.Contains(infos, old) {
			info.DeleteLabelValues(old[:]...)
		}
	}
	w.services, w.infos = now, infos
	if len(changes) > 0 && w.s.alerts != nil {
		go func() {
			for _, c := range changes {
				w.s.serviceHealth(w.env, c.service, st.Release, c.healthy, c.detail)
			}
		}()
	}
}

func serviceHealthy(ss deploy.ServiceStatus) bool {
	switch {
	case ss.Health == "completed":
		return true
	case ss.State != "running":
		return false
	}
	return ss.Health == "healthy" || strings.HasPrefix(ss.Health, "running")
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// poke asks the watcher to read the environment again soon.
func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// interesting says whether a container event may change what status shows;
// exec events (Docker healthchecks run one every interval) do not.
func interesting(action events.Action) bool {
	a := string(action)
	switch {
	case strings.HasPrefix(a, "health_status"):
		return true
	case strings.HasPrefix(a, "exec_"), a == "attach", a == "resize", a == "top", a == "copy", a == "archive-path", a == "export", a == "commit":
		return false
	}
	return true
}

// swarmResync is how often the watcher of a swarm environment reads its
// services and tasks, whatever the events.
const swarmResync = 3 * time.Second

// run follows the environment until ctx ends.
func (w *watcher) run(ctx context.Context) {
	log := w.s.log.With("env", w.env)
	w.refresh(ctx)
	every := w.s.opts.Resync
	if w.envCfg.IsSwarm() {
		// A swarm's manager reports no event for a task on a worker
		// (docs/swarm.md): its task list is read more often instead.
		every = min(every, swarmResync)
	}
	resync := time.NewTicker(every)
	defer resync.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	backoff := time.Second
	for ctx.Err() == nil {
		_, rt, err := w.open()
		if err != nil {
			log.Error("watcher cannot reach the environment's Docker host", "err", err)
			return
		}
		subCtx, cancel := context.WithCancel(ctx)
		msgs, errs := rt.Client().Events(subCtx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("label", runtime.LabelProject+"="+w.s.project),
			filters.Arg("label", runtime.LabelEnv+"="+w.env),
		)})
		// Events may have been missed while there was no subscription.
		w.refresh(ctx)
	loop:
		for {
			select {
			case m := <-msgs:
				backoff = time.Second
				if interesting(m.Action) {
					debounce.Reset(100 * time.Millisecond)
				}
			case <-debounce.C:
				w.refresh(ctx)
			case <-w.kick:
				w.refresh(ctx)
			case <-resync.C:
				w.refresh(ctx)
			case err := <-errs:
				if ctx.Err() != nil {
					break loop
				}
				log.Warn("Docker event stream ended; following again", "err", err, "in", backoff)
				w.refresh(ctx)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				backoff = min(backoff*2, 30*time.Second)
				break loop
			case <-ctx.Done():
				break loop
			}
		}
		cancel()
	}
	if w.rt != nil {
		w.rt.Close()
	}
}
