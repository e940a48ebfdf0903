package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
	"github.com/gantryhq/gantry/internal/target"
)

// session is what one deploy or rollback works with: gantry.yaml as it is
// now, a runtime of its own (its pull progress goes to this deployment's
// log) and an engine.
type session struct {
	file *config.File
	env  *config.Environment
	rt   target.Runtime
	eng  *deploy.Engine
}

func (s *Server) openSession(envName string, opts ...deploy.Option) (*session, error) {
	f, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	env, err := f.Env(envName)
	if err != nil {
		return nil, err
	}
	rt, err := target.Open(env, f.Registry, nil)
	if err != nil {
		return nil, err
	}
	opts = append([]deploy.Option{deploy.WithLogger(s.log), s.alertOnFinish()}, opts...)
	return &session{file: f, env: env, rt: rt, eng: deploy.New(rt, s.st, s.opts.StateDir, opts...)}, nil
}

// logReporter sends a deployment's progress to the server's log.
type logReporter struct {
	log *slog.Logger
}

func (r logReporter) Service(service, phase, detail string) {
	r.log.Info("deploy progress", "service", service, "phase", phase, "detail", detail)
}

func (r logReporter) Note(msg string) { r.log.Info("deploy note", "msg", msg) }

type finished struct {
	res *deploy.Result
	err error
}

// startDeployment runs a deploy or rollback in the server, not in the
// request: it answers 202 with the deployment's id as soon as the
// deployment is recorded, and the client follows it at
// /api/v1/deployments/{id}. Errors before that (bad input, a busy
// environment, Docker unreachable) are answered at once.
func (s *Server) startDeployment(c *call, kind string, run func(*session) (*deploy.Result, error)) (int, any, error) {
	env, actor := c.env, c.id.Name
	log := s.log.With("env", env, "kind", kind, "actor", actor, "request_id", c.reqID)
	s.waitFinishing(c.ctx(), env)
	created := make(chan *store.Deployment, 1)
	rd := &runningDeploy{done: make(chan struct{})}
	sess, err := s.openSession(env, deploy.WithActor(actor), deploy.WithReporter(logReporter{log}),
		deploy.WithCreated(func(d *store.Deployment) {
			rd.id.Store(d.ID)
			created <- d
		}))
	if err != nil {
		return 0, nil, err
	}
	done := make(chan finished, 1)
	s.deploysWG.Add(1)
	s.m.inFlight.Inc()
	s.runMu.Lock()
	s.running[env] = append(s.running[env], rd)
	s.runMu.Unlock()
	start := time.Now()
	go func() {
		defer s.deploysWG.Done()
		defer s.m.inFlight.Dec()
		defer sess.rt.Close()
		defer func() {
			s.runMu.Lock()
			l := s.running[env]
			for i, x := range l {
				if x == rd {
					s.running[env] = append(l[:i:i], l[i+1:]...)
					break
				}
			}
			s.runMu.Unlock()
			close(rd.done)
		}()
		res, err := run(sess)
		done <- finished{res, err}
		if res == nil {
			return
		}
		s.finishDeployment(c, kind, res, err, time.Since(start), log)
	}()
	// The request's audit details quote what it asked for; by now the
	// engine has read the secrets and knows what to mask.
	defer func() {
		for k, v := range c.detail {
			c.detail[k] = sess.eng.Redact(v)
		}
	}()
	select {
	case d := <-created:
		return s.accepted(c, d)
	case f := <-done:
		select {
		case d := <-created:
			return s.accepted(c, d)
		default:
		}
		if f.err == nil {
			return 0, nil, fmt.Errorf("%s of %s ended without a deployment", kind, env)
		}
		return 0, nil, f.err
	}
}

// runningDeploy is a deploy or rollback the server runs; id is set once
// the deployment is recorded.
type runningDeploy struct {
	id   atomic.Int64
	done chan struct{}
}

// waitFinishing waits (up to a minute) for this server's deployments of env
// whose state is already final but whose goroutine still finishes up
// (pruning old containers, releasing the lock): a client that saw the
// final state and deploys again must not find the environment busy.
func (s *Server) waitFinishing(ctx context.Context, env string) {
	s.runMu.Lock()
	l := append([]*runningDeploy(nil), s.running[env]...)
	s.runMu.Unlock()
	for _, rd := range l {
		id := rd.id.Load()
		if id == 0 {
			continue
		}
		// Not for one in its watch window, which lasts minutes: a
		// rollback asks it to roll back (deploy.Engine.Rollback), a deploy
		// is told who holds the environment.
		if d, err := s.st.Get(ctx, id); err != nil || !d.State.Terminal() || deploy.Watching(d) {
			continue
		}
		select {
		case <-rd.done:
		case <-time.After(time.Minute):
		case <-ctx.Done():
		}
	}
}

func (s *Server) accepted(c *call, d *store.Deployment) (int, any, error) {
	c.note("deployment", strconv.FormatInt(d.ID, 10))
	url := fmt.Sprintf("/api/v1/deployments/%d", d.ID)
	c.w.Header().Set("Location", url)
	return http.StatusAccepted, Accepted{Deployment: d.ID, Env: d.Env, Release: d.Release, Kind: d.Kind, State: d.State, URL: url}, nil
}

// finishDeployment records a finished deployment in the audit log and has
// the watcher look at the environment again (the deployment metrics come
// from the record: recordMetrics).
func (s *Server) finishDeployment(c *call, kind string, res *deploy.Result, err error, took time.Duration, log *slog.Logger) {
	outcome := audit.OK
	if res.State != store.Succeeded {
		outcome = audit.Failed
	}
	detail := map[string]string{"env": res.Env, "release": res.Release, "state": string(res.State), "seconds": strconv.FormatFloat(took.Seconds(), 'f', 1, 64)}
	if res.Reason != "" {
		detail["reason"] = truncate(res.Reason, 500)
	}
	s.appendAudit(context.Background(), audit.Event{Actor: c.id.Name, Role: string(c.id.Role), Action: kind + ".finish",
		Object: fmt.Sprintf("deployment/%d", res.Deployment), Outcome: outcome, RequestID: c.reqID, Client: c.r.RemoteAddr, Detail: detail})
	log.Info("deployment finished", "deployment", res.Deployment, "state", res.State, "err", err)
	if w := s.watchers[res.Env]; w != nil {
		w.poke()
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
