package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/promote"
	"github.com/gantryhq/gantry/internal/store"
)

// Promotions through the server: the token's name and role are the actor,
// so the rules of package promote (who may request and approve, never
// one's own request) hold between real people. Package promote writes the
// audit events of requests and decisions; the router records only the
// refusals it makes itself (401, 403 before the handler).

// PromoteRequest is the body of POST /api/v1/envs/{env}/promote.
type PromoteRequest struct {
	// From is the environment the release succeeded in.
	From string `json:"from"`
	// Release is its version; empty means the one serving in From.
	Release string `json:"release"`
	// OverrideGate promotes a release the target's gates refuse
	// (require_gates); admins only, with a Reason, which is audited.
	OverrideGate bool   `json:"override_gate"`
	Reason       string `json:"reason"`
}

// DecisionRequest is the body of approve and reject.
type DecisionRequest struct {
	Comment string `json:"comment"`
}

// promoter runs one promotion operation in the server. started receives
// the id of the deployment it starts, if it starts one.
func (s *Server) promoter(c *call, started chan<- int64, opts ...promote.Option) (*promote.Promoter, error) {
	f, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	log := s.log.With("actor", c.id.Name, "request_id", c.reqID)
	engines := func(ctx context.Context, env string) (promote.Runner, func(), error) {
		sess, err := s.openSession(env, deploy.WithActor(c.id.Name), deploy.WithReporter(logReporter{log.With("env", env)}),
			deploy.WithCreated(func(d *store.Deployment) { notify(started, d.ID) }))
		if err != nil {
			return nil, nil, err
		}
		return startingRunner{sess.eng, started}, func() { sess.rt.Close() }, nil
	}
	opts = append([]promote.Option{promote.WithAudit(s.audit), promote.WithLogger(s.log)}, opts...)
	return promote.New(f, s.st, engines, opts...), nil
}

// startingRunner tells when an approved deployment starts to run.
type startingRunner struct {
	*deploy.Engine
	started chan<- int64
}

func (r startingRunner) DeployRecorded(ctx context.Context, d *store.Deployment, env *config.Environment) (*deploy.Result, error) {
	notify(r.started, d.ID)
	return r.Engine.DeployRecorded(ctx, d, env)
}

func notify(ch chan<- int64, id int64) {
	select {
	case ch <- id:
	default:
	}
}

func (c *call) actor() promote.Actor {
	return promote.Actor{Name: c.id.Name, Role: c.id.Role, RequestID: c.reqID, Client: c.r.RemoteAddr}
}

// runPromotion runs op in the server (not in the request): when op starts a
// deployment, the answer is 202 with its id as for a deploy; otherwise it
// is op's own answer.
func (s *Server) runPromotion(c *call, kind string, op func(p *promote.Promoter) (any, *deploy.Result, error), opts ...promote.Option) (int, any, error) {
	started := make(chan int64, 1)
	p, err := s.promoter(c, started, opts...)
	if err != nil {
		return 0, nil, err
	}
	type out struct {
		v   any
		res *deploy.Result
		err error
	}
	done := make(chan out, 1)
	s.deploysWG.Add(1)
	start := time.Now()
	go func() {
		defer s.deploysWG.Done()
		v, res, err := op(p)
		done <- out{v, res, err}
		if res != nil {
			s.finishDeployment(c, kind, res, err, time.Since(start), s.log.With("actor", c.id.Name, "request_id", c.reqID))
		}
	}()
	select {
	case id := <-started:
		s.m.inFlight.Inc()
		go func() {
			<-done
			s.m.inFlight.Dec()
		}()
		c.note("deployment", strconv.FormatInt(id, 10))
		url := fmt.Sprintf("/api/v1/deployments/%d", id)
		c.w.Header().Set("Location", url)
		return http.StatusAccepted, Accepted{Deployment: id, Env: c.env, Kind: "deploy", State: store.Deploying, URL: url}, nil
	case o := <-done:
		if o.err != nil {
			return 0, nil, promoteError(o.err)
		}
		return http.StatusOK, o.v, nil
	}
}

// outcomeOf names how a promotion operation ended, for the metrics.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, promote.ErrForbidden), errors.Is(err, promote.ErrSelfApproval), errors.Is(err, deploy.ErrOverrideForbidden):
		return "denied"
	}
	return "failed"
}

// promoteError: the rules' refusals are 403, the rest as any error.
func promoteError(err error) error {
	if errors.Is(err, promote.ErrForbidden) || errors.Is(err, promote.ErrSelfApproval) || errors.Is(err, deploy.ErrOverrideForbidden) {
		return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error()}
	}
	return err
}

func (s *Server) promote(c *call) (int, any, error) {
	var req PromoteRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if req.From == "" {
		return 0, nil, apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "from: name the environment the release succeeded in, for example {\"from\": \"staging\"}")
	}
	override, err := gateOverride(req.OverrideGate, req.Reason)
	if err != nil {
		return 0, nil, err
	}
	var opts []promote.RequestOption
	if override != nil {
		opts = append(opts, promote.OverrideGate(override.Reason))
	}
	c.object = "env/" + c.env
	c.selfAudited = true
	status, body, err := s.runPromotion(c, "deploy", func(p *promote.Promoter) (any, *deploy.Result, error) {
		d, err := p.Request(s.baseCtx, c.actor(), req.From, c.env, req.Release, opts...)
		s.m.promotions.WithLabelValues(c.env, outcomeOf(err)).Inc()
		var res *deploy.Result
		if d != nil && d.State.Terminal() {
			res = &deploy.Result{Deployment: d.ID, Env: d.Env, Release: d.Release, Kind: d.Kind, State: d.State, Reason: d.Reason}
		}
		return d, res, err
	})
	if err == nil && status == http.StatusOK {
		status = http.StatusCreated // a deployment awaiting approval
	}
	return status, body, err
}

func (s *Server) decide(c *call, approve bool) (int, any, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "deployment id %q: want a positive whole number", c.r.PathValue("id"))
	}
	var req DecisionRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	c.object = fmt.Sprintf("deployment/%d", id)
	d, err := s.st.Get(c.ctx(), id)
	if err != nil {
		return 0, nil, err
	}
	if err := c.checkEnv(d.Env); err != nil {
		return 0, nil, err
	}
	c.selfAudited = true
	verb := "approve"
	if !approve {
		verb = "reject"
	}
	counted := promote.WithDecisionHook(func(_ store.Decision, err error) {
		s.m.decisions.WithLabelValues(d.Env, verb, outcomeOf(err)).Inc()
	})
	return s.runPromotion(c, "deploy", func(p *promote.Promoter) (any, *deploy.Result, error) {
		var dec *promote.Decision
		var err error
		if approve {
			dec, err = p.Approve(s.baseCtx, c.actor(), id, req.Comment)
		} else {
			dec, err = p.Reject(s.baseCtx, c.actor(), id, req.Comment)
		}
		if dec == nil {
			return nil, nil, err
		}
		return dec, dec.Result, err
	}, counted)
}

func (s *Server) approve(c *call) (int, any, error) { return s.decide(c, true) }
func (s *Server) reject(c *call) (int, any, error)  { return s.decide(c, false) }

// deployments lists deployments with their promotions: ?pending=true those
// waiting for approval; ?env= one environment's. A token limited to
// environments sees only theirs.
func (s *Server) deployments(c *call) (int, any, error) {
	q := c.r.URL.Query()
	limit, err := c.queryInt("limit", 20, 0, 100000)
	if err != nil {
		return 0, nil, err
	}
	pending := false
	switch q.Get("pending") {
	case "", "false", "0":
	case "true", "1":
		pending = true
	default:
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "pending=%q: want true or false", q.Get("pending"))
	}
	env := q.Get("env")
	if env != "" {
		if err := c.checkEnv(env); err != nil {
			return 0, nil, err
		}
		if !s.knownEnv(env) {
			return 0, nil, apiErr(http.StatusNotFound, CodeNotFound, "environment %q is not in gantry.yaml", env)
		}
	}
	started := make(chan int64, 1)
	p, err := s.promoter(c, started)
	if err != nil {
		return 0, nil, err
	}
	var l []promote.Entry
	if pending {
		l, err = p.Pending(c.ctx(), s.project)
	} else {
		l, err = p.List(c.ctx(), s.project, env, limit)
	}
	if err != nil {
		return 0, nil, err
	}
	out := []promote.Entry{}
	for _, e := range l {
		if c.id.CanEnv(e.Env) && (env == "" || e.Env == env) {
			out = append(out, e)
		}
	}
	return http.StatusOK, out, nil
}
