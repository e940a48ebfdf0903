package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	alerts "github.com/gantryhq/gantry/internal/notify"
	"github.com/gantryhq/gantry/internal/store"
)

// defaultAlertTick is how often the server repeats, escalates and resyncs
// alerts; routes' repeat and escalate_after are measured against it.
const defaultAlertTick = 5 * time.Second

// openAlerts makes the alert manager of gantry.yaml's notify section; nil
// when alerts go nowhere or a receiver's secret cannot be read (logged).
func (s *Server) openAlerts(f *config.File) *alerts.Manager {
	if !f.Notify.Enabled() {
		return nil
	}
	m, err := alerts.New(&f.Notify, s.st, f.Project, alerts.WithLogger(s.log.With("component", "alerts")))
	if err != nil {
		s.log.Error("alerts are off", "err", err)
		return nil
	}
	return m
}

// alertOnFinish raises or clears the alerts of a deployment's outcome.
func (s *Server) alertOnFinish() deploy.Option {
	return deploy.WithFinished(func(res *deploy.Result) {
		if s.alerts == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.baseCtx), 2*time.Minute)
		defer cancel()
		s.alerts.DeploymentFinished(ctx, res)
	})
}

// runAlerts ticks the alert manager until the server stops.
func (s *Server) runAlerts() {
	if s.alerts == nil {
		return
	}
	every := s.opts.AlertTick
	if every <= 0 {
		every = defaultAlertTick
	}
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		s.alerts.Run(s.baseCtx, every)
	}()
}

// serviceHealth raises GantryServiceUnhealthy for a service of a release
// that succeeded and is not healthy, and clears it once it is; called on
// every change the watcher sees, never while a deployment is under way
// (its services come and go on purpose).
func (s *Server) serviceHealth(env, service, release string, healthy bool, detail string) {
	if s.alerts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, time.Minute)
	defer cancel()
	if !healthy {
		if u, err := s.st.Unfinished(ctx, s.project, env); err != nil || len(u) > 0 {
			return
		}
	}
	if err := s.alerts.ServiceHealth(ctx, env, service, release, healthy, detail); err != nil {
		s.log.Warn("service health alert", "env", env, "service", service, "err", err)
	}
}

// alertList lists alerts, newest first: ?all=1 resolved ones too. A token
// limited to environments sees only theirs.
func (s *Server) alertList(c *call) (int, any, error) {
	limit, err := c.queryInt("limit", 50, 0, 100000)
	if err != nil {
		return 0, nil, err
	}
	all := false
	switch v := c.r.URL.Query().Get("all"); v {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "all=%q: want true or false", v)
	}
	as, err := s.st.Alerts(c.ctx(), all, limit)
	if err != nil {
		return 0, nil, err
	}
	out := []*store.Alert{}
	for _, a := range as {
		if a.Env == "" || c.id.CanEnv(a.Env) {
			out = append(out, a)
		}
	}
	return http.StatusOK, out, nil
}

// alertAck acknowledges an alert: it is not escalated.
func (s *Server) alertAck(c *call) (int, any, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "alert id %q: want a positive whole number", c.r.PathValue("id"))
	}
	c.object = fmt.Sprintf("alert/%d", id)
	a, err := s.st.GetAlert(c.ctx(), id)
	if err != nil {
		return 0, nil, err
	}
	if a.Env != "" {
		if err := c.checkEnv(a.Env); err != nil {
			return 0, nil, err
		}
	}
	a, err = alerts.Ack(c.ctx(), s.st, id, c.id.Name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, a, nil
}
