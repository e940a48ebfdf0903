package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/health"
)

// healthRefreshTimeout bounds one check of an environment's health view
// (its probes have their own, shorter timeouts).
const healthRefreshTimeout = 30 * time.Second

// healthView is GET /health/{env}: the health view of the environment,
// from a cache at most health.cache old (see health.Cache). It answers 200
// when every service is ready and 503 otherwise, with the view either way,
// so that a load balancer can poll it; ?service=NAME narrows it to one
// service.
func (s *Server) healthView(c *call) (int, any, error) {
	env := c.r.PathValue("env")
	if !s.knownEnv(env) {
		// A public route skips serve's check of the environment.
		return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "environment %q is not in gantry.yaml (it has %s)", env, strings.Join(s.envs, ", "))
	}
	v, body, err := s.watchers[env].healthView(c.ctx())
	if err != nil {
		return 0, nil, err
	}
	if svc := c.r.URL.Query().Get("service"); svc != "" {
		one, ok := v.Only(svc)
		if !ok {
			e := apiErr(http.StatusNotFound, CodeNotFound, "service %q does not serve in %s; gantry status %s lists what does", svc, env, env)
			e.Field = "service"
			return 0, nil, e
		}
		v = one
		b, _ := json.Marshal(v)
		body = append(b, '\n')
	}
	status := http.StatusOK
	if v.Status != health.StatusHealthy {
		status = http.StatusServiceUnavailable
	}
	c.raw = true
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	c.w.Write(body)
	return 0, nil, nil
}

// healthView is the watcher's environment's health view, cached.
func (w *watcher) healthView(ctx context.Context) (*health.View, []byte, error) {
	return w.health.Get(ctx, time.Duration(w.healthTTL.Load()), healthRefreshTimeout, w.checkHealth)
}

// checkHealth reads gantry.yaml again (for the probes and the cache's
// TTL, so an edit applies without a restart; the last good one when it no
// longer loads), takes what serves from the watcher and checks it.
func (w *watcher) checkHealth(ctx context.Context) (*health.View, error) {
	if f, err := config.Load(w.s.opts.ConfigPath); err != nil {
		w.s.log.Warn("health view: gantry.yaml does not load; using the last good one", "env", w.env, "err", err)
	} else if env, err := f.Env(w.env); err == nil {
		w.mu.Lock()
		w.envCfg = env
		w.mu.Unlock()
		w.healthTTL.Store(int64(env.Health.Cache))
	}
	st, _, err := w.statusJSON(ctx)
	if err != nil {
		return nil, err
	}
	_, rt, err := w.open()
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	env := w.envCfg
	w.mu.Unlock()
	return health.Assess(ctx, rt, w.env, st.Release, deploy.HealthSubjects(st, env)), nil
}
