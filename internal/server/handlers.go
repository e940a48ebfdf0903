package server

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/audit"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/deploy"
	"github.com/gantryhq/gantry/internal/store"
)

// table is the router: every route, its rule and its handler.
func (s *Server) table() []*route {
	viewer := Rule{Role: auth.Viewer}
	metricsRule := viewer
	if s.opts.MetricsPublic {
		metricsRule = Rule{Public: true}
	}
	healthRule := Rule{Role: auth.Viewer, Scope: ScopeEnv}
	if s.opts.HealthPublic {
		healthRule = Rule{Public: true}
	}
	return []*route{
		{Method: "GET", Path: "/livez", Rule: Rule{Public: true}, handle: s.livez},
		{Method: "GET", Path: "/readyz", Rule: Rule{Public: true}, handle: s.readyz},
		{Method: "GET", Path: "/startupz", Rule: Rule{Public: true}, handle: s.startupz},
		{Method: "GET", Path: "/metrics", Rule: metricsRule, handle: s.metrics},
		{Method: "GET", Path: "/health/{env}", Rule: healthRule, handle: s.healthView},
		{Method: "GET", Path: "/api/openapi.json", Rule: viewer, handle: s.openapi},

		{Method: "GET", Path: "/api/v1/status", Rule: Rule{Role: auth.Viewer, Scope: ScopeFilter}, handle: s.statusAll},
		{Method: "GET", Path: "/api/v1/envs/{env}/status", Rule: Rule{Role: auth.Viewer, Scope: ScopeEnv}, handle: s.statusEnv},
		{Method: "GET", Path: "/api/v1/envs/{env}/history", Rule: Rule{Role: auth.Viewer, Scope: ScopeEnv}, handle: s.history},
		{Method: "POST", Path: "/api/v1/envs/{env}/deploy", Rule: Rule{Role: auth.Editor, Scope: ScopeEnv}, Action: "deploy", handle: s.deploy},
		{Method: "POST", Path: "/api/v1/envs/{env}/rollback", Rule: Rule{Role: auth.Editor, Scope: ScopeEnv}, Action: "rollback", handle: s.rollback},
		{Method: "POST", Path: "/api/v1/envs/{env}/canary", Rule: Rule{Role: auth.Editor, Scope: ScopeEnv}, Action: "canary.signal", handle: s.canarySignal},
		{Method: "GET", Path: "/api/v1/deployments/{id}", Rule: Rule{Role: auth.Viewer, Scope: ScopeObject}, handle: s.deployment},
		{Method: "GET", Path: "/api/v1/deployments", Rule: Rule{Role: auth.Viewer, Scope: ScopeFilter}, handle: s.deployments},
		{Method: "POST", Path: "/api/v1/envs/{env}/promote", Rule: Rule{Role: auth.Editor, Scope: ScopeEnv}, Action: "promotion.request", handle: s.promote},
		{Method: "POST", Path: "/api/v1/deployments/{id}/approve", Rule: Rule{Role: auth.Editor, Scope: ScopeObject}, Action: "promotion.approve", handle: s.approve},
		{Method: "POST", Path: "/api/v1/deployments/{id}/reject", Rule: Rule{Role: auth.Editor, Scope: ScopeObject}, Action: "promotion.reject", handle: s.reject},
		{Method: "GET", Path: "/api/v1/releases", Rule: viewer, handle: s.releases},
		{Method: "GET", Path: "/api/v1/releases/{version}", Rule: viewer, handle: s.release},

		{Method: "GET", Path: "/api/v1/tokens", Rule: Rule{Role: auth.Admin}, handle: s.tokenList},
		{Method: "POST", Path: "/api/v1/tokens", Rule: Rule{Role: auth.Admin}, Action: "token.create", handle: s.tokenCreate},
		{Method: "DELETE", Path: "/api/v1/tokens/{token}", Rule: Rule{Role: auth.Admin}, Action: "token.revoke", handle: s.tokenRevoke},

		{Method: "GET", Path: "/api/v1/audit", Rule: Rule{Role: auth.Admin}, handle: s.auditList},
		{Method: "GET", Path: "/api/v1/audit/verify", Rule: Rule{Role: auth.Admin}, handle: s.auditVerify},
		{Method: "GET", Path: "/api/v1/audit/export", Rule: Rule{Role: auth.Admin}, handle: s.auditExport},
		{Method: "POST", Path: "/api/v1/audit/prune", Rule: Rule{Role: auth.Admin}, Action: "audit.prune", handle: s.auditPrune},

		{Method: "GET", Path: "/api/v1/alerts", Rule: Rule{Role: auth.Viewer, Scope: ScopeFilter}, handle: s.alertList},
		{Method: "POST", Path: "/api/v1/alerts/{id}/ack", Rule: Rule{Role: auth.Editor, Scope: ScopeObject}, Action: "alert.ack", handle: s.alertAck},
	}
}

func (s *Server) metrics(c *call) (int, any, error) {
	c.raw = true
	promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}).ServeHTTP(c.w, c.r)
	return 0, nil, nil
}

func (s *Server) openapi(c *call) (int, any, error) {
	c.raw = true
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Write(api.OpenAPI)
	return 0, nil, nil
}

// statusAll is every environment the token may see.
func (s *Server) statusAll(c *call) (int, any, error) {
	var out []encoded
	for _, env := range s.envs {
		if !c.id.CanEnv(env) {
			continue
		}
		_, b, err := s.watchers[env].statusJSON(c.ctx())
		if err != nil {
			return 0, nil, err
		}
		out = append(out, b)
	}
	return http.StatusOK, joinEncoded(out), nil
}

func (s *Server) statusEnv(c *call) (int, any, error) {
	_, b, err := s.watchers[c.env].statusJSON(c.ctx())
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, b, nil
}

// history is the environment's newest deployments, from the cache while
// none of them changed.
func (s *Server) history(c *call) (int, any, error) {
	limit, err := c.queryInt("limit", 20, 0, 100000)
	if err != nil {
		return 0, nil, err
	}
	w := s.watchers[c.env]
	version, err := s.st.HistoryVersion(c.ctx(), s.project, c.env, limit)
	if err != nil {
		return 0, nil, err
	}
	b, err := s.lists.get(fmt.Sprintf("history %s %d", c.env, limit), version, func() (any, error) {
		return w.history(c.ctx(), limit)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, b, nil
}

// DeploymentView is a deployment with its steps and state changes.
type DeploymentView struct {
	*store.Deployment
	Steps       []store.Step       `json:"steps"`
	Transitions []store.Transition `json:"transitions"`
}

func (s *Server) deployment(c *call) (int, any, error) {
	id, err := strconv.ParseInt(c.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "deployment id %q: want a positive whole number", c.r.PathValue("id"))
	}
	c.object = fmt.Sprintf("deployment/%d", id)
	d, err := s.st.Get(c.ctx(), id)
	if err != nil {
		return 0, nil, err
	}
	if err := c.checkEnv(d.Env); err != nil {
		return 0, nil, err
	}
	v := &DeploymentView{Deployment: d}
	if v.Steps, err = s.st.Steps(c.ctx(), id); err != nil {
		return 0, nil, err
	}
	if v.Transitions, err = s.st.Transitions(c.ctx(), id); err != nil {
		return 0, nil, err
	}
	if v.Steps == nil {
		v.Steps = []store.Step{}
	}
	return http.StatusOK, v, nil
}

func (s *Server) releases(c *call) (int, any, error) {
	limit, err := c.queryInt("limit", 20, 0, 100000)
	if err != nil {
		return 0, nil, err
	}
	rs, err := s.st.Releases(c.ctx(), s.project, limit)
	if rs == nil {
		rs = []*store.Release{}
	}
	return http.StatusOK, rs, err
}

func (s *Server) release(c *call) (int, any, error) {
	r, err := s.st.GetRelease(c.ctx(), s.project, c.r.PathValue("version"))
	return http.StatusOK, r, err
}

// DeployRequest is the body of POST /api/v1/envs/{env}/deploy.
type DeployRequest struct {
	// Release is a version from /api/v1/releases (deployed by its digests)
	// or any name for the deployment.
	Release string `json:"release"`
	// Images maps services to image references, overriding the release's.
	Images map[string]string `json:"images"`
	// OverrideGate deploys a release the environment's gates refuse
	// (require_gates); admins only, with a Reason, which is audited.
	OverrideGate bool   `json:"override_gate"`
	Reason       string `json:"reason"`
}

// RollbackRequest is the body of POST /api/v1/envs/{env}/rollback.
type RollbackRequest struct {
	// To is a release that once succeeded in the environment; empty means
	// the one before the serving one.
	To string `json:"to"`
}

// Accepted answers a deploy or rollback that started: follow it at URL.
type Accepted struct {
	Deployment int64       `json:"deployment"`
	Env        string      `json:"env"`
	Release    string      `json:"release"`
	Kind       string      `json:"kind"`
	State      store.State `json:"state"`
	URL        string      `json:"url"`
}

func (s *Server) deploy(c *call) (int, any, error) {
	var req DeployRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	var flags []string
	for svc, ref := range req.Images {
		flags = append(flags, svc+"="+ref)
	}
	sort.Strings(flags)
	images, err := deploy.ParseImages(flags)
	if err != nil {
		return 0, nil, err
	}
	if strings.ContainsFunc(req.Release, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return 0, nil, apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "release %q has control characters", req.Release)
	}
	c.object = "env/" + c.env
	c.note("release", req.Release)
	if len(flags) > 0 {
		c.note("images", strings.Join(flags, " "))
	}
	override, err := gateOverride(req.OverrideGate, req.Reason)
	if err != nil {
		return 0, nil, err
	}
	return s.startDeployment(c, "deploy", func(sess *session) (*deploy.Result, error) {
		if err := deploy.Admit(s.baseCtx, s.st, s.audit, deploy.Admission{Project: sess.file.Project, Env: sess.env, Gates: sess.file.Gates,
			Release: req.Release, Images: images, Override: override,
			Who: audit.Event{Actor: c.id.Name, Role: string(c.id.Role), RequestID: c.reqID, Client: c.r.RemoteAddr}}); err != nil {
			return nil, err
		}
		m, err := sess.file.Resolve(s.baseCtx, c.env)
		if err != nil {
			return nil, err
		}
		if req.Release != "" {
			if images, err = deploy.PinRelease(s.baseCtx, s.st, m, sess.file.Project, req.Release, images); err != nil {
				return nil, err
			}
		}
		return sess.eng.Deploy(s.baseCtx, m, req.Release, images)
	})
}

// gateOverride reads override_gate and reason of a request body.
func gateOverride(override bool, reason string) (*deploy.GateOverride, error) {
	switch {
	case reason != "" && !override:
		return nil, apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "reason goes with override_gate: true; leave it out, or add override_gate")
	case !override:
		return nil, nil
	case strings.TrimSpace(reason) == "":
		return nil, apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "override_gate needs a reason: say why this release may skip its gates; the reason goes to the audit log")
	}
	return &deploy.GateOverride{Reason: reason}, nil
}

func (s *Server) rollback(c *call) (int, any, error) {
	var req RollbackRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	c.object = "env/" + c.env
	if req.To != "" {
		c.note("to", req.To)
	}
	return s.startDeployment(c, "rollback", func(sess *session) (*deploy.Result, error) {
		return sess.eng.Rollback(s.baseCtx, sess.file.Project, sess.env, req.To)
	})
}

func (s *Server) tokenList(c *call) (int, any, error) {
	l, err := s.tokens.List(c.ctx())
	return http.StatusOK, l, err
}

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name string   `json:"name"`
	Role string   `json:"role"`
	Envs []string `json:"envs"`
	// Expires is a lifetime (90d, 12h) or "never"; default 90d.
	Expires string `json:"expires"`
}

// TokenCreated is a new token's record and, once, its secret.
type TokenCreated struct {
	*store.Token
	Secret string `json:"token"`
}

func (s *Server) tokenCreate(c *call) (int, any, error) {
	var req TokenRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	c.object = "token/" + req.Name
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return 0, nil, err
	}
	var ttl time.Duration
	switch req.Expires {
	case "never":
	case "":
		ttl = 90 * 24 * time.Hour
	default:
		if ttl, err = auth.ParseDuration(req.Expires); err != nil {
			return 0, nil, err
		}
	}
	for _, e := range req.Envs {
		if !c.id.CanEnv(e) {
			return 0, nil, apiErr(http.StatusForbidden, CodeForbidden, "token %s may not make a token for %s, which it cannot act on", c.id.Name, e)
		}
	}
	secret, rec, err := s.tokens.Create(c.ctx(), auth.CreateOptions{Name: req.Name, Role: role, Envs: req.Envs, TTL: ttl, CreatedBy: c.id.Name, KnownEnvs: s.envs})
	if err != nil {
		return 0, nil, err
	}
	c.note("id", rec.ID)
	c.note("role", rec.Role)
	c.note("envs", strings.Join(rec.Envs, ","))
	return http.StatusCreated, TokenCreated{Token: rec, Secret: secret}, nil
}

func (s *Server) tokenRevoke(c *call) (int, any, error) {
	name := c.r.PathValue("token")
	c.object = "token/" + name
	rec, err := s.tokens.Revoke(c.ctx(), name)
	if err != nil {
		if e := toAPIError(err); e.Code == CodeInvalidInput {
			e.Status, e.Code = http.StatusNotFound, CodeNotFound
			return 0, nil, e
		}
		return 0, nil, err
	}
	c.object = "token/" + rec.Name
	c.note("id", rec.ID)
	return http.StatusOK, rec, nil
}

func (s *Server) auditFilter(c *call) (audit.Filter, error) {
	q := c.r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object"), Outcome: audit.Outcome(q.Get("outcome"))}
	if f.Outcome != "" && !f.Outcome.Valid() {
		return f, apiErr(http.StatusBadRequest, CodeBadRequest, "outcome %q: use ok, denied, failed or login_failed", f.Outcome)
	}
	var err error
	now := time.Now()
	if f.Since, err = audit.ParseWhen(q.Get("since"), now); err != nil {
		return f, apiErr(http.StatusBadRequest, CodeBadRequest, "since: %v", err)
	}
	if f.Until, err = audit.ParseWhen(q.Get("until"), now); err != nil {
		return f, apiErr(http.StatusBadRequest, CodeBadRequest, "until: %v", err)
	}
	limit, err := c.queryInt("limit", audit.DefaultLimit, 0, 100000)
	if err != nil {
		return f, err
	}
	f.Limit = limit
	if limit == 0 {
		f.Limit = -1
	}
	before, err := c.queryInt("before_id", 0, 0, 1<<62)
	f.BeforeID = int64(before)
	return f, err
}

func (s *Server) auditList(c *call) (int, any, error) {
	f, err := s.auditFilter(c)
	if err != nil {
		return 0, nil, err
	}
	// The log only grows at its head (or is cut at its tail): a page read
	// while the head and the checkpoint were the same is the same page.
	ch, err := s.st.AuditChain(c.ctx())
	if err != nil {
		return 0, nil, err
	}
	version := fmt.Sprintf("%d %s %d %d", ch.HeadID, ch.HeadHash, ch.CheckpointID, ch.Pruned)
	b, err := s.lists.get(fmt.Sprintf("audit %+v", f), version, func() (any, error) {
		return s.audit.ListRecords(c.ctx(), f)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, b, nil
}

func (s *Server) auditVerify(c *call) (int, any, error) {
	rep, err := s.audit.Verify(c.ctx())
	return http.StatusOK, rep, err
}

// PruneRequest is the body of POST /api/v1/audit/prune.
type PruneRequest struct {
	// Before is an age (365d) or a time (2025-01-01): events older than it
	// are cut.
	Before string `json:"before"`
}

// PruneResult is what a prune cut, as gantry audit prune --output json
// prints it.
type PruneResult struct {
	Before     time.Time        `json:"before"`
	Cut        int64            `json:"cut"`
	Checkpoint audit.Checkpoint `json:"checkpoint"`
}

// auditPrune cuts old events and records the checkpoint; the request's own
// audit event (audit.prune, with what was cut) is appended after the cut,
// so it stays.
func (s *Server) auditPrune(c *call) (int, any, error) {
	var req PruneRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	c.object = "audit"
	if req.Before == "" {
		e := apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "before is required: an age like 365d or a time like 2025-01-01; events older than it are cut")
		e.Field = "before"
		return 0, nil, e
	}
	before, err := audit.ParseWhen(req.Before, time.Now())
	if err != nil {
		e := apiErr(http.StatusUnprocessableEntity, CodeInvalidInput, "before: %v", err)
		e.Field = "before"
		return 0, nil, e
	}
	n, cp, err := s.audit.Prune(c.ctx(), before)
	if err != nil {
		return 0, nil, err
	}
	c.note("before", before.UTC().Format(time.RFC3339))
	c.note("cut", strconv.FormatInt(n, 10))
	c.note("checkpoint_id", strconv.FormatInt(cp.ID, 10))
	return http.StatusOK, PruneResult{Before: before.UTC(), Cut: n, Checkpoint: cp}, nil
}

func (s *Server) auditExport(c *call) (int, any, error) {
	since, err := audit.ParseWhen(c.r.URL.Query().Get("since"), time.Now())
	if err != nil {
		return 0, nil, apiErr(http.StatusBadRequest, CodeBadRequest, "since: %v", err)
	}
	c.raw = true
	c.w.Header().Set("Content-Type", "application/x-ndjson")
	c.w.WriteHeader(http.StatusOK)
	if _, err := s.audit.Export(c.ctx(), c.w, since); err != nil {
		s.log.Warn("audit export ended early", "err", err)
	}
	return 0, nil, nil
}
